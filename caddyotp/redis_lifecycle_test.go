//go:build integration

package caddyotp

import (
	"context"
	"encoding/hex"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"
)

// TestRedisBackgroundWorkFollowsTheStoresLifecycle: the revocation listeners start with the
// pooled client, not with the first request, and stop when its last config is cleaned up.
func TestRedisBackgroundWorkFollowsTheStoresLifecycle(t *testing.T) {
	rs := startRedis(t)
	before := runtime.NumGoroutine()
	s := &RedisStore{Address: rs.Addr(), KeyPrefix: "lifecycle:"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// No request has asked anything: the view becomes fresh by itself.
	for deadline := time.Now().Add(5 * time.Second); s.be.stale.Load() || s.be.lastSync.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the revocation view was not refreshed without a request")
		}
	}
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before+2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Cleanup, %d before Provision", runtime.NumGoroutine(), before)
		}
	}
}

// TestRedisStoreUsesEachConfigsLogger: background messages of a client shared across reloads
// go to the logger of the config that holds it now, not of the first one.
func TestRedisStoreUsesEachConfigsLogger(t *testing.T) {
	rs := startRedis(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	first := &RedisStore{Address: rs.Addr(), KeyPrefix: "loggers:"}
	if err := first.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	core, logs := zapobserver.New(zap.InfoLevel)
	second := &RedisStore{Address: rs.Addr(), KeyPrefix: "loggers:"}
	if err := second.provision(ctx, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	if err := first.Cleanup(); err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	if second.be != first.be {
		t.Fatal("the reload did not share the client")
	}
	rs.Stop() // the refresh fails, and says so
	for deadline := time.Now().Add(5 * time.Second); logs.FilterMessageSnippet("cannot refresh revocations").Len() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the current config's logger got no word of the failing refresh")
		}
	}
}

// TestRedisStoreProvisionDoesNotWaitForRedis: with no Redis to reach, Provision and Cleanup
// (what `caddy validate` runs) return at once.
func TestRedisStoreProvisionDoesNotWaitForRedis(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s := &RedisStore{Address: "127.0.0.1:" + strconv.Itoa(freePort(t)), KeyPrefix: "unreachable:", DialTimeout: caddy.Duration(5 * time.Second)}
	done := make(chan error, 1)
	go func() {
		if err := s.Provision(ctx); err != nil {
			done <- err
			return
		}
		done <- s.Cleanup()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(4 * time.Second): // under the dial timeout: nothing waited for a dial
		t.Fatal("Provision and Cleanup waited for an unreachable Redis")
	}
}

// commandCounter counts the commands a Redis client sends, by name.
type commandCounter struct {
	mu    sync.Mutex
	names map[string]int
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *commandCounter) count(cmd redis.Cmder) {
	c.mu.Lock()
	c.names[strings.ToLower(cmd.Name())]++
	c.mu.Unlock()
}

func (c *commandCounter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[name]
}

// TestIdleInstanceReadsOnlyWhatChanged: once an instance has read the revocations, it reads only
// what the log holds past its position: an idle instance never reads the whole set again, however
// many revocations are live, and a new one still reaches it.
func TestIdleInstanceReadsOnlyWhatChanged(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	writer := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "idle:"})
	for i := 0; i < 2000; i++ {
		id := [16]byte{byte(i), byte(i >> 8), 0xaa}
		if err := writer.Revoke(ctx, Revocation{ID: id, Subject: [16]byte{byte(i), byte(i >> 8)}, At: time.Now(), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	// Another timeout: a client of its own, as another instance has.
	reader := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "idle:", Timeout: caddy.Duration(999 * time.Millisecond)}).(*RedisStore)
	counter := &commandCounter{names: map[string]int{}}
	reader.be.client.AddHook(counter)
	if at, err := reader.RevokedAt(ctx, [16]byte{7, 0, 0xaa}); err != nil || at == 0 {
		t.Fatalf("a live revocation after the first load: %d, %v", at, err)
	}
	fullReads := func() int { return counter.get("zscan") + counter.get("zrangebyscore") + counter.get("zrange") }
	before := fullReads()
	time.Sleep(3 * revocationRefresh) // idle: a few refreshes
	if got := fullReads(); got != before {
		t.Fatalf("an idle instance read the whole set again (%d reads of it, %d before)", got, before)
	}
	if counter.get("xrange") == 0 {
		t.Fatalf("an idle instance did not follow the log")
	}
	fresh := [16]byte{0xfe, 0xed}
	if err := writer.Revoke(ctx, Revocation{ID: fresh, Subject: fresh, At: time.Now(), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(revocationBound); ; time.Sleep(20 * time.Millisecond) {
		if at, _ := reader.RevokedAt(ctx, fresh); at != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a new revocation did not reach the idle instance within the bound")
		}
	}
}

// TestTrimmedPositionReloadsTheWholeSet: when the log no longer holds an instance's position
// (trimmed, or begun anew), the instance reads the whole set again rather than skip the hole.
func TestTrimmedPositionReloadsTheWholeSet(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	s := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "trim:"}).(*RedisStore)
	for i := 0; i < 3; i++ {
		if err := s.Revoke(ctx, Revocation{ID: [16]byte{byte(i), 1}, Subject: [16]byte{byte(i)}, At: time.Now(), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.be.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	counter := &commandCounter{names: map[string]int{}}
	s.be.client.AddHook(counter)
	// A record the log no longer holds, behind a position the log no longer holds either.
	lost := [16]byte{0x10, 0x57}
	set := s.be.prefix + revocationsTag
	if err := s.be.client.ZAdd(ctx, set, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: hex.EncodeToString(lost[:]) + ":1"}).Err(); err != nil {
		t.Fatal(err)
	}
	s.be.syncMu.Lock()
	s.be.pos = "1-0"
	s.be.syncMu.Unlock()
	if err := s.be.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if counter.get("zscan") == 0 {
		t.Fatal("a position the log no longer holds did not make the instance read the whole set")
	}
	if at, err := s.RevokedAt(ctx, lost); err != nil || at != 1 {
		t.Fatalf("the record behind the hole: %d, %v", at, err)
	}
}

// TestRejectedReloadKeepsTheRunningConfigsLogger: a config that provisioned the store and was
// then rejected must not take the running config's background messages with it.
func TestRejectedReloadKeepsTheRunningConfigsLogger(t *testing.T) {
	rs := startRedis(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	runningCore, running := zapobserver.New(zap.InfoLevel)
	live := &RedisStore{Address: rs.Addr(), KeyPrefix: "rej:"}
	must(t, live.provision(ctx, zap.New(runningCore)))
	defer live.Cleanup()
	rejectedCore, _ := zapobserver.New(zap.InfoLevel)
	failed := &RedisStore{Address: rs.Addr(), KeyPrefix: "rej:"}
	must(t, failed.provision(ctx, zap.New(rejectedCore)))
	must(t, failed.Cleanup()) // the new config failed; the old one runs on
	rs.Stop()
	eventually(t, "the running config hears that revocations cannot be refreshed", func() bool {
		return running.FilterMessageSnippet("cannot refresh").Len() > 0
	})
}
