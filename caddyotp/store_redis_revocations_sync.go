package caddyotp

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// How an instance's view of the revocations keeps up with Redis: announcements as they come
// (pub/sub), the log read every revocationRefresh, and the whole set read again after a gap.
// The records themselves, and the view's age, are in store_redis_revocations.go.

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
