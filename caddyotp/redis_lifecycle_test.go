package caddyotp

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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
