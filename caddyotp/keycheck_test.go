package caddyotp

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"
)

// TestKeyFingerprintOfARotatedSecretFadesAndALiveOneStays: a single instance whose secret was
// changed is told of "another instance with a different key" only while the old key's
// fingerprint lasts (keyFingerprintTTL), not for weeks; an instance that keeps serving keeps
// its own fingerprint there, so that a second instance with another key is still told.
func TestKeyFingerprintOfARotatedSecretFadesAndALiveOneStays(t *testing.T) {
	store := provisionStore(t, &MemoryStore{Name: t.Name()})
	core, logs := zapobserver.New(zapcore.ErrorLevel)
	obs := &observer{logger: zap.New(core)}
	now := time.Unix(1_900_000_000, 0)
	clockAt := func() time.Time { return now }
	check := func(kc *keyCheck) {
		t.Helper()
		kc.begin("gate")
		for deadline := time.Now().Add(5 * time.Second); kc.running.Load(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the key check did not end")
			}
		}
	}
	told := func() int { return logs.FilterMessageSnippet("different key").Len() }

	old := newKeyCheck(store, []byte("the old secret's subject key...."), obs, clockAt, 200*time.Millisecond)
	check(old)
	rotated := newKeyCheck(store, []byte("the new secret's subject key...."), obs, clockAt, 200*time.Millisecond)
	check(rotated)
	if told() != 1 {
		t.Fatalf("right after the rotation: told %d times, want once", told())
	}
	if msg := logs.All()[0].Message; !strings.Contains(msg, "secret") || !strings.Contains(msg, "changed") {
		t.Errorf("the error does not say that a changed secret passes by itself: %q", msg)
	}
	time.Sleep(300 * time.Millisecond) // the old fingerprint's TTL passes; nothing renews it
	now = now.Add(keyRecheck)
	check(rotated)
	if told() != 1 {
		t.Fatalf("after the old key's fingerprint expired: told %d times, want no more", told())
	}

	// The rotated instance, serving on, renews its fingerprint before it expires, so that an
	// instance with yet another key is told however long the first has run.
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		now = now.Add(keyRecheck)
		check(rotated)
	}
	other := newKeyCheck(store, []byte("another instance's own key......"), obs, clockAt, 200*time.Millisecond)
	check(other)
	if told() != 2 {
		t.Fatalf("an instance with another key beside a live one: told %d times in all, want 2", told())
	}
}
