// Package templates holds the gate's HTML pages. They are embedded in the Caddy binary; an
// operator may replace any of them, file by file, with the otp handler's `templates` option.
package templates

import "embed"

// FS holds the default pages: layout.html (shared head and styles) and one file a page.
//
//go:embed *.html
var FS embed.FS

// Pages are the page files the gate renders, besides layout.html which every page uses.
var Pages = []string{"login.html", "verify.html", "message.html", "logout.html", "passkey.html"}
