package caddyotp

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestStoreConformance runs the contract of every Store (what the gate relies on) against the
// memory store; TestRedisStoreConformance runs it against Redis and a Redis Cluster.
func TestStoreConformance(t *testing.T) {
	storeContract(t, func(t *testing.T) Store { return provisionStore(t, &MemoryStore{Name: t.Name()}) })
}

func provisionStore[S interface {
	Store
	caddy.Provisioner
	caddy.CleanerUpper
}](t *testing.T, s S) Store {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func storeContract(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("missing key reads nil", func(t *testing.T) {
		s := newStore(t)
		if v, err := s.Get(ctx, "nothing"); v != nil || err != nil {
			t.Errorf("Get = %q, %v", v, err)
		}
		if v, err := s.Take(ctx, "nothing"); v != nil || err != nil {
			t.Errorf("Take = %q, %v", v, err)
		}
		if err := s.Delete(ctx, "nothing"); err != nil {
			t.Errorf("Delete = %v", err)
		}
	})

	t.Run("set get replace delete", func(t *testing.T) {
		s := newStore(t)
		must(t, s.Set(ctx, "k", []byte("one"), time.Minute))
		must(t, s.Set(ctx, "k", []byte("two"), time.Minute))
		if v, err := s.Get(ctx, "k"); err != nil || string(v) != "two" {
			t.Errorf("Get after replace = %q", v)
		}
		must(t, s.Delete(ctx, "k"))
		if v, err := s.Get(ctx, "k"); err != nil || v != nil {
			t.Errorf("Get after Delete = %q", v)
		}
	})

	t.Run("values expire after their ttl", func(t *testing.T) {
		s := newStore(t)
		must(t, s.Set(ctx, "short", []byte("v"), 100*time.Millisecond))
		must(t, s.Set(ctx, "long", []byte("v"), time.Minute))
		eventually(t, "short-lived value gone", func() bool { v, err := s.Get(ctx, "short"); return err == nil && v == nil })
		if v, err := s.Get(ctx, "long"); err != nil || v == nil {
			t.Error("a value expired before its ttl")
		}
	})

	t.Run("take gives the value to exactly one", func(t *testing.T) {
		s := newStore(t)
		for round := 0; round < 30; round++ {
			must(t, s.Set(ctx, "flow", []byte("v"), time.Minute))
			var winners atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if v, err := s.Take(ctx, "flow"); v != nil && err == nil {
						winners.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := winners.Load(); n != 1 {
				t.Fatalf("round %d: %d takers got the value", round, n)
			}
		}
	})

	t.Run("a counter reads as its decimal", func(t *testing.T) {
		s := newStore(t)
		for i := 0; i < 3; i++ {
			if _, err := s.Incr(ctx, "count", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := s.Get(ctx, "count"); err != nil || string(v) != "3" {
			t.Errorf("Get of a counter at 3 = %q, %v", v, err)
		}
	})

	t.Run("incr is atomic and keeps the first expiry", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Incr(ctx, "n", time.Minute); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n, err := s.Incr(ctx, "n", time.Minute); n != 101 || err != nil {
			t.Errorf("count after 100 concurrent increments and one more = %d, %v", n, err)
		}
		if n, err := s.Incr(ctx, "window", 150*time.Millisecond); n != 1 || err != nil {
			t.Fatalf("new counter starts at %d (%v)", n, err)
		}
		// Increments do not push the expiry back: the counter ends 150ms after it began.
		for i := 0; i < 3; i++ {
			if _, err := s.Incr(ctx, "window", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "counter expired", func() bool { n, err := s.Incr(ctx, "window", 150*time.Millisecond); return err == nil && n == 1 })
	})

	t.Run("a tally counts only while no lock holds, and stops past a cap", func(t *testing.T) {
		s := newStore(t)
		now := time.Now().UnixNano()
		try := Tally{Locks: []string{"lock:{p}", "lock:{p}:a"}, Now: now, Counters: []string{"fail:{p}:a", "fail:{p}"}, Caps: []int64{2, 10}, TTL: time.Minute}
		for want := int64(1); want <= 3; want++ {
			got, err := s.Tally(ctx, try)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Locks) != 2 || got.Locks[0] != nil || got.Locks[1] != nil {
				t.Fatalf("try %d: locks read %q, want two nils", want, got.Locks)
			}
			// The pair's count passes its cap of 2 at the third try: the phone's is not counted then.
			wantCounts := []int64{want, min(want, 2)}
			if want == 3 {
				wantCounts = []int64{3}
			}
			if !slices.Equal(got.Counts, wantCounts) {
				t.Fatalf("try %d: counts %v, want %v", want, got.Counts, wantCounts)
			}
		}
		if v, err := s.Get(ctx, "fail:{p}"); err != nil || string(v) != "2" {
			t.Errorf("the phone's counter reads %q, %v; want 2", v, err)
		}
		// A lock whose time has passed counts as none, though its key is still there.
		past := []byte(strconv.FormatInt(now-1, 10))
		if err := s.Set(ctx, "lock:{p}", past, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := s.Tally(ctx, try)
		if err != nil || string(got.Locks[0]) != string(past) || !slices.Equal(got.Counts, []int64{4}) {
			t.Fatalf("with a lock past its time: %+v, %v; want it read and the try counted", got, err)
		}
		until := []byte(strconv.FormatInt(now+int64(time.Minute), 10))
		if err := s.Set(ctx, "lock:{p}:a", until, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err = s.Tally(ctx, try)
		if err != nil || string(got.Locks[1]) != string(until) || len(got.Counts) != 0 {
			t.Fatalf("with the pair locked: %+v, %v; want its lock read and nothing counted", got, err)
		}
		if v, _ := s.Get(ctx, "fail:{p}:a"); string(v) != "4" {
			t.Errorf("a locked tally counted: the pair's counter reads %q", v)
		}
		// It holds until the nanosecond it names, and not at it.
		edge := Tally{Locks: []string{"lock:{p}:a"}, Counters: []string{"fail:{p}:e"}, Caps: []int64{9}, TTL: time.Minute}
		edge.Now = now + int64(time.Minute) - 1
		if got, err := s.Tally(ctx, edge); err != nil || len(got.Counts) != 0 {
			t.Fatalf("a lock a nanosecond before its end: %+v, %v; want nothing counted", got, err)
		}
		edge.Now++
		if got, err := s.Tally(ctx, edge); err != nil || !slices.Equal(got.Counts, []int64{1}) {
			t.Fatalf("a lock at its end: %+v, %v; want the try counted", got, err)
		}
		// A time of more digits is later, though it compares lower as a string.
		edge.Locks, edge.Now = []string{"lock:{p}:short"}, 99
		if err := s.Set(ctx, "lock:{p}:short", []byte("100"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Tally(ctx, edge); err != nil || len(got.Counts) != 0 {
			t.Fatalf("a lock until 100 at 99: %+v, %v; want nothing counted", got, err)
		}
		// Concurrent tallies count each try once: 50 of them leave a fresh counter at 50.
		var wg sync.WaitGroup
		free := Tally{Counters: []string{"fail:{q}"}, Caps: []int64{1000}, TTL: time.Minute}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Tally(ctx, free); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if v, _ := s.Get(ctx, "fail:{q}"); string(v) != "50" {
			t.Errorf("50 concurrent tallies left the counter at %q", v)
		}
		// A new counter expires after the tally's TTL, as Incr's does.
		if _, err := s.Tally(ctx, Tally{Counters: []string{"fail:{r}"}, Caps: []int64{9}, TTL: 150 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "tallied counter expired", func() bool { v, err := s.Get(ctx, "fail:{r}"); return err == nil && v == nil })
	})

	t.Run("a window counts each member once, until its hold or caps, less what was taken back", func(t *testing.T) { windowContract(t, newStore(t)) })

	t.Run("revocations", func(t *testing.T) {
		s := newStore(t)
		abc, abd, subject := [16]byte{0xab, 0xc}, [16]byte{0xab, 0xd}, [16]byte{0x5b}
		if at, err := s.RevokedAt(ctx, abc); at != 0 || err != nil {
			t.Fatalf("RevokedAt before Revoke = %v, %v", at, err)
		}
		t1 := time.UnixMilli(1_800_000_000_000)
		if err := s.Revoke(ctx, Revocation{ID: abc, Subject: subject, At: t1, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if at, err := s.RevokedAt(ctx, abc); at != t1.UnixMilli() || err != nil {
			t.Errorf("RevokedAt after Revoke = %v, %v", at, err)
		}
		if at, err := s.RevokedAt(ctx, abd); err != nil || at != 0 {
			t.Error("another id is revoked too")
		}
		if at, err := s.RevokedAt(ctx, subject); err != nil || at != 0 {
			t.Error("revoking one id revoked its subject")
		}
		// Revoking again keeps the later time, whichever order the two come in.
		for _, at := range []time.Time{t1.Add(time.Hour), t1.Add(time.Second)} {
			if err := s.Revoke(ctx, Revocation{ID: abc, Subject: subject, At: at, TTL: time.Minute}); err != nil {
				t.Fatal(err)
			}
		}
		if at, err := s.RevokedAt(ctx, abc); err != nil || at != t1.Add(time.Hour).UnixMilli() {
			t.Errorf("RevokedAt after three revocations = %v, want the latest", at)
		}
	})

	t.Run("revocations of one subject are bounded", func(t *testing.T) {
		s := newStore(t)
		subject := [16]byte{0x5b, 1}
		t1 := time.UnixMilli(1_800_000_000_000)
		for i := 0; i < maxSubjectRevocations+50; i++ {
			id := [16]byte{0x1d, byte(i), byte(i >> 8)}
			if err := s.Revoke(ctx, Revocation{ID: id, Subject: subject, At: t1.Add(time.Duration(i) * time.Millisecond), TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
		if n := liveRecords(t, s); n != maxSubjectRevocations+1 {
			t.Errorf("%d live records after %d revocations of one subject, want %d and the subject's own", n, maxSubjectRevocations+50, maxSubjectRevocations)
		}
		last := t1.Add(time.Duration(maxSubjectRevocations+49) * time.Millisecond)
		if at, err := s.RevokedAt(ctx, subject); at != last.UnixMilli() || err != nil {
			t.Errorf("the subject's record says %v, %v; want the last revocation's time %v", at, err, last.UnixMilli())
		}
		// An id already recorded is still revoked by id, and revoking it again adds nothing.
		first := [16]byte{0x1d}
		if err := s.Revoke(ctx, Revocation{ID: first, Subject: subject, At: t1, TTL: 2 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		if at, err := s.RevokedAt(ctx, first); err != nil || at != t1.UnixMilli() {
			t.Errorf("the first id's record says %v", at)
		}
		if n := liveRecords(t, s); n != maxSubjectRevocations+1 {
			t.Errorf("%d live records after revoking a known id again", n)
		}
	})
}

func TestMemoryStoreStateOutlivesReloadButNotTheLastUser(t *testing.T) {
	ctx := context.Background()
	old := &MemoryStore{Name: t.Name()}
	_ = old.Provision(caddy.Context{})
	_ = old.Set(ctx, "flow:x", []byte("pending"), time.Minute)

	// A reload provisions the new config before the old one is cleaned up.
	next := &MemoryStore{Name: t.Name()}
	_ = next.Provision(caddy.Context{})
	_ = old.Cleanup()
	if v, _ := next.Get(ctx, "flow:x"); string(v) != "pending" {
		t.Fatalf("after reload: %q", v)
	}
	_ = next.Cleanup()

	fresh := &MemoryStore{Name: t.Name()}
	_ = fresh.Provision(caddy.Context{})
	defer fresh.Cleanup()
	if v, _ := fresh.Get(ctx, "flow:x"); v != nil {
		t.Errorf("state survived its last user: %q", v)
	}
}

func TestExpiredRevocationsAreSwept(t *testing.T) {
	var r revocations
	past := time.Now().Add(-time.Second).UnixNano()
	for i := 0; i < 100_000; i++ {
		r.add([16]byte{byte(i), byte(i >> 8), byte(i >> 16)}, revocation{at: 1, until: past})
	}
	live := [16]byte{0xff, 0xff, 0xff, 0xff}
	r.add(live, revocation{at: 2, until: time.Now().Add(time.Hour).UnixNano()})
	r.mu.RLock()
	n := len(r.revs)
	r.mu.RUnlock()
	if n > 1024 {
		t.Errorf("%d entries kept after 100,000 expired revocations", n)
	}
	if r.at(live) != 2 {
		t.Error("a live revocation was swept")
	}
}

// liveRecords counts the revocation records a store keeps.
func liveRecords(t *testing.T, s Store) int {
	t.Helper()
	switch s := s.(type) {
	case *MemoryStore:
		s.mem.revs.mu.RLock()
		defer s.mem.revs.mu.RUnlock()
		return len(s.mem.revs.revs)
	case *RedisStore:
		n, err := s.be.client.ZCard(context.Background(), s.be.prefix+revocationsTag).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	t.Fatalf("no way to count the records of %T", s)
	return 0
}

// must fails the test at an error a store should not have.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRedisClusterRefusesAnotherDatabase(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := (&RedisStore{Addresses: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, DB: 2}).Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "db") {
		t.Fatalf("a cluster with db 2 was accepted: %v", err)
	}
}
