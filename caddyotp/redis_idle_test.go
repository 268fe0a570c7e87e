//go:build redisbench

package caddyotp

// The idle cost of the revocation view on Redis: bytes/s that Redis sends one idle instance
// with 0, 1,000 and 100,000 live revocations, read from Redis's own INFO stats. A measurement for
// docs/BENCHMARKS.md, not a CI gate: go test -tags redisbench -run TestIdleRedisTraffic -v ./caddyotp

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

func TestIdleRedisTraffic(t *testing.T) {
	for _, live := range []int{0, 1000, 100000} {
		rs := startRedis(t)
		ctx := context.Background()
		writer := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "idle:"}).(*RedisStore)
		start := time.Now()
		for i := 0; i < live; i++ {
			id := [16]byte{byte(i), byte(i >> 8), byte(i >> 16), 0xaa}
			if err := writer.Revoke(ctx, Revocation{ID: id, Subject: [16]byte{byte(i), byte(i >> 8), byte(i >> 16)}, At: time.Now(), TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
		written := time.Since(start)
		_ = writer.Cleanup()
		admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		out := func() int64 { return infoField(t, admin, "stats", "total_net_output_bytes") }
		loadStart := time.Now()
		reader := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "idle:", Timeout: caddy.Duration(2 * time.Second)}).(*RedisStore)
		for reader.be.lastSync.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		loaded := time.Since(loadStart)
		time.Sleep(time.Second)
		before := out()
		time.Sleep(10 * time.Second)
		rate := float64(out()-before) / 10
		t.Logf("%7d live revocations: written in %s; a fresh instance's view loaded in %s; idle traffic from Redis %.0f bytes/s (INFO counts the admin's own INFO replies too)",
			live, written.Round(time.Millisecond), loaded.Round(time.Millisecond), rate)
		admin.Close()
	}
}

// TestRevocationPropagationUnderLoad: one instance revokes at a steady rate, another (a client
// and view of its own) watches for each revocation; the delay is from the end of Revoke on the
// first to the moment the second's view refuses the id. On one redis-server and on a cluster:
// go test -tags redisbench -run TestRevocationPropagationUnderLoad -v ./caddyotp
func TestRevocationPropagationUnderLoad(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		for _, rate := range []int{100, 1000} {
			prefix := fmt.Sprintf("prop%d:", rate)
			writer := provisionStore(t, r.store(prefix)).(*RedisStore)
			other := r.store(prefix)
			other.Timeout = caddy.Duration(999 * time.Millisecond) // settings of its own: a client and view of its own
			reader := provisionStore(t, other).(*RedisStore)
			ctx := context.Background()
			for reader.be.lastSync.Load() == 0 || writer.be.lastSync.Load() == 0 {
				_, _ = reader.RevokedAt(ctx, [16]byte{})
				_, _ = writer.RevokedAt(ctx, [16]byte{})
				time.Sleep(5 * time.Millisecond)
			}
			type pending struct {
				id   [16]byte
				done time.Time
			}
			queue := make(chan pending, 100000)
			var delays []time.Duration
			stale := 0
			watched := make(chan struct{})
			go func() { // the second instance's side: poll its view for each id, oldest first
				defer close(watched)
				for p := range queue {
					for {
						at, err := reader.RevokedAt(ctx, p.id)
						if err != nil {
							stale++
						}
						if at != 0 {
							delays = append(delays, time.Since(p.done))
							break
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
			const seconds = 10
			began := time.Now()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			for i := 0; i < rate*seconds; i++ {
				<-tick.C
				id := [16]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(rate), 0xbb}
				if err := writer.Revoke(ctx, Revocation{ID: id, Subject: [16]byte{byte(i), byte(i >> 8), byte(i >> 16), 0xcc}, At: time.Now(), TTL: time.Hour}); err != nil {
					t.Fatal(err)
				}
				queue <- pending{id, time.Now()}
			}
			tick.Stop()
			achieved := float64(rate*seconds) / time.Since(began).Seconds()
			close(queue)
			<-watched
			slices.Sort(delays)
			q := func(p float64) time.Duration {
				return delays[int(p*float64(len(delays)-1))].Round(10 * time.Microsecond)
			}
			t.Logf("%4d sign-outs/s asked, %.0f/s done, for %ds: delay p50 %s, p99 %s, max %s (%d revocations; %d stale answers)",
				rate, achieved, seconds, q(0.5), q(0.99), q(1), len(delays), stale)
		}
	})
}

// TestRedisMemoryPerSignInAndRevocation: Redis's used_memory before and after 10,000 pending
// sign-ins (each a POST /send of its own phone from an address of its own, its code delivered)
// and after 10,000 revocations, for the README's cost model:
// go test -tags redisbench -run TestRedisMemoryPerSignInAndRevocation -v ./caddyotp
func TestRedisMemoryPerSignInAndRevocation(t *testing.T) {
	const n = 10000
	rs := startRedis(t)
	var phones []string
	for i := 0; i < n; i++ {
		phones = append(phones, fmt.Sprintf("+1201555%04d", i))
	}
	h, sender := newUnitHandler(t, map[string]any{"store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": "mem:"}, "phones": phones})
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer admin.Close()
	used := func() int64 { return infoField(t, admin, "memory", "used_memory") }
	if _, err := h.store.RevokedAt(ctx, [16]byte{}); err != nil { // the view, and its client, up
		t.Fatal(err)
	}
	base := used()
	for i, phone := range phones {
		v := unitVisit(t)
		v.client = fmt.Sprintf("10.%d.%d.1", i>>8, i&0xff)
		for {
			o := begun(h.flows.start(ctx, v, phone, ""))
			if o.kind == sent {
				break
			}
			if o.kind != busy {
				t.Fatalf("send %d: %+v", i, o)
			}
			time.Sleep(time.Millisecond) // the outbox is full: let deliveries finish
		}
	}
	sentCode(t, sender, n)
	for o := h.flows.deliveries.outbox; ; time.Sleep(10 * time.Millisecond) { // every delivery state written
		o.mu.Lock()
		idle := o.inFlight == 0
		o.mu.Unlock()
		if idle {
			break
		}
	}
	keys, _ := admin.DBSize(ctx).Result()
	perSignIn := float64(used()-base) / n
	base = used()
	for i := 0; i < n; i++ {
		id := [16]byte{byte(i), byte(i >> 8), 0xdd}
		if err := h.store.Revoke(ctx, Revocation{ID: id, Subject: [16]byte{byte(i), byte(i >> 8), 0xee}, At: time.Now(), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	perRevocation := float64(used()-base) / n
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fresh := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "mem:", Timeout: caddy.Duration(999 * time.Millisecond)}).(*RedisStore)
	if _, err := fresh.RevokedAt(ctx, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("Redis memory: %.0f bytes per pending sign-in (%d keys for %d), %.0f bytes per live revocation (its records and its log entry); an instance's view: %.0f bytes of heap per revocation",
		perSignIn, keys, n, perRevocation, float64(after.HeapAlloc-before.HeapAlloc)/n)
}

// infoField is a number from Redis's INFO section.
func infoField(t *testing.T, c *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}
