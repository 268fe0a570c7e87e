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

// refreshLoop reads the log of new revocations every revocationRefresh, which bounds how stale
// the view can be even if pub/sub messages are lost (Redis restarted, a connection dropped).
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
			if err != nil && monoNow()-b.lastSync.Load() > int64(staleAfter) {
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

// refresh brings the view up to date: what the log holds past the instance's position, or, at
// the start and after a gap (the log trimmed past the position, or lost with a Redis restart),
// the whole set, read in pages. Once a minute one instance at a time removes expired records.
func (b *redisBackend) refresh(ctx context.Context) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	read := monoNow() // the view is as new as the moment its reading began
	if err := b.follow(ctx); err != nil {
		return err
	}
	b.lastSync.Store(read)
	b.stale.Store(false)
	if time.Since(b.lastSweep) > time.Minute {
		b.lastSweep = time.Now()
		b.sweep(ctx)
	}
	return nil
}

// logPage is how many entries, or set members, one read takes.
const logPage = 1000

// follow reads the log from the position on, inclusively and in one command, so that a trim
// cannot fall between a check and the read: if the entry at the position is gone, or is not the
// entry that was read there (its id reused after a rewind), so may be what followed it, and the
// whole set is read again. After a reload it reads on from the position the reload noted before
// its scan, so that what was written during the scan, which the scan may have missed, is read
// before the view counts as fresh.
func (b *redisBackend) follow(ctx context.Context) error {
	reloaded := false // the position was noted by a reload in this call
	if b.pos == "" {
		if err := b.reload(ctx); err != nil {
			return err
		}
		reloaded = true
	}
	log := b.prefix + revocationsTag + ":log"
	for {
		step, cancel := context.WithTimeout(ctx, revocationRefresh)
		start := b.pos
		if start == "0-0" {
			start = "-"
		}
		page, err := b.client.XRangeN(step, log, start, "+", logPage+1).Result()
		cancel()
		if err != nil {
			return err
		}
		from := 1 // the entry at the position is read again to prove the log still holds it
		switch {
		case b.pos == "0-0" && reloaded:
			from = 0 // the log was empty when the reload began: all of it is new since
		case b.pos == "0-0" && len(page) == 0:
			return nil // nothing was ever logged
		case b.pos == "0-0" || len(page) == 0 || page[0].ID != b.pos || logText(page[0]) != b.posEntry:
			if reloaded {
				return errLogMoved
			}
			if err := b.reload(ctx); err != nil { // a gap: the log lost the position, or began anew
				return err
			}
			reloaded = true
			continue
		}
		for _, e := range page[from:] {
			b.apply(logText(e))
			b.pos, b.posEntry = e.ID, logText(e)
		}
		if len(page) <= logPage {
			return nil
		}
	}
}

var errLogMoved = errors.New("redis store: the revocation log lost its position during a reload; reading again")

// logText is a log entry's announcement.
func logText(e redis.XMessage) string {
	ann, _ := e.Values["r"].(string)
	return ann
}

// reloadTimeout bounds a reload of the whole set, which may take many pages; while it runs the
// view is older than the bound, and requests are refused.
const reloadTimeout = 30 * time.Second

// reload reads the whole set, in pages, after noting the log's end, so that what is written
// during the scan is read again from the log afterwards.
func (b *redisBackend) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	set := b.prefix + revocationsTag
	last, err := b.client.XRevRangeN(ctx, set+":log", "+", "-", 1).Result()
	if err != nil {
		return err
	}
	pos, posEntry := "0-0", ""
	if len(last) > 0 {
		pos, posEntry = last[0].ID, logText(last[0])
	}
	all := make(map[[16]byte]revocation)
	var cursor uint64
	for {
		page, next, err := b.client.ZScan(ctx, set, cursor, "", logPage).Result()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(page); i += 2 {
			untilMS, _ := strconv.ParseFloat(page[i+1], 64)
			if id, rev, ok := parseRevocation(page[i], int64(untilMS)); ok {
				all[id] = later(all[id], rev)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	b.revs.merge(all, time.Now().UnixNano())
	b.pos, b.posEntry = pos, posEntry
	return nil
}

// sweep removes expired records, by one instance at a time: the one that takes the minute's
// lock.
func (b *redisBackend) sweep(ctx context.Context) {
	set := b.prefix + revocationsTag
	ok, err := b.client.SetNX(ctx, set+":sweep", "1", time.Minute).Result()
	if err == nil && ok {
		err = b.client.ZRemRangeByScore(ctx, set, "-inf", strconv.FormatInt(time.Now().UnixMilli(), 10)).Err()
	}
	if err != nil && ctx.Err() == nil {
		b.logger.Load().Warn("redis store: cannot remove expired revocations", zap.Error(err))
	}
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
