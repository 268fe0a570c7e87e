package caddyotp

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// quarantine is a quarantined prefix as the admin API lists it.
type quarantine struct {
	Prefix     string `json:"prefix"`
	Country    string `json:"country"`
	Unverified int64  `json:"unverified"`      // unverified numbers when it was quarantined
	Since      int64  `json:"since"`           // when, Unix ns
	Until      int64  `json:"until,omitempty"` // until when it holds now, Unix ns
	Monitor    bool   `json:"monitor,omitempty"`
}

const (
	pumpListed  = 256                // the admin API lists the quarantines among the last this many
	pumpListTTL = 7 * 24 * time.Hour // how long a quarantine stays on that list, renewed or not
)

// list adds q to the quarantines of the gate that the admin API lists: every instance of the
// gate sees it.
func (s *pumpingShield) list(ctx context.Context, q quarantine) error {
	n, err := s.store.Incr(ctx, pumpListCountKey(s.gate), 30*24*time.Hour)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(q)
	return s.store.Set(ctx, pumpListKey(s.gate, n), b, pumpListTTL)
}

// quarantines are the gate's prefixes quarantined now (in monitor mode: that would be), the
// latest first, with until when.
func (s *pumpingShield) quarantines(ctx context.Context) ([]quarantine, error) {
	v, err := s.store.Get(ctx, pumpListCountKey(s.gate))
	if err != nil {
		return nil, err
	}
	n, _ := strconv.ParseInt(string(v), 10, 64)
	now := s.now().UnixNano()
	out, seen := []quarantine{}, map[string]bool{}
	for i := n; i > 0 && i > n-pumpListed; i-- {
		b, err := s.store.Get(ctx, pumpListKey(s.gate, i))
		if err != nil {
			return nil, err
		}
		var q quarantine
		if b == nil || json.Unmarshal(b, &q) != nil || seen[q.Prefix] || !validPrefix(q.Prefix) {
			continue
		}
		seen[q.Prefix] = true
		hold, err := s.store.Get(ctx, s.holdKey(s.prefixTag(q.Prefix)))
		if err != nil {
			return nil, err
		}
		if hold == nil || !holds(hold, now) {
			continue // over, or lifted
		}
		q.Until, _ = strconv.ParseInt(string(hold), 10, 64)
		out = append(out, q)
	}
	return out, nil
}

// lift ends prefix's quarantine on the gate and forgets its count, so that the next code to it
// goes out.
// It says whether a quarantine held.
func (s *pumpingShield) lift(ctx context.Context, prefix string) (bool, error) {
	tag := s.prefixTag(prefix)
	hold, err := s.store.Take(ctx, s.holdKey(tag))
	if err != nil {
		return false, err
	}
	for _, k := range window(tag, s.now(), pumpWindow).Slots {
		if err := s.store.Delete(ctx, k); err != nil {
			return false, err
		}
	}
	held := hold != nil && holds(hold, s.now().UnixNano())
	if held {
		s.obs.logger.Warn("number prefix quarantine lifted", zap.String("prefix", prefix))
	}
	return held, nil
}

// pumpTraffic is what this instance saw asked for in the current hour, by prefix and by
// country: for the log line of a budget reached, which names where the codes went.
type pumpTraffic struct {
	mu        sync.Mutex
	hour      int64
	prefixes  map[string]int
	countries map[string]int
	logged    map[string]int64 // what was logged once, and in which slot
}

// pumpTrafficPrefixes bounds the prefixes counted per hour: a flood of prefixes stops being
// told apart, and the memory stays bounded.
const pumpTrafficPrefixes = 10000

func newPumpTraffic() *pumpTraffic {
	return &pumpTraffic{prefixes: map[string]int{}, countries: map[string]int{}, logged: map[string]int64{}}
}

// add counts a code asked for e164 at now.
func (t *pumpTraffic) add(now time.Time, e164 string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := now.Unix() / 3600; h != t.hour {
		t.hour, t.prefixes, t.countries = h, map[string]int{}, map[string]int{}
	}
	if p := pumpPrefix(e164); t.prefixes[p] > 0 || len(t.prefixes) < pumpTrafficPrefixes {
		t.prefixes[p]++
	}
	t.countries[countryOf(e164)]++
}

// once says whether what has not been logged yet in slot: then it counts as logged.
func (t *pumpTraffic) once(what string, slot int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.logged[what]; ok && last == slot {
		return false
	}
	if len(t.logged) > 1000 {
		clear(t.logged)
	}
	t.logged[what] = slot
	return true
}

// top is the n keys of counts with the highest counts, each "key: count".
func top(counts map[string]int, n int) []string {
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int { return cmp.Or(counts[b]-counts[a], cmp.Compare(a, b)) })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s: %d", k, counts[k]))
	}
	return out
}

// asked counts a code asked for (the budget counted it) at now, for the log of a budget reached.
func (s *pumpingShield) asked(e164 string) {
	if s != nil {
		s.traffic.add(s.now(), e164)
	}
}

// budgetReached logs, once an hour, that max_sms_per_hour turned a visitor away, with the
// prefixes and countries this instance sent the most codes to in the hour.
func (s *pumpingShield) budgetReached() {
	if s == nil {
		return
	}
	now := s.now()
	if !s.traffic.once("budget", now.Unix()/3600) {
		return
	}
	s.traffic.mu.Lock()
	prefixes, countries := top(s.traffic.prefixes, 5), top(s.traffic.countries, 5)
	s.traffic.mu.Unlock()
	s.obs.logger.Warn("max_sms_per_hour reached (the gate's, or an address range's quarter of it): codes are refused until the hour ends", zap.Strings("top_prefixes", prefixes),
		zap.Strings("top_countries", countries))
}
