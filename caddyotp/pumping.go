package caddyotp

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"go.uber.org/zap"
)

// pumpingShield holds back codes to number prefixes that bots pump (docs/fraud.md). It counts,
// per prefix and (with country_limit) per country calling code, the distinct numbers that were
// handed a code nobody verified, in a sliding window; a verified code takes its number back out,
// and so does a refused one that had brought it in. A prefix that reaches prefix_limit is
// quarantined for an hour, on every instance of the gate at once (a hold in the store). One
// address range adds at most rangeShare of a count: past it, its codes to new numbers there are
// held back, and the prefix stays open to everyone else. A held-back code follows the
// simulated course of a number that may not sign in, so neither the pumper nor anyone else can
// tell the two apart. It counts only in the background, once a delivery is about to go out:
// after every limit on asking (ip_limit, its range, send_limit, the budget) counted the request.
// The counts and holds are the gate's own (gate): another gate of the same store and key
// neither reads nor moves them, and monitor mode keeps apart from on mode.
type pumpingShield struct {
	off, monitor bool
	prefixLimit  int64
	country      Limit // Count 0: no cap per country
	safe         []string
	store        Store
	subjects     []byte // names prefixes, numbers and ranges in store keys by a keyed hash
	gate         string // the gate's tag in store keys: its identity and mode, hashed
	now          func() time.Time
	obs          *observer
	traffic      *pumpTraffic
}

const (
	pumpWindow = time.Hour // a prefix's numbers count for this long
	pumpHold   = time.Hour // a quarantine lasts this long after the number that kept the prefix at its limit
	pumpSlots  = 12        // slots of a window: it reaches back between 11/12 and all of its length
)

// rangeShare is what one address range may add to a count of limit: half of it, rounded up,
// so that reaching limit takes two ranges at least (with a limit of 2 or more).
func rangeShare(limit int64) int64 { return (limit + 1) / 2 }

// newPumpingShield is the shield c configures (nil: on, with the defaults) for the gate named
// by gate (pumpGate).
func newPumpingShield(c *PumpingShield, store Store, subjects, gate []byte, now func() time.Time, obs *observer) *pumpingShield {
	if c == nil {
		c = &PumpingShield{}
	}
	s := &pumpingShield{off: c.Mode == "off", monitor: c.Mode == "monitor", prefixLimit: int64(c.PrefixLimit), safe: c.Safe,
		store: store, subjects: subjects, now: now, obs: obs, traffic: newPumpTraffic()}
	if s.prefixLimit <= 0 {
		s.prefixLimit = defaultPrefixLimit
	}
	if c.CountryLimit != nil {
		s.country = *c.CountryLimit
	}
	mode := "on"
	if s.monitor {
		mode = "monitor"
	}
	id := subjectID(subjects, "pumping-gate\x00"+mode+"\x00"+string(gate))
	s.gate = hex.EncodeToString(id[:8])
	return s
}

// pumpPrefix is the prefix an E.164 number counts under: the number without its last 4 digits.
func pumpPrefix(e164 string) string {
	if len(e164) < 6 {
		return e164
	}
	return e164[:len(e164)-4]
}

// callingCode is the country calling code an E.164 number starts with (44 for +447911123456),
// or "": calling codes are prefix-free, so at most one of its first 1 to 3 digits is one.
func callingCode(e164 string) string {
	for n := 1; n <= 3 && n < len(e164); n++ {
		if cc, err := strconv.Atoi(e164[1 : 1+n]); err == nil && phonenumbers.GetRegionCodeForCountryCode(cc) != "ZZ" {
			return e164[1 : 1+n]
		}
	}
	return ""
}

// countryOf is the region of an E.164 number for metrics and logs: ISO 3166 (GB), or ZZ. It
// parses the number, so the shield asks only when it has something to report.
func countryOf(e164 string) string {
	if r := regionOf(e164); r != "" {
		return r
	}
	return "ZZ"
}

