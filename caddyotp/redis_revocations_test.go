//go:build integration

package caddyotp

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

func announcement(id [16]byte, at, until int64) string {
	return hex.EncodeToString(id[:]) + ":" + strconv.FormatInt(at, 10) + " " + strconv.FormatInt(until, 10)
}

// revokeUnannounced runs Revoke's script without its PUBLISH: a revocation whose pub/sub
// message was lost.
func revokeUnannounced(t *testing.T, w *RedisStore, r Revocation) {
	t.Helper()
	now := time.Now()
	id, subject := hex.EncodeToString(r.ID[:]), hex.EncodeToString(r.Subject[:])
	set := w.be.prefix + revocationsTag
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	err := revokeScript.Run(context.Background(), w.be.client, []string{set, set + ":id:" + id, set + ":subject:" + subject, set + ":id:" + subject, set + ":log"},
		id, ms(r.At), ms(now.Add(r.TTL)), subject, ms(now), maxSubjectRevocations, ms(now.Add(subjectRevocationTTL)), revocationLogLen).Err()
	if err != nil && err != redis.Nil {
		t.Error(err)
	}
}

// TestReusedLogIDAfterARewindIsAGap: a master promoted without the log's newest entries, on a
// clock behind the old one's, numbers its next entry with an id the reader has already passed.
// The reader must see that the entry at its position is not the one it read, and reload.
func TestReusedLogIDAfterARewindIsAGap(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	writer := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "rw:"}).(*RedisStore)
	reader := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "rw:", Timeout: caddy.Duration(999 * time.Millisecond)}).(*RedisStore)
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	log := "rw:" + revocationsTag + ":log"
	now := time.Now()
	ahead := now.Add(time.Hour).UnixMilli() // the old master's clock, an hour ahead
	until := now.Add(time.Hour).UnixMilli()
	a, b := [16]byte{0xa}, [16]byte{0xb}
	must(t, raw.XAdd(ctx, &redis.XAddArgs{Stream: log, ID: fmt.Sprintf("%d-0", ahead), Values: []any{"r", announcement(a, now.UnixMilli(), until)}}).Err())
	must(t, raw.XAdd(ctx, &redis.XAddArgs{Stream: log, ID: fmt.Sprintf("%d-1", ahead), Values: []any{"r", announcement(b, now.UnixMilli(), until)}}).Err())
	if _, err := reader.RevokedAt(ctx, a); err != nil {
		t.Fatal(err)
	}
	must(t, reader.be.refresh(ctx))
	// The new master has the log up to the first entry only.
	must(t, raw.Del(ctx, log).Err())
	must(t, raw.XAdd(ctx, &redis.XAddArgs{Stream: log, ID: fmt.Sprintf("%d-0", ahead), Values: []any{"r", announcement(a, now.UnixMilli(), until)}}).Err())
	victim := [16]byte{0xde, 0xad}
	revokeUnannounced(t, writer, Revocation{ID: victim, Subject: [16]byte{0x5}, At: time.Now(), TTL: time.Hour})
	if ids, _ := raw.XRange(ctx, log, "-", "+").Result(); len(ids) != 2 || ids[1].ID != fmt.Sprintf("%d-1", ahead) {
		t.Fatalf("the setup did not reuse the id: %v", ids)
	}
	must(t, reader.be.refresh(ctx))
	if at, err := reader.RevokedAt(ctx, victim); err != nil || at == 0 {
		t.Fatalf("a revocation logged under a reused id is not in the view after a refresh: %d, %v", at, err)
	}
}

