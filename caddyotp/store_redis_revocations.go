package caddyotp

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Revocations reach every instance through pub/sub at once, and through a read of the log of
// new ones every revocationRefresh. An instance whose view may be older than revocationBound no
// longer trusts it and fails closed: the refresh loop marks the view stale once the last success
// is more than revocationBound minus one refresh period old, since it only looks once a period.
// Ages are measured on the monotonic clock, so that a step of the wall clock cannot make an old
// view pass for a new one.
const (
	revocationRefresh = 500 * time.Millisecond
	revocationBound   = 2 * time.Second
	staleAfter        = revocationBound - revocationRefresh
)

var errRevocationsStale = errors.New("redis store: revocations not refreshed for " + revocationBound.String())

// monoStart is the origin of monotonic readings: monoNow is the time since it, never 0.
var monoStart = time.Now()

func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

// The revocations live in one sorted set (member "hexid:at", at in Unix ms; score: the end of the
// record in Unix ms), with one key per id holding its current "at until" (so that an id has one
// member) and one sorted set per subject of its ids (so that a subject's records are bounded).
// Every key shares the hash tag {revocations}, so the script's keys sit in one cluster slot.
// Each new record is also appended to a stream, the log: instances read what is new since their
// position in it (an id Redis gave), so that an idle instance's cost follows new revocations,
// not live ones; the whole set is read, in pages, only after a gap.
const revocationsTag = "{revocations}"

// revocationLogLen is about how many announcements the log keeps; an instance that fell further
// behind reloads the whole set.
const revocationLogLen = 100000

// revokeScript records one revocation as the Store contract says, atomically, and returns the
// announcement ("hexid:at until") of what it wrote, or nil when the record already said as much.
// KEYS: the set, the id's key, the subject's set, the subject's own key, the log.
// ARGV: id, at, until, subject, now, max records per subject, the subject record's until, the
// log's length. A subject's set of ids expires with the last of its records.
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
  local ann = id .. ":" .. at .. " " .. untl
  redis.call("XADD", KEYS[5], "MAXLEN", "~", ARGV[8], "*", "r", ann)
  return ann
end
if ARGV[1] ~= ARGV[4] then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", ARGV[5])
  if not redis.call("ZSCORE", KEYS[3], ARGV[1]) and redis.call("ZCARD", KEYS[3]) >= tonumber(ARGV[6]) then
    return put(KEYS[4], ARGV[4], ARGV[2], ARGV[7])
  end
  redis.call("ZADD", KEYS[3], "GT", ARGV[3], ARGV[1])
  local last = redis.call("ZRANGE", KEYS[3], -1, -1, "WITHSCORES")
  redis.call("PEXPIREAT", KEYS[3], last[2]) -- the set lives as long as its last record
end
return put(KEYS[2], ARGV[1], ARGV[2], ARGV[3])`)

// Revoke records the revocation (see revokeScript) and announces it to every instance.
func (s *RedisStore) Revoke(ctx context.Context, r Revocation) error {
	now := time.Now()
	id, subject := hex.EncodeToString(r.ID[:]), hex.EncodeToString(r.Subject[:])
	set := s.be.prefix + revocationsTag
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	ann, err := revokeScript.Run(ctx, s.be.client, []string{set, set + ":id:" + id, set + ":subject:" + subject, set + ":id:" + subject, set + ":log"},
		id, ms(r.At), ms(now.Add(r.TTL)), subject, ms(now), maxSubjectRevocations, ms(now.Add(subjectRevocationTTL)), revocationLogLen).Text()
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
	logger atomic.Pointer[zap.Logger] // the logger of the newest config still holding the backend

	holdersMu sync.Mutex
	holders   []holder // the configs holding the backend, oldest first

	mu      sync.Mutex
	stopped bool
	stop    context.CancelFunc
	done    sync.WaitGroup
	first   sync.Mutex // one request at a time loads the view before the loop's first refresh

	syncMu    sync.Mutex // one refresh at a time
	pos       string     // the last log entry applied; "" until the whole set was read
	posEntry  string     // what that entry said: an id reused after a rewind says something else
	lastSweep time.Time  // when this instance last tried to remove expired records

	revs     revocations
	lastSync atomic.Int64 // when the last successful refresh began, by monoNow; 0: never
	stale    atomic.Bool  // set by the refresh loop: the view may be older than revocationBound
}

// holder is a config that holds the backend, and its logger.
type holder struct {
	id     *RedisStore
	logger *zap.Logger
}

// hold records that s holds the backend now; its logger takes the background's messages.
func (b *redisBackend) hold(s *RedisStore, logger *zap.Logger) {
	b.holdersMu.Lock()
	defer b.holdersMu.Unlock()
	b.holders = append(b.holders, holder{s, logger})
	b.logger.Store(logger)
}

// release forgets s; the messages go back to the newest config still holding the backend, so
// that a config rejected after it provisioned does not take the running one's messages along.
func (b *redisBackend) release(s *RedisStore) {
	b.holdersMu.Lock()
	defer b.holdersMu.Unlock()
	for i, h := range b.holders {
		if h.id == s {
			b.holders = append(b.holders[:i], b.holders[i+1:]...)
			break
		}
	}
	if n := len(b.holders); n > 0 {
		b.logger.Store(b.holders[n-1].logger)
	}
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
	// The loop marks the view stale, but only between refreshes: a long one (a reload) is
	// judged here, by the age of the view itself.
	if b.stale.Load() || monoNow()-b.lastSync.Load() > int64(revocationBound) {
		return 0, errRevocationsStale
	}
	return b.revs.at(id), nil
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
	b.stale.Store(true) // a view nobody keeps up to date answers nothing; after the last refresh
	return b.client.Close()
}
