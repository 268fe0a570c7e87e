package caddyotp

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Window is one event counted in a sliding window of fixed slots, some of whose events may be
// taken back later (a code that was verified): the window's count is the sum over its slots of
// the events less those taken back, each slot at least 0. The pumping shield counts with it.
type Window struct {
	// Read first: a key whose value is the Unix time in nanoseconds until which it holds, as
	// Tally's locks ("" for none). While it holds at Now, the event is not counted.
	Hold string
	Now  int64
	// The slots' counters of events, the event's own slot first, and of the events taken back,
	// one per slot (Store.Incr counts those). A new counter expires after TTL.
	Events, Undone []string
	TTL            time.Duration
	// A window whose count is at Cap already does not count the event either. An event that
	// brings the count to Cap or beyond sets Hold until Now+HoldFor, for HoldFor (HoldFor 0:
	// no hold; the cap alone stops events, until old slots leave the window).
	Cap     int64
	HoldFor time.Duration
	// Count the event even when the hold or the cap stops it (they are still reported): to
	// watch what a shield would do without it doing anything.
	Through bool
}

// Windowed is what a Window found and did.
type Windowed struct {
	Stopped bool  // the hold held, or the count was at Cap: the event would not count
	Count   int64 // the window's count, after the event if it was counted
	Holding bool  // this event started the hold (it did not hold before)
}

// windowCount is the count of a window whose slots read n(Events[i]) - n(Undone[i]).
func windowCount(w Window, n func(key string) int64) int64 {
	var sum int64
	for i, k := range w.Events {
		if c := n(k) - n(w.Undone[i]); c > 0 {
			sum += c
		}
	}
	return sum
}

// errWindowSlots is a Window without one counter of undone events per slot.
var errWindowSlots = fmt.Errorf("store: a window needs at least one slot, and one counter of undone events per slot")

func (s *MemoryStore) Window(_ context.Context, w Window) (Windowed, error) {
	if len(w.Events) == 0 || len(w.Undone) != len(w.Events) {
		return Windowed{}, errWindowSlots
	}
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	n := func(k string) int64 { c, _ := strconv.ParseInt(string(s.mem.get(k)), 10, 64); return c }
	held := false
	if w.Hold != "" {
		v := s.mem.get(w.Hold)
		held = v != nil && holds(v, w.Now)
	}
	out := Windowed{Count: windowCount(w, n)}
	out.Stopped = held || out.Count >= w.Cap
	if out.Stopped && !w.Through {
		return out, nil
	}
	if _, err := s.mem.c.IncrementInt64(w.Events[0], 1); err != nil { // missing or expired: a new counter
		s.mem.c.Set(w.Events[0], int64(1), w.TTL)
	}
	out.Count++
	if w.Hold != "" && w.HoldFor > 0 && out.Count >= w.Cap {
		s.mem.c.Set(w.Hold, []byte(strconv.FormatInt(w.Now+int64(w.HoldFor), 10)), w.HoldFor)
		out.Holding = !held
	}
	return out, nil
}

// windowScript is Window in one round trip. KEYS: the hold (or, with ARGV[1] "0", none), then
// the slots' event counters, then as many counters of events taken back. ARGV: whether there is
// a hold, Now, the cap, the hold's value (Now+HoldFor, computed by the caller: Lua's numbers
// would round nanoseconds) and TTL in milliseconds (0: no hold), the counters' TTL in
// milliseconds, and whether to count through. Times compare as decimal strings, as in Tally.
var windowScript = redis.NewScript(`
local first, held, now = 1, false, ARGV[2]
if ARGV[1] == "1" then
  local v = redis.call("GET", KEYS[1])
  if v and (not v:match("^%d+$") or #v > #now or (#v == #now and v > now)) then held = true end
  first = 2
end
local slots = (#KEYS - first + 1) / 2
local count = 0
for i = 0, slots - 1 do
  local c = (tonumber(redis.call("GET", KEYS[first + i]) or "0") or 0) - (tonumber(redis.call("GET", KEYS[first + slots + i]) or "0") or 0)
  if c > 0 then count = count + c end
end
local cap = tonumber(ARGV[3])
local stopped = held or count >= cap
if stopped and ARGV[7] ~= "1" then return {1, count, 0} end
local n = redis.call("INCR", KEYS[first])
if n == 1 then redis.call("PEXPIRE", KEYS[first], ARGV[6]) end
count = count + 1
local holding = 0
if ARGV[1] == "1" and ARGV[5] ~= "0" and count >= cap then
  redis.call("SET", KEYS[1], ARGV[4], "PX", ARGV[5])
  if not held then holding = 1 end
end
return {stopped and 1 or 0, count, holding}`)

func (s *RedisStore) Window(ctx context.Context, w Window) (Windowed, error) {
	if len(w.Events) == 0 || len(w.Undone) != len(w.Events) {
		return Windowed{}, errWindowSlots
	}
	keys := make([]string, 0, 1+2*len(w.Events))
	hasHold := "0"
	if w.Hold != "" {
		hasHold = "1"
		keys = append(keys, s.be.prefix+w.Hold)
	}
	for _, k := range append(w.Events[:len(w.Events):len(w.Events)], w.Undone...) {
		keys = append(keys, s.be.prefix+k)
	}
	through := "0"
	if w.Through {
		through = "1"
	}
	holdMS := int64(0)
	if w.HoldFor > 0 {
		holdMS = max(1, w.HoldFor.Milliseconds())
	}
	v, err := windowScript.Run(ctx, s.be.client, keys, hasHold, strconv.FormatInt(w.Now, 10), w.Cap,
		strconv.FormatInt(w.Now+int64(w.HoldFor), 10), holdMS, max(1, w.TTL.Milliseconds()), through).Int64Slice()
	if err != nil {
		return Windowed{}, err
	}
	if len(v) != 3 {
		return Windowed{}, fmt.Errorf("redis store: window answered %d values", len(v))
	}
	return Windowed{Stopped: v[0] == 1, Count: v[1], Holding: v[2] == 1}, nil
}