// guarded says whether flow f's codes are the shield's: not a first-factor user's phone (only
// a signed-in account reaches it, and pumping must not lock its owner out), and the shield on.
func (s *pumpingShield) guarded(f *flow) bool { return s != nil && !s.off && f.User == "" }

// safePrefix says whether the number is in a prefix that is never quarantined.
func (s *pumpingShield) safePrefix(e164 string) bool {
	for _, p := range s.safe {
		if strings.HasPrefix(e164, p) {
			return true
		}
	}
	return false
}

// prefixTag and countryTag are the hash tags of a prefix's and a country's keys, of this gate:
// every key of one Window shares its tag, so a Redis Cluster keeps them in one slot. A prefix,
// a number and a range appear only as keyed hashes, as a phone does.
func (s *pumpingShield) prefixTag(prefix string) string { return s.hashed("prefix", prefix, 16) }

func (s *pumpingShield) countryTag(code string) string { return s.hashed("country", code, 16) }

// member and source name a number and the address range of a client in a window.
func (s *pumpingShield) member(e164 string) string { return s.hashed("number", e164, 8) }

func (s *pumpingShield) source(client string) string { return s.hashed("range", limitRange(client), 8) }

func (s *pumpingShield) hashed(kind, what string, n int) string {
	id := subjectID(s.subjects, "pumping\x00"+s.gate+"\x00"+kind+"\x00"+what)
	return hex.EncodeToString(id[:n])
}

// holdKey is the key that quarantines the prefix of tag: in monitor mode, one nothing obeys.
func (s *pumpingShield) holdKey(tag string) string {
	if s.monitor {
		return pumpSeenKey(tag)
	}
	return pumpHoldKey(tag)
}

// window is the Window of tag's counts for an event at t, with its slots over length.
func window(tag string, t time.Time, length time.Duration) Window {
	slot := length / pumpSlots
	at := t.UnixNano() / int64(slot)
	w := Window{TTL: length + slot}
	for i := int64(0); i < pumpSlots; i++ {
		w.Slots = append(w.Slots, pumpSlotKey(tag, at-i))
	}
	return w
}

// pumpAdmission is what the shield made of a code about to be handed to the provider: whether it
// may go, and whether it brought its number into the prefix's and the country's counts (a
// refused send takes back only what it brought).
type pumpAdmission struct{ ok, prefix, country bool }

// admit counts flow f's code, about to be handed to the provider for client, and says whether
// it may go: not while its prefix is quarantined, nor when its number is new to the prefix or
// the country and the count, or client's range's share of it, is full (in monitor mode it
// always may, and what would have been held back is counted as such). The country is asked
// first: a code it holds back never counts in its prefix, nor starts its quarantine. A number
// counts in the slot of the moment its code was issued (f.Sent).
func (s *pumpingShield) admit(ctx context.Context, f *flow, client string) (pumpAdmission, error) {
	a := pumpAdmission{ok: true}
	if !s.guarded(f) {
		return a, nil
	}
	sent, now := time.Unix(0, f.Sent), s.now()
	code := callingCode(f.Phone)
	stopped := false
	if s.country.Count > 0 {
		w := window(s.countryTag(code), sent, time.Duration(s.country.Window))
		w.Now, w.Cap, w.SourceCap, w.Through = now.UnixNano(), int64(s.country.Count), rangeShare(int64(s.country.Count)), s.monitor
		w.Member, w.Source = s.member(f.Phone), s.source(client)
		got, err := s.store.Window(ctx, w)
		if err != nil {
			return a, err
		}
		a.country = got.Counted
		if got.Stopped {
			s.countryCapped(countryOf(f.Phone), code, got.Count, now)
			stopped = true
		}
	}
	if !s.safePrefix(f.Phone) && (!stopped || s.monitor) {
		prefix := pumpPrefix(f.Phone)
		tag := s.prefixTag(prefix)
		w := window(tag, sent, pumpWindow)
		w.Hold, w.Now, w.Cap, w.SourceCap, w.HoldFor, w.Through = s.holdKey(tag), now.UnixNano(), s.prefixLimit, rangeShare(s.prefixLimit), pumpHold, s.monitor
		w.Member, w.Source = s.member(f.Phone), s.source(client)
		got, err := s.store.Window(ctx, w)
		if err != nil {
			return a, errors.Join(err, s.undo(ctx, f, false, a.country))
		}
		a.prefix = got.Counted
		if got.Holding {
			s.quarantined(ctx, prefix, countryOf(f.Phone), code, got.Count, now)
		}
		if got.Stopped && !s.monitor && a.country { // the country counted a number that gets no code
			if err := s.undo(ctx, f, false, true); err != nil {
				return a, err
			}
			a.country = false
		}
		stopped = stopped || got.Stopped
	}
	switch {
	case stopped && s.monitor:
		metrics.pumping.WithLabelValues(countryOf(f.Phone), "would_block").Inc()
	case stopped:
		metrics.pumping.WithLabelValues(countryOf(f.Phone), "blocked").Inc()
		a.ok = false
	}
	return a, nil
}

