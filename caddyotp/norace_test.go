//go:build !race

package caddyotp

const raceEnabled = false
