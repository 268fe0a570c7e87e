package caddyotp

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func testCodec() *sessionCodec {
	return newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), 12*time.Hour, 30*time.Minute)
}

func TestSessionRoundTrip(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, err := c.issue(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.decode(c.encode(s), t0.Add(time.Minute))
	if err != nil || got != s {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, s)
	}
	s2, _ := c.issue(alice, t0)
	if s2.ID == s.ID {
		t.Error("two sign-ins got the same session id")
	}
}

func TestSessionRejectsTamperingAnywhere(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := c.issue(alice, t0)
	v := c.encode(s)
	for i := 0; i < len(v); i++ {
		b := []byte(v)
		b[i] ^= 1
		if _, err := c.decode(string(b), t0); err == nil {
			t.Errorf("flipping byte %d was accepted", i)
		}
	}
	for _, bad := range []string{"", ".", v[:len(v)-1], v[:20], v + "A", strings.Repeat("A", 500), strings.Replace(v, ".", "", 1)} {
		if _, err := c.decode(bad, t0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	foreign := newSessionCodec(bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), 12*time.Hour, 30*time.Minute)
	if _, err := foreign.decode(v, t0); err != errSessionSignature {
		t.Errorf("a cookie signed with another key: %v", err)
	}
	other := newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-two"), 12*time.Hour, 30*time.Minute)
	if _, err := other.decode(v, t0); err != errSessionAudience {
		t.Errorf("a cookie of another gate, signed with the same key: %v", err)
	}
}

// TestSessionIsJudgedByTheCodecsCurrentLimits: a cookie issued for 12 hours is refused once
// the gate's own session_ttl, shortened since, has passed.
func TestSessionIsJudgedByTheCodecsCurrentLimits(t *testing.T) {
	t.Parallel() // no server, no shared clock
	long := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := long.issue(alice, t0)
	v := long.encode(s)
	short := newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), time.Hour, 30*time.Minute)
	if _, err := short.decode(v, t0.Add(59*time.Minute)); err != errSessionIdle {
		t.Errorf("59 idle minutes under a 30-minute idle limit: %v", err)
	}
	s.Seen = t0.Add(50 * time.Minute)
	if _, err := short.decode(long.encode(s), t0.Add(time.Hour)); err != errSessionExpired {
		t.Errorf("an hour after issue under a 1h session_ttl: %v", err)
	}
}

func TestSessionAbsoluteAndIdleLimits(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := c.issue(alice, t0)
	v := c.encode(s)
	if _, err := c.decode(v, t0.Add(31*time.Minute)); err != errSessionIdle {
		t.Errorf("after 31 idle minutes: %v", err)
	}
	// Sliding: a visitor active every 20 minutes keeps the session until the absolute limit.
	at := t0
	for at.Before(t0.Add(12*time.Hour - 20*time.Minute)) {
		at = at.Add(20 * time.Minute)
		got, err := c.decode(v, at)
		if err != nil {
			t.Fatalf("active visitor refused at %s: %v", at.Sub(t0), err)
		}
		if !c.needsSlide(got, at) {
			t.Fatalf("no slide after 20 minutes")
		}
		got.Seen = at
		v = c.encode(got)
	}
	if _, err := c.decode(v, t0.Add(12*time.Hour)); err != errSessionExpired {
		t.Errorf("at session_ttl: %v", err)
	}
}