// TestRevocationUpdatedDuringAReloadIsNotMissed: a record replaced (its member removed and a
// later one added) while a reload scans the set may be seen by neither page; the reload must
// read the log written meanwhile before it calls the view fresh.
func TestRevocationUpdatedDuringAReloadIsNotMissed(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	writer := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "scan:"}).(*RedisStore)
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	set := "scan:" + revocationsTag
	until := float64(time.Now().Add(time.Hour).UnixMilli())
	pipe := raw.Pipeline()
	for i := 0; i < 20000; i++ { // other live revocations, so the scan takes many pages
		id := [16]byte{0xf0, byte(i), byte(i >> 8)}
		pipe.ZAdd(ctx, set, redis.Z{Score: until, Member: hex.EncodeToString(id[:]) + ":1"})
	}
	_, err := pipe.Exec(ctx)
	must(t, err)
	var subjects [][16]byte
	dayAgo := time.Now().Add(-24 * time.Hour)
	for i := 0; i < 50; i++ { // signed out everywhere a day ago
		s := [16]byte{0x5b, byte(i)}
		subjects = append(subjects, s)
		must(t, writer.Revoke(ctx, Revocation{ID: s, Subject: s, At: dayAgo, TTL: subjectRevocationTTL}))
	}
	reader := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "scan:", Timeout: caddy.Duration(998 * time.Millisecond)}).(*RedisStore)
	reader.be.client.AddHook(&afterFirst{command: "zscan", fire: func() {
		for _, s := range subjects { // revoked again, later, while the first page is read
			revokeUnannounced(t, writer, Revocation{ID: s, Subject: s, At: time.Now(), TTL: subjectRevocationTTL})
		}
	}})
	if _, err := reader.RevokedAt(ctx, [16]byte{}); err != nil { // the first request loads the view
		t.Fatal(err)
	}
	missed := 0
	for _, s := range subjects {
		if at, err := reader.RevokedAt(ctx, s); err == nil && at == 0 {
			missed++
		}
	}
	if missed > 0 {
		t.Fatalf("right after the load, %d of %d subjects signed out everywhere a day ago are taken as not revoked", missed, len(subjects))
	}
}

// afterFirst runs fire once, after the first command named command.
type afterFirst struct {
	command string
	once    sync.Once
	fire    func()
}

func (h *afterFirst) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == h.command {
			h.once.Do(h.fire)
		}
		return err
	}
}

func (h *afterFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestASubjectsRecordsLeaveWithTheLastOfThem: what a revocation leaves in Redis lives as long as
// the revocation, not the 400 days a subject's own record may.
func TestASubjectsRecordsLeaveWithTheLastOfThem(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	s := provisionStore(t, &RedisStore{Address: rs.Addr(), KeyPrefix: "left:"}).(*RedisStore)
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	subject := [16]byte{0x77}
	must(t, s.Revoke(ctx, Revocation{ID: [16]byte{1}, Subject: subject, At: time.Now(), TTL: time.Minute}))
	must(t, s.Revoke(ctx, Revocation{ID: [16]byte{2}, Subject: subject, At: time.Now(), TTL: time.Hour}))
	must(t, s.Revoke(ctx, Revocation{ID: [16]byte{3}, Subject: subject, At: time.Now(), TTL: 2 * time.Minute}))
	ttl, err := raw.PTTL(ctx, "left:"+revocationsTag+":subject:"+hex.EncodeToString(subject[:])).Result()
	must(t, err)
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("the subject's set lives %s; its last record ends in an hour", ttl)
	}
}

// TestRepeatedSignOutsWithOneCookieLeaveOneRecord: a signed-in visitor posting sign-out again
// and again with the same cookie cannot grow the revocations, which every instance reads.
func TestRepeatedSignOutsWithOneCookieLeaveOneRecord(t *testing.T) {
	rs := startRedis(t)
	g := newGate(t)
	g.redis = rs.Addr()
	g.start("")
	v := newVisitor(t)
	v.signIn(g, alice)
	session := v.cookie("caddy_otp")
	for i := 0; i < 50; i++ {
		v.setCookie("caddy_otp", session)
		wantStatus(t, "sign out everywhere", v.signOut(true), http.StatusSeeOther)
	}
	c := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer c.Close()
	n, err := c.ZCard(context.Background(), storeName(t)+":"+revocationsTag).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("50 sign-outs with one cookie left %d revocation records, want 2 (the session and its subject)", n)
	}
	v.setCookie("caddy_otp", session)
	wantStatus(t, "the revoked cookie", v.get("/"), http.StatusSeeOther)
}
