package caddyotp

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// windowContract is what the pumping shield relies on of Store.Window, on one store.
func windowContract(t *testing.T, s Store) {
	ctx := context.Background()
	tag := "pump:{" + strconv.FormatInt(time.Now().UnixNano(), 10) + "}"
	slots := func(at int64) Window { // three slots, at, at-1 and at-2, all of one hash tag
		w := Window{Hold: tag + ":hold", Cap: 3, HoldFor: time.Minute, TTL: time.Minute}
		for i := int64(0); i < 3; i++ {
			w.Events = append(w.Events, tag+":s:"+strconv.FormatInt(at-i, 10))
			w.Undone = append(w.Undone, tag+":v:"+strconv.FormatInt(at-i, 10))
		}
		return w
	}
	now := time.Now().UnixNano()
	count := func(w Window) Windowed {
		t.Helper()
		w.Now = now
		got, err := s.Window(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i, want := range []Windowed{{Count: 1}, {Count: 2}, {Count: 3, Holding: true}, {Stopped: true, Count: 3}} {
		if got := count(slots(10)); got != want {
			t.Errorf("event %d: %+v, want %+v", i+1, got, want)
		}
	}
	// Lifted: the hold is gone, but the count is still at the cap.
	must(t, s.Delete(ctx, tag+":hold"))
	if got := count(slots(10)); got != (Windowed{Stopped: true, Count: 3}) {
		t.Errorf("at the cap without a hold: %+v, want stopped", got)
	}
	// One taken back: the next counts, reaches the cap again and holds again.
	if _, err := s.Incr(ctx, tag+":v:10", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := count(slots(10)); got != (Windowed{Count: 3, Holding: true}) {
		t.Errorf("after one was taken back: %+v, want counted and holding", got)
	}
	// A hold past its time holds no more; slots out of the window count no more.
	now += int64(2 * time.Minute)
	if got := count(slots(13)); got != (Windowed{Count: 1}) {
		t.Errorf("later, with the old slots out of the window: %+v, want a count of 1", got)
	}
	// More taken back than counted makes no slot negative.
	for i := 0; i < 3; i++ {
		if _, err := s.Incr(ctx, tag+":v:12", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(slots(13)); got != (Windowed{Count: 2}) {
		t.Errorf("with a slot taken back past its count: %+v, want a count of 2", got)
	}
	// Through counts what the hold stops, and says it stopped it; no hold, the cap alone.
	th := slots(20)
	th.Hold, th.HoldFor, th.Cap, th.Through = "", 0, 1, true
	if got := count(th); got != (Windowed{Count: 1}) {
		t.Errorf("through, first: %+v", got)
	}
	if got := count(th); got != (Windowed{Stopped: true, Count: 2}) {
		t.Errorf("through, past the cap: %+v, want stopped and counted", got)
	}
	if _, err := s.Window(ctx, Window{Cap: 1}); err == nil {
		t.Error("a window without slots was counted")
	}
}
