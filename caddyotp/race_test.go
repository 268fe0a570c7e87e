//go:build integration && race

package caddyotp

// raceEnabled says the tests run under the race detector, so helper binaries are built alike
// (and reuse the same build cache).
const raceEnabled = true