// forget takes flow f's number back out of its counts: its code was verified.
func (s *pumpingShield) forget(ctx context.Context, f *flow) error {
	if !s.guarded(f) || !f.Allowed {
		return nil // never counted
	}
	return s.undo(ctx, f, true, s.country.Count > 0)
}

// refused takes back what pumpAdmission a of flow f's code brought into the counts: the provider
// refused the code, so it is no unverified one.
func (s *pumpingShield) refused(ctx context.Context, f *flow, a pumpAdmission) error {
	if !s.guarded(f) {
		return nil
	}
	return s.undo(ctx, f, a.prefix, a.country)
}

// undo takes f's number out of its prefix's window, if prefix, and its country's, if country.
// The windows reach back from now (or the code's issue, if later), where its number was counted.
func (s *pumpingShield) undo(ctx context.Context, f *flow, prefix, country bool) error {
	at := s.now()
	if sent := time.Unix(0, f.Sent); sent.After(at) {
		at = sent
	}
	if prefix && !s.safePrefix(f.Phone) {
		w := window(s.prefixTag(pumpPrefix(f.Phone)), at, pumpWindow)
		w.Member, w.Undo = s.member(f.Phone), true
		if _, err := s.store.Window(ctx, w); err != nil {
			return err
		}
	}
	if country {
		w := window(s.countryTag(callingCode(f.Phone)), at, time.Duration(s.country.Window))
		w.Member, w.Undo = s.member(f.Phone), true
		if _, err := s.store.Window(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// quarantined reports a prefix that just reached its limit, once for the whole store (only the
// code that started the hold sees Holding), and lists it for the admin API.
func (s *pumpingShield) quarantined(ctx context.Context, prefix, country, code string, count int64, now time.Time) {
	metrics.pumping.WithLabelValues(country, "quarantined").Inc()
	s.obs.logger.Warn("number prefix quarantined: SMS pumping suspected", zap.String("prefix", prefix), zap.String("country", country),
		zap.String("calling_code", code), zap.Int64("unverified", count), zap.Duration("for", pumpHold), zap.Bool("monitor", s.monitor))
	s.obs.emit(eventPumpingBlocked, "prefix", prefix, "country", country, "unverified", count, "monitor", s.monitor)
	if err := s.list(ctx, quarantine{Prefix: prefix, Country: country, Unverified: count, Since: now.UnixNano(), Monitor: s.monitor}); err != nil {
		s.obs.storeFailed(err) // the hold is set: only the admin API's list misses it
	}
}

// countryCapped reports that the cap on a country held back a code (or, monitor, would have):
// once per slot of its window on this instance.
func (s *pumpingShield) countryCapped(country, code string, count int64, now time.Time) {
	if !s.traffic.once("country\x00"+code, now.UnixNano()/int64(time.Duration(s.country.Window)/pumpSlots)) {
		return
	}
	s.obs.logger.Warn("country at its pumping_shield country_limit: code held back", zap.String("country", country),
		zap.String("calling_code", code), zap.Int64("unverified", count), zap.Bool("monitor", s.monitor))
}
