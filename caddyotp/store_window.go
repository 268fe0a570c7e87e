package caddyotp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Window counts members (numbers) in a sliding window of fixed slots: each member once, in the
// slot of the event that added it, and with the source (an address range) that added it; a
// member can be taken back out later (a code that was verified). The pumping shield counts
// with it. Every key of one Window must share its hash tag: a Redis Cluster keeps them in one
// slot, and the step is one atomic script.
type Window struct {
	// Read first: a key whose value is the Unix time in nanoseconds until which it holds, as
	// Tally's locks ("" for none). While it holds at Now, the event is stopped.
	Hold string
	Now  int64
	// The slots, the event's own first: each holds its members, their sources and its counts.
	// A new slot expires after TTL.
	Slots []string
	TTL   time.Duration
	// Member is what counts once per window; Source is who adds it. Opaque names, at most
	// windowName long.
	Member, Source string
	// A new member is stopped when the window holds Cap members already, or when its Source
	// added SourceCap of them (0: no cap per source). A member that brings the count to Cap or
	// beyond sets Hold until Now+HoldFor, for HoldFor (HoldFor 0: no hold). A member counted
	// already counts no more, and only the hold stops it.
	Cap, SourceCap int64
	HoldFor        time.Duration
	// Count the member even when the hold or a cap stops it (they are still reported): to
	// watch what a shield would do without it doing anything.
	Through bool
	// Undo takes Member back out of the window, from the slot and the source that counted it,
	// and counts nothing; the hold and the caps are not read.
	Undo bool
}

// Windowed is what a Window found and did.
type Windowed struct {
	Stopped bool  // the hold held, or a cap was full for a new member: the event would not count
	Count   int64 // the window's members, after the event
	Counted bool  // the event added its member (Undo: took it out)
	Holding bool  // this event started the hold (it did not hold before)
}

// windowName bounds a Window's Member and Source.
const windowName = 64

var errWindow = errors.New("store: a window needs at least one slot, and a member and a source of at most 64 bytes")

func (w Window) valid() bool {
	return len(w.Slots) > 0 && w.Member != "" && len(w.Member) <= windowName && len(w.Source) <= windowName
}

// windowSlot is one slot of a Window in the memory store: its members, each with its source,
// and the members each source added.
type windowSlot struct {
	members map[string]string
	sources map[string]int64
}

func (s *MemoryStore) Window(_ context.Context, w Window) (Windowed, error) {
	if !w.valid() {
		return Windowed{}, errWindow
	}
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	var count, share int64
	var found *windowSlot
	for _, k := range w.Slots {
		v, ok := s.mem.c.Get(k)
		sl, _ := v.(*windowSlot)
		if !ok || sl == nil {
			continue
		}
		count += int64(len(sl.members))
		share += sl.sources[w.Source]
		if _, ok := sl.members[w.Member]; ok && found == nil {
			found = sl
		}
	}
	if w.Undo {
		if found == nil {
			return Windowed{Count: count}, nil
		}
		src := found.members[w.Member]
		delete(found.members, w.Member)
		if found.sources[src]--; found.sources[src] <= 0 {
			delete(found.sources, src)
		}
		return Windowed{Count: count - 1, Counted: true}, nil
	}
	held := false
	if w.Hold != "" {
		v := s.mem.get(w.Hold)
		held = v != nil && holds(v, w.Now)
	}
	if found != nil {
		return Windowed{Stopped: held, Count: count}, nil
	}
	out := Windowed{Count: count, Stopped: held || count >= w.Cap || w.SourceCap > 0 && share >= w.SourceCap}
	if out.Stopped && !w.Through {
		return out, nil
	}
	v, ok := s.mem.c.Get(w.Slots[0])
	sl, _ := v.(*windowSlot)
	if !ok || sl == nil {
		sl = &windowSlot{members: map[string]string{}, sources: map[string]int64{}}
		s.mem.c.Set(w.Slots[0], sl, w.TTL)
	}
	sl.members[w.Member] = w.Source
	sl.sources[w.Source]++
	out.Count++
	out.Counted = true
	if w.Hold != "" && w.HoldFor > 0 && out.Count >= w.Cap {
		s.mem.c.Set(w.Hold, []byte(strconv.FormatInt(w.Now+int64(w.HoldFor), 10)), w.HoldFor)
		out.Holding = !held
	}
	return out, nil
}

