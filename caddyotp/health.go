package caddyotp

import (
	"crypto/sha256"
	"encoding/hex"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// result is what one real delivery did: how long the provider took, and the state it made.
type result struct {
	took   time.Duration
	state  string
	reason string // a failed state's reason, when it belongs to the number (reasonOf)
}

// health remembers the last real deliveries of one gate through its sender, by channel (SMS,
// call), so that a simulated course can be drawn from real ones: their times, and their failures
// when the provider fails. It keeps the last few of each channel only, so that the course follows
// the provider as it is now; the state and the time of a simulated delivery are those of one real
// delivery. It outlives config reloads (healthPool), so that the first answers after a reload are
// drawn like the others; it is the gate's own, so that another gate's traffic cannot steer it.
type health struct {
	mu       sync.Mutex
	channels map[string]*recent
}

// recent are the last deliveries of one channel.
type recent struct {
	ring [16]result
	n    int // deliveries recorded, at most len(ring) of them kept
}

// defaultResult is the simulated course before any real delivery was seen.
var defaultResult = result{took: 400 * time.Millisecond, state: deliveryAccepted}

func (hl *health) record(channel string, res result) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.channels == nil {
		hl.channels = make(map[string]*recent)
	}
	c := hl.channels[channel]
	if c == nil {
		c = new(recent)
		hl.channels[channel] = c
	}
	c.ring[c.n%len(c.ring)] = res
	c.n++
}

// seen is how many real deliveries of channel were recorded.
func (hl *health) seen(channel string) int {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if c := hl.channels[channel]; c != nil {
		return c.n
	}
	return 0
}

// sample draws a simulated outcome of channel: one of its last real deliveries.
func (hl *health) sample(channel string) result {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	c := hl.channels[channel]
	if c == nil || c.n == 0 {
		d := defaultResult
		d.took = d.took/2 + time.Duration(mrand.Int64N(int64(d.took)))
		return d
	}
	return c.ring[mrand.IntN(min(c.n, len(c.ring)))]
}

func (*health) Destruct() error { return nil }

// healthPool keeps each sender's health by its configuration.
var healthPool = caddy.NewUsagePool()

// healthKey names a gate's health by its sender's configuration and its rules of who may sign
// in (hashed: they may hold a token, and phone numbers).
func healthKey(senderRaw, rules []byte) string {
	m := sha256.New()
	m.Write(senderRaw)
	m.Write([]byte{0})
	m.Write(rules)
	return "otp.health." + hex.EncodeToString(m.Sum(nil))
}

var _ caddy.Destructor = (*health)(nil)
