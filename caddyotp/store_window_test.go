package caddyotp

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// windowContract is what the pumping shield relies on of Store.Window, on one store.
func windowContract(t *testing.T, s Store) {
	ctx := context.Background()
	tag := "pump:{" + strconv.FormatInt(time.Now().UnixNano(), 10) + "}"
	slots := func(at int64) Window { // three slots, at, at-1 and at-2, all of one hash tag
		w := Window{Hold: tag + ":hold", Cap: 3, HoldFor: time.Minute, TTL: time.Minute, Source: "r1"}
		for i := int64(0); i < 3; i++ {
			w.Slots = append(w.Slots, tag+":w:"+strconv.FormatInt(at-i, 10))
		}
		return w
	}
	now := time.Now().UnixNano()
	count := func(w Window, member string) Windowed {
		t.Helper()
		w.Now, w.Member = now, member
		got, err := s.Window(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	undo := func(w Window, member string) Windowed { w.Undo = true; return count(w, member) }
	for i, c := range []struct {
		member string
		want   Windowed
	}{
		{"a", Windowed{Count: 1, Counted: true}},
		{"a", Windowed{Count: 1}}, // a member counts once
		{"b", Windowed{Count: 2, Counted: true}},
		{"a", Windowed{Count: 2}},
		{"c", Windowed{Count: 3, Counted: true, Holding: true}},
		{"d", Windowed{Stopped: true, Count: 3}},
		{"a", Windowed{Stopped: true, Count: 3}}, // the hold stops a counted member too
	} {
		if got := count(slots(10), c.member); got != c.want {
			t.Errorf("event %d (%s): %+v, want %+v", i+1, c.member, got, c.want)
		}
	}
	// Counted in an older slot of the window, a member still counts once.
	must(t, s.Delete(ctx, tag+":hold"))
	if got := count(slots(11), "b"); got != (Windowed{Count: 3}) {
		t.Errorf("a member counted a slot ago: %+v, want counted once", got)
	}
	// Lifted: the hold is gone, but the count is still at the cap.
	if got := count(slots(10), "d"); got != (Windowed{Stopped: true, Count: 3}) {
		t.Errorf("at the cap without a hold: %+v, want stopped", got)
	}
	// One taken back, once: the next counts, reaches the cap again and holds again.
	if got := undo(slots(11), "b"); got != (Windowed{Count: 2, Counted: true}) {
		t.Errorf("b taken back: %+v", got)
	}
	if got := undo(slots(11), "b"); got != (Windowed{Count: 2}) {
		t.Errorf("b taken back again: %+v, want nothing taken", got)
	}
	if got := count(slots(10), "d"); got != (Windowed{Count: 3, Counted: true, Holding: true}) {
		t.Errorf("after b was taken back: %+v, want counted and holding", got)
	}
	// A hold past its time holds no more; slots out of the window count no more, and their
	// members count again.
	now += int64(2 * time.Minute)
	if got := count(slots(13), "a"); got != (Windowed{Count: 1, Counted: true}) {
		t.Errorf("later, with the old slots out of the window: %+v, want a counted again", got)
	}
	if got := undo(slots(13), "c"); got != (Windowed{Count: 1}) {
		t.Errorf("a member of a slot out of the window taken back: %+v, want nothing taken", got)
	}

	// A source adds at most SourceCap members; taking one of its members back frees its place.
	src := slots(30)
	src.HoldFor, src.Cap, src.SourceCap = 0, 10, 2
	from := func(source, member string) Windowed { w := src; w.Source = source; return count(w, member) }
	for i, c := range []struct {
		source, member string
		want           Windowed
	}{
		{"r1", "x", Windowed{Count: 1, Counted: true}},
		{"r1", "y", Windowed{Count: 2, Counted: true}},
		{"r1", "z", Windowed{Stopped: true, Count: 2}},
		{"r1", "x", Windowed{Count: 2}}, // counted already: a source at its cap still reaches it
		{"r2", "z", Windowed{Count: 3, Counted: true}},
		{"r2", "x", Windowed{Count: 3}},
	} {
		if got := from(c.source, c.member); got != c.want {
			t.Errorf("source event %d (%s from %s): %+v, want %+v", i+1, c.member, c.source, got, c.want)
		}
	}
	if got := undo(src, "x"); got != (Windowed{Count: 2, Counted: true}) { // x was r1's, whoever takes it back
		t.Errorf("x taken back: %+v", got)
	}
	if got := from("r1", "w"); got != (Windowed{Count: 3, Counted: true}) {
		t.Errorf("r1 after x was taken back: %+v, want counted", got)
	}

	// Through counts what the hold or a cap stops, and says it stopped it.
	th := slots(20)
	th.Hold, th.HoldFor, th.Cap, th.Through = "", 0, 1, true
	if got := count(th, "p"); got != (Windowed{Count: 1, Counted: true}) {
		t.Errorf("through, first: %+v", got)
	}
	if got := count(th, "q"); got != (Windowed{Stopped: true, Count: 2, Counted: true}) {
		t.Errorf("through, past the cap: %+v, want stopped and counted", got)
	}
	th.Cap, th.SourceCap = 10, 1
	if got := count(th, "r"); got != (Windowed{Stopped: true, Count: 3, Counted: true}) {
		t.Errorf("through, past the source's cap: %+v, want stopped and counted", got)
	}

	// Deleting the slots (a lifted quarantine) forgets their members.
	for _, k := range slots(13).Slots {
		must(t, s.Delete(ctx, k))
	}
	if got := count(slots(13), "a"); got != (Windowed{Count: 1, Counted: true}) {
		t.Errorf("after the slots were deleted: %+v, want a counted anew", got)
	}

	// A new slot expires after the TTL.
	short := slots(40)
	short.TTL = 150 * time.Millisecond
	count(short, "e")
	eventually(t, "a slot expired", func() bool { return count(short, "e").Counted })

	// Parallel events: a member counts once, and no more than Cap members count.
	par := slots(50)
	par.Cap, par.HoldFor = 10, 0
	var wg sync.WaitGroup
	var counted atomic.Int64
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := par
			w.Now, w.Member = now, fmt.Sprint("n", i%20)
			got, err := s.Window(ctx, w)
			if err != nil {
				t.Error(err)
			}
			if got.Counted {
				counted.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := counted.Load(); n != 10 {
		t.Errorf("40 parallel events of 20 members counted %d, want the cap's 10", n)
	}

	for _, bad := range []Window{{Member: "a"}, {Slots: []string{tag + ":w:0"}}, {Slots: []string{tag + ":w:0"}, Member: "a", Source: string(make([]byte, 65))}} {
		if _, err := s.Window(ctx, bad); err == nil {
			t.Errorf("a window %+v was counted", bad)
		}
	}
}