// windowScript is Window in one round trip. KEYS: the hold (or, with ARGV[1] "0", none), then
// the slots, each a hash: "n" its members, "s:"..source the members a source added, and
// "m:"..member the source field of a member. ARGV: whether there is a hold, Now, the cap, the
// hold's value (Now+HoldFor, computed by the caller: Lua's numbers would round nanoseconds)
// and TTL in milliseconds (0: no hold), the slots' TTL in milliseconds, whether to count
// through, the member, the source, the cap per source (0: none), and whether to undo. Times
// compare as decimal strings, as in Tally.
var windowScript = redis.NewScript(`
local held, now, first = false, ARGV[2], 1
if ARGV[1] == "1" then
  first = 2
  if ARGV[11] ~= "1" then
    local v = redis.call("GET", KEYS[1])
    if v and (not v:match("^%d+$") or #v > #now or (#v == #now and v > now)) then held = true end
  end
end
local member, source = "m:" .. ARGV[8], "s:" .. ARGV[9]
local count, share, found, from = 0, 0, nil, nil
for i = first, #KEYS do
  local v = redis.call("HMGET", KEYS[i], "n", source, member)
  count = count + math.max(0, tonumber(v[1]) or 0)
  share = share + math.max(0, tonumber(v[2]) or 0)
  if v[3] and not found then found, from = i, v[3] end
end
if ARGV[11] == "1" then
  if not found then return {0, count, 0, 0} end
  redis.call("HDEL", KEYS[found], member)
  redis.call("HINCRBY", KEYS[found], "n", -1)
  if redis.call("HINCRBY", KEYS[found], from, -1) <= 0 then redis.call("HDEL", KEYS[found], from) end
  return {0, count - 1, 1, 0}
end
if found then return {held and 1 or 0, count, 0, 0} end
local cap, sourceCap = tonumber(ARGV[3]), tonumber(ARGV[10])
local stopped = held or count >= cap or (sourceCap > 0 and share >= sourceCap)
if stopped and ARGV[7] ~= "1" then return {1, count, 0, 0} end
local fresh = redis.call("EXISTS", KEYS[first]) == 0
redis.call("HINCRBY", KEYS[first], "n", 1)
redis.call("HINCRBY", KEYS[first], source, 1)
redis.call("HSET", KEYS[first], member, source)
if fresh then redis.call("PEXPIRE", KEYS[first], ARGV[6]) end
count = count + 1
local holding = 0
if ARGV[1] == "1" and ARGV[5] ~= "0" and count >= cap then
  redis.call("SET", KEYS[1], ARGV[4], "PX", ARGV[5])
  if not held then holding = 1 end
end
return {stopped and 1 or 0, count, 1, holding}`)

func (s *RedisStore) Window(ctx context.Context, w Window) (Windowed, error) {
	if !w.valid() {
		return Windowed{}, errWindow
	}
	keys := make([]string, 0, 1+len(w.Slots))
	hasHold := "0"
	if w.Hold != "" {
		hasHold = "1"
		keys = append(keys, s.be.prefix+w.Hold)
	}
	for _, k := range w.Slots {
		keys = append(keys, s.be.prefix+k)
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	holdMS := int64(0)
	if w.HoldFor > 0 {
		holdMS = max(1, w.HoldFor.Milliseconds())
	}
	v, err := windowScript.Run(ctx, s.be.client, keys, hasHold, strconv.FormatInt(w.Now, 10), w.Cap,
		strconv.FormatInt(w.Now+int64(w.HoldFor), 10), holdMS, max(1, w.TTL.Milliseconds()), flag(w.Through),
		w.Member, w.Source, w.SourceCap, flag(w.Undo)).Int64Slice()
	if err != nil {
		return Windowed{}, err
	}
	if len(v) != 4 {
		return Windowed{}, fmt.Errorf("redis store: window answered %d values", len(v))
	}
	return Windowed{Stopped: v[0] == 1, Count: v[1], Counted: v[2] == 1, Holding: v[3] == 1}, nil
}
