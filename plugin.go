// Package plugin lets Caddy builds include the otp gate by this module's path alone:
//
//	xcaddy build --with github.com/caddy-otp/caddy-otp
//
// Importing it registers every module of package caddyotp, where the gate lives.
package plugin

import _ "github.com/caddy-otp/caddy-otp/caddyotp"
