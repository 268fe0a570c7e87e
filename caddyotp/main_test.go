package caddyotp

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// clock is the gate's clock in every test: real time plus whatever a test has moved it forward.
var clock testClock

type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the gate's time forward by d.
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// StartWindow moves the gate's time forward to the start of the next fixed window of length d,
// so that a test's few requests all count in one window of a limit.
func (c *testClock) StartWindow(d time.Duration) {
	now := c.Now().UnixNano()
	c.Advance(time.Duration((now/int64(d)+1)*int64(d) - now))
}

// afterTests run once every test has: what a test helper left for the whole run to share.
var afterTests []func()

func TestMain(m *testing.M) {
	defaultClock = clock.Now // set once, before any server starts
	code := m.Run()
	for _, f := range afterTests {
		f()
	}
	os.Exit(code)
}
