//go:build integration && !race

package caddyotp

const raceEnabled = false
