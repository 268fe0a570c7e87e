// Package plugin lets Caddy builds include the otp gate by this module's path alone. From a
// clone, in its root (the version is a placeholder that the replacement "=." overrides):
//
//	xcaddy build v2.11.9 --with github.com/caddy-otp/caddy-otp@v0.0.0-00010101000000-000000000000=.
//
// Once the module is published under its path, without a clone:
//
//	xcaddy build v2.11.9 --with github.com/caddy-otp/caddy-otp
//
// Importing it registers every module of package caddyotp, where the gate lives; `caddy
// list-modules` then shows them (http.handlers.otp and its senders and stores, admin.api.otp,
// and otp, which checks where each gate stands as a config loads).
package plugin

import _ "github.com/caddy-otp/caddy-otp/caddyotp"
