// Package caddyotp is a Caddy HTTP handler (http.handlers.otp) that puts SMS one-time-code
// sign-in in front of a site: a visitor without a valid session gets a phone-number page and a
// code by SMS, types it, and gets a signed session cookie. The Caddyfile syntax is on
// [Handler.UnmarshalCaddyfile]; how the parts fit together is in docs/ARCHITECTURE.md.
package caddyotp
