package caddyotp

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Revocations reach every instance through pub/sub at once, and through a full refresh every
// revocationRefresh. An instance whose view may be older than revocationBound no longer trusts
// it and fails closed: the refresh loop marks the view stale once the last success is more than
// revocationBound minus one refresh period old, since it only looks once a period.
const (
	revocationRefresh = 500 * time.Millisecond
	revocationBound   = 2 * time.Second
	staleAfter        = revocationBound - revocationRefresh
)

var errRevocationsStale = errors.New("redis store: revocations not refreshed for " + revocationBound.String())

// The revocations live in one sorted set (member "hexid:at", at in Unix ms; score: the end of the
// record in Unix ms), with one key per id holding its current "at until" (so that an id has one
// member) and one sorted set per subject of its ids (so that a subject's records are bounded).
// Every key shares the hash tag {revocations}, so the script's keys sit in one cluster slot.
const revocationsTag = "{revocations}"

// revokeScript records one revocation as the Store contract says, atomically, and returns the
// announcement ("hexid:at until") of what it wrote, or nil when the record already said as much.
// KEYS: the set, the id's key, the subject's set, the subject's own key.
// ARGV: id, at, until, subject, now, max records per subject, the subject record's until.
var revokeScript = redis.NewScript(`
local function put(idkey, id, at, untl)
  local old = redis.call("GET", idkey)
  if old then
    local oat, ountl = string.match(old, "^(%d+) (%d+)$")
    if tonumber(at) <= tonumber(oat) and tonumber(untl) <= tonumber(ountl) then return false end
    redis.call("ZREM", KEYS[1], id .. ":" .. oat)
    if tonumber(oat) > tonumber(at) then at = oat end
    if tonumber(ountl) > tonumber(untl) then untl = ountl end
  end
  redis.call("ZADD", KEYS[1], untl, id .. ":" .. at)
  redis.call("SET", idkey, at .. " " .. untl, "PXAT", untl)
  return id .. ":" .. at .. " " .. untl
end
if ARGV[1] ~= ARGV[4] then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", ARGV[5])
  if not redis.call("ZSCORE", KEYS[3], ARGV[1]) and redis.call("ZCARD", KEYS[3]) >= tonumber(ARGV[6]) then
    return put(KEYS[4], ARGV[4], ARGV[2], ARGV[7])
  end
  redis.call("ZADD", KEYS[3], "GT", ARGV[3], ARGV[1])
  redis.call("PEXPIREAT", KEYS[3], ARGV[7])
end
return put(KEYS[2], ARGV[1], ARGV[2], ARGV[3])`)

// Revoke records the revocation (see revokeScript) and announces it to every instance.
func (s *RedisStore) Revoke(ctx context.Context, r Revocation) error {
	now := time.Now()
	id, subject := hex.EncodeToString(r.ID[:]), hex.EncodeToString(r.Subject[:])
	set := s.be.prefix + revocationsTag
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	ann, err := revokeScript.Run(ctx, s.be.client, []string{set, set + ":id:" + id, set + ":subject:" + subject, set + ":id:" + subject},
		id, ms(r.At), ms(now.Add(r.TTL)), subject, ms(now), maxSubjectRevocations, ms(now.Add(subjectRevocationTTL))).Text()
	if errors.Is(err, redis.Nil) {
		return nil // nothing new to say
	}
	if err != nil {
		return err
	}
	s.be.apply(ann)
	return s.be.client.Publish(ctx, s.be.prefix+"revoked", ann).Err()
}

// RevokedAt answers from the local view, and fails when that view may be older than
// revocationBound.
func (s *RedisStore) RevokedAt(ctx context.Context, id [16]byte) (int64, error) {
	return s.be.revokedAt(ctx, id)
}

// redisBackend is one client and its view of the revocations, shared by the configs that use it.
// Its background work (the pub/sub listener and the refresh loop) starts with it and stops in
// Destruct, under mu, so that nothing can start after a stop. The client connects lazily and
// retries with backoff, so neither Provision nor `caddy validate` waits for Redis.
type redisBackend struct {
	client redis.UniversalClient
	prefix string
	logger atomic.Pointer[zap.Logger] // the logger of the config that holds the backend now

	mu      sync.Mutex
	stopped bool
	stop    context.CancelFunc
	done    sync.WaitGroup
	first   sync.Mutex // one request at a time loads the view before the loop's first refresh

	revs     revocations
	lastSync atomic.Int64 // when the last full refresh succeeded, Unix ns
	stale    atomic.Bool  // set by the refresh loop: the view may be older than revocationBound
}

