//go:build redisbench

package caddyotp

// The idle cost of the revocation view on Redis: bytes/s that Redis sends one idle instance
// with 0, 1,000 and 100,000 live revocations, read from Redis's own INFO stats. A measurement for
// docs/BENCHMARKS.md, not a CI gate: go test -tags redisbench -run TestIdleRedisTraffic -v ./caddyotp

import (
	"context"
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
		out := func() int64 {
			info, err := admin.Info(ctx, "stats").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					return n
				}
			}
			return 0
		}
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
