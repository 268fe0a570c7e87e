//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestPumpingShieldRedisRoundTrips counts what the shield costs in Redis round trips: per code
// handed to the provider (one script), per code that quarantines its prefix (the script, and
// the admin API's list: two more), and per verified code (one script; one more per country with
// country_limit); with country_limit, a code its prefix holds back costs a third, to take its
// number back out of the country. docs/BENCHMARKS.md states these.
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
	from := func(i int) string { return fmt.Sprintf("203.0.%d.7", i) } // a range of each code's own
	if a, err := s.admit(ctx, code(0), from(0)); !a.ok || err != nil { // loads the scripts
		t.Fatal(a, err)
	}
	if err := s.forget(ctx, code(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Incr(ctx, "warm", time.Minute); err != nil { // loads Incr's script, which the admin API's list uses
		t.Fatal(err)
	}
	counter.take()
	steps := map[string]int{}
	s.country = Limit{}
	if a, err := s.admit(ctx, code(1), from(1)); !a.ok || err != nil {
		t.Fatal(a, err)
	}
	steps["send"] = counter.take()
	if err := s.forget(ctx, code(1)); err != nil {
		t.Fatal(err)
	}
	steps["verify"] = counter.take()
	s.country = Limit{Count: 1000, Window: defaultIPLimit.Window}
	if a, err := s.admit(ctx, code(2), from(2)); !a.ok || err != nil {
		t.Fatal(a, err)
	}
	steps["send, country_limit"] = counter.take()
	if err := s.forget(ctx, code(2)); err != nil {
		t.Fatal(err)
	}
	steps["verify, country_limit"] = counter.take()
	s.country = Limit{}
	for i := 3; i < 5; i++ { // every code so far was taken back: these count 1 and 2
		if a, err := s.admit(ctx, code(i), from(i)); !a.ok || err != nil {
			t.Fatal(a, err)
		}
	}
	counter.take()
	if a, err := s.admit(ctx, code(5), from(5)); !a.ok || err != nil { // reaches prefix_limit 3
		t.Fatal(a, err)
	}
	steps["send, quarantining"] = counter.take()
	if a, err := s.admit(ctx, code(6), from(6)); a.ok || err != nil {
		t.Fatalf("a code to the quarantined prefix: %v %v", a, err)
	}
	steps["send, held back"] = counter.take()
	s.country = Limit{Count: 1000, Window: defaultIPLimit.Window}
	if a, err := s.admit(ctx, code(7), from(7)); a.ok || a.country || err != nil {
		t.Fatalf("a code to the quarantined prefix, with country_limit: %v %v", a, err)
	}
	steps["send, held back, country_limit"] = counter.take() // the country's count, the prefix's, the country's taken back
	t.Logf("Redis round trips of the pumping shield: %v", steps)
	budget := map[string]int{"send": 1, "verify": 1, "send, country_limit": 2, "verify, country_limit": 2, "send, quarantining": 3, "send, held back": 1,
		"send, held back, country_limit": 3}
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
	for i, country := range []bool{false, true} {
		for j, verify := range []bool{false, true} {
			h, _ := newUnitHandler(t, map[string]any{"phones": []string{"*"}, "store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": fmt.Sprintf("pbt%d%d:", i, j)}})
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
	if !w.Undo { // a verified code's number taken back is the verify's step
		<-s.release
	}
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