func newRedisBackend(c redis.UniversalClient, prefix string, logger *zap.Logger) *redisBackend {
	b := &redisBackend{client: c, prefix: prefix}
	b.logger.Store(logger)
	b.stale.Store(true) // until the first refresh succeeds
	var bg context.Context
	bg, b.stop = context.WithCancel(context.Background())
	b.done.Add(2)
	go b.listen(bg)
	go b.refreshLoop(bg)
	return b
}

// revokedAt answers from the local view. Before the first refresh has succeeded it loads the
// view itself, so that the first requests after a start are not refused for want of one.
func (b *redisBackend) revokedAt(ctx context.Context, id [16]byte) (int64, error) {
	if b.lastSync.Load() == 0 && b.first.TryLock() {
		if b.lastSync.Load() == 0 {
			_ = b.refresh(ctx)
		}
		b.first.Unlock()
	}
	if b.stale.Load() {
		return 0, errRevocationsStale
	}
	return b.revs.at(id), nil
}

// parseRevocation reads a member ("hexid:at") and its record's end in Unix ms.
func parseRevocation(member string, untilMS int64) (id [16]byte, rev revocation, ok bool) {
	hexID, at, _ := strings.Cut(member, ":")
	atMS, err := strconv.ParseInt(at, 10, 64)
	if len(hexID) != 32 || err != nil {
		return id, rev, false
	}
	if _, err := hex.Decode(id[:], []byte(hexID)); err != nil {
		return id, rev, false
	}
	return id, revocation{at: atMS, until: untilMS * int64(time.Millisecond)}, true
}

// apply adds an announced revocation ("hexid:at until") to the local view.
func (b *redisBackend) apply(announcement string) {
	member, ms, _ := strings.Cut(announcement, " ")
	untilMS, _ := strconv.ParseInt(ms, 10, 64)
	if id, rev, ok := parseRevocation(member, untilMS); ok {
		b.revs.add(id, rev)
	}
}

// listen applies revocations announced by any instance as they come.
func (b *redisBackend) listen(ctx context.Context) {
	defer b.done.Done()
	sub := b.client.Subscribe(ctx, b.prefix+"revoked") // here, not in the constructor: it may wait for Redis
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			b.apply(m.Payload)
		}
	}
}

// refreshLoop reloads every live revocation, which bounds how stale the view can be even if
// pub/sub messages are lost (Redis restarted, a connection dropped).
func (b *redisBackend) refreshLoop(ctx context.Context) {
	defer b.done.Done()
	t := time.NewTicker(revocationRefresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := b.refresh(ctx)
			if err != nil && time.Since(time.Unix(0, b.lastSync.Load())) > staleAfter {
				b.stale.Store(true)
			}
			if err != nil && !failing && ctx.Err() == nil {
				b.logger.Load().Error("redis store: cannot refresh revocations; sessions are refused until it can", zap.Error(err))
			} else if err == nil && failing {
				b.logger.Load().Info("redis store: revocations refreshed again")
			}
			failing = err != nil
		}
	}
}

func (b *redisBackend) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, revocationRefresh)
	defer cancel()
	nowMS := time.Now().UnixMilli()
	key := b.prefix + revocationsTag
	pipe := b.client.TxPipeline()
	pipe.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(nowMS, 10))
	live := pipe.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: strconv.FormatInt(nowMS, 10), Max: "+inf"})
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	all := make(map[[16]byte]revocation, len(live.Val()))
	for _, z := range live.Val() {
		member, _ := z.Member.(string)
		if id, rev, ok := parseRevocation(member, int64(z.Score)); ok {
			all[id] = later(all[id], rev)
		}
	}
	b.revs.merge(all, time.Now().UnixNano())
	b.lastSync.Store(time.Now().UnixNano())
	b.stale.Store(false)
	return nil
}

// Destruct stops the background work and closes the client when the last config using it is
// gone.
func (b *redisBackend) Destruct() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	b.stopped = true
	b.stop()
	b.done.Wait()
	return b.client.Close()
}
