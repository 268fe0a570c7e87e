//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"testing"
)

// TestPumpingShieldRedisRoundTrips counts what the shield costs in Redis round trips: per code
// handed to the provider (one script), per code that quarantines its prefix (the script, and
// the admin API's list: two more), and per verified code (one increment; one more per country
// with country_limit). docs/BENCHMARKS.md states these.
func TestPumpingShieldRedisRoundTrips(t *testing.T) {
	rs := startRedis(t)
	h, _ := newUnitHandler(t, map[string]any{"store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": "prt:"},
		"pumping_shield": map[string]any{"prefix_limit": 3, "country_limit": map[string]any{"count": 1000, "window": "24h"}}})
	store := h.store.(*RedisStore)
	store.be.stop() // the revocation loop's own reads are not the shield's
	store.be.done.Wait()
	counter := new(roundTrips)
	store.be.client.AddHook(counter)
	s, ctx := h.flows.deliveries.shield, context.Background()
	code := func(i int) *flow {
		return &flow{Phone: fmt.Sprintf("+44740012%04d", i), Allowed: true, Sent: h.now().UnixNano()}
	}
	if ok, err := s.admit(ctx, code(0)); !ok || err != nil { // loads the scripts
		t.Fatal(ok, err)
	}
	if err := s.forget(ctx, code(0)); err != nil {
		t.Fatal(err)
	}
	counter.take()
	steps := map[string]int{}
	s.country = Limit{}
	if ok, err := s.admit(ctx, code(1)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	steps["send"] = counter.take()
	if err := s.forget(ctx, code(1)); err != nil {
		t.Fatal(err)
	}
	steps["verify"] = counter.take()
	s.country = Limit{Count: 1000, Window: defaultIPLimit.Window}
	if ok, err := s.admit(ctx, code(2)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	steps["send, country_limit"] = counter.take()
	if err := s.forget(ctx, code(2)); err != nil {
		t.Fatal(err)
	}
	steps["verify, country_limit"] = counter.take()
	s.country = Limit{}
	for i := 3; i < 5; i++ { // every code so far was taken back: these count 1 and 2
		if ok, err := s.admit(ctx, code(i)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	counter.take()
	if ok, err := s.admit(ctx, code(5)); !ok || err != nil { // reaches prefix_limit 3
		t.Fatal(ok, err)
	}
	steps["send, quarantining"] = counter.take()
	if ok, err := s.admit(ctx, code(6)); ok || err != nil {
		t.Fatalf("a code to the quarantined prefix: %v %v", ok, err)
	}
	steps["send, held back"] = counter.take()
	t.Logf("Redis round trips of the pumping shield: %v", steps)
	budget := map[string]int{"send": 1, "verify": 1, "send, country_limit": 2, "verify, country_limit": 2, "send, quarantining": 3, "send, held back": 1}
	for step, n := range steps {
		if n != budget[step] {
			t.Errorf("%s took %d round trips, want %d", step, n, budget[step])
		}
	}
}

// TestPumpingShieldRedisTime runs BenchmarkPumpingShield's cases on a local redis-server and
// logs their time (redis-server is started by the test, which a benchmark cannot do).
func TestPumpingShieldRedisTime(t *testing.T) {
	rs := startRedis(t)
	h, _ := newUnitHandler(t, map[string]any{"store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": "pbt:"}})
	for _, country := range []bool{false, true} {
		for _, verify := range []bool{false, true} {
			r := testing.Benchmark(func(b *testing.B) { benchShield(b, h, country, verify) })
			t.Logf("country_limit %v, verify %v: %s %s", country, verify, r, r.MemString())
		}
	}
}

// gatedWindow is a store whose Window waits for the test to let it: the first step of a real
// delivery, so that a count of round trips starts before it.
type gatedWindow struct {
	Store
	release chan struct{}
}

func (s gatedWindow) Window(ctx context.Context, w Window) (Windowed, error) {
	<-s.release
	return s.Store.Window(ctx, w)
}

// scripts counts the scripts among a round trip's names: the first run's load, or a cached run.
func scripts(names []string) int {
	n := 0
	for _, name := range names {
		if name == "evalsha" || name == "eval" {
			n++
		}
	}
	return n
}
