package caddyotp

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"go.uber.org/zap"
)

// pumpingShield holds back codes to number prefixes that bots pump (docs/fraud.md). It counts,
// per prefix and (with country_limit) per country calling code, the codes handed to the
// provider that nobody verified, in a sliding window; a verified code, or one the provider
// refused, is taken back. A prefix that reaches prefix_limit is quarantined for an hour, on
// every instance of the store at once (a hold in the store). A held-back code follows the
// simulated course of a number that may not sign in, so neither the pumper nor anyone else can
// tell the two apart. It counts only in the background, once a delivery is about to go out:
// after every limit on asking (ip_limit, its range, send_limit, the budget) counted the request.
type pumpingShield struct {
	off, monitor bool
	prefixLimit  int64
	country      Limit // Count 0: no cap per country
	safe         []string
	store        Store
	subjects     []byte // names prefixes in store keys by a keyed hash
	now          func() time.Time
	obs          *observer
	traffic      *pumpTraffic
}

const (
	pumpWindow = time.Hour // a prefix's codes count for this long
	pumpHold   = time.Hour // a quarantine lasts this long after the code that kept the prefix at its limit
	pumpSlots  = 12        // slots of a window: it reaches back between 11/12 and all of its length
)

// newPumpingShield is the shield c configures (nil: on, with the defaults).
func newPumpingShield(c *PumpingShield, store Store, subjects []byte, now func() time.Time, obs *observer) *pumpingShield {
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

// prefixTag and countryTag are the hash tags of a prefix's and a country's keys: every key of
// one Window shares its tag, so a Redis Cluster keeps them in one slot. A prefix appears only
// as a keyed hash, as a phone does.
func (s *pumpingShield) prefixTag(prefix string) string {
	id := subjectID(s.subjects, "pumping\x00"+prefix)
	return hex.EncodeToString(id[:])
}

func countryTag(code string) string { return "cc" + code }

// window is the Window of tag's counts for an event at t, with its slots over length.
func window(tag string, t time.Time, length time.Duration) Window {
	slot := length / pumpSlots
	at := t.UnixNano() / int64(slot)
	w := Window{TTL: length + slot}
	for i := int64(0); i < pumpSlots; i++ {
		w.Events = append(w.Events, pumpSlotKey(tag, "s", at-i))
		w.Undone = append(w.Undone, pumpSlotKey(tag, "v", at-i))
	}
	return w
}

// admit counts flow f's code, about to be handed to the provider, and says whether it may go:
// not while its prefix is quarantined or its country at its cap (in monitor mode it always may,
// and what would have been held back is counted as such). The code counts in the slot of the
// moment it was issued (f.Sent), where taking it back (forget) finds it.
func (s *pumpingShield) admit(ctx context.Context, f *flow) (bool, error) {
	if !s.guarded(f) {
		return true, nil
	}
	sent, now := time.Unix(0, f.Sent), s.now()
	code := callingCode(f.Phone)
	stopped, prefixCounted := false, false
	if !s.safePrefix(f.Phone) {
		prefix := pumpPrefix(f.Phone)
		tag := s.prefixTag(prefix)
		w := window(tag, sent, pumpWindow)
		w.Hold, w.Now, w.Cap, w.HoldFor, w.Through = pumpHoldKey(tag), now.UnixNano(), s.prefixLimit, pumpHold, s.monitor
		got, err := s.store.Window(ctx, w)
		if err != nil {
			return false, err
		}
		if got.Holding {
			s.quarantined(ctx, prefix, countryOf(f.Phone), code, got.Count, now)
		}
		stopped, prefixCounted = got.Stopped, !got.Stopped || s.monitor
	}
	if s.country.Count > 0 && !(stopped && !s.monitor) {
		w := window(countryTag(code), sent, time.Duration(s.country.Window))
		w.Now, w.Cap, w.Through = now.UnixNano(), int64(s.country.Count), s.monitor
		got, err := s.store.Window(ctx, w)
		if err == nil && got.Stopped && !s.monitor && prefixCounted {
			err = s.undo(ctx, f, false) // the prefix counted a code that does not go out
		}
		if err != nil {
			return false, err
		}
		if got.Stopped {
			s.countryCapped(countryOf(f.Phone), code, got.Count, now)
		}
		stopped = stopped || got.Stopped
	}
	switch {
	case stopped && s.monitor:
		metrics.pumping.WithLabelValues(countryOf(f.Phone), "would_block").Inc()
	case stopped:
		metrics.pumping.WithLabelValues(countryOf(f.Phone), "blocked").Inc()
		return false, nil
	}
	return true, nil
}

// forget takes back flow f's code from its counts: it was verified, or the provider refused it.
func (s *pumpingShield) forget(ctx context.Context, f *flow) error {
	if !s.guarded(f) || !f.Allowed {
		return nil // never counted
	}
	return s.undo(ctx, f, s.country.Count > 0)
}

// undo counts f's code as taken back in its prefix's window and, if country, its country's.
func (s *pumpingShield) undo(ctx context.Context, f *flow, country bool) error {
	sent := time.Unix(0, f.Sent)
	if !s.safePrefix(f.Phone) {
		w := window(s.prefixTag(pumpPrefix(f.Phone)), sent, pumpWindow)
		if _, err := s.store.Incr(ctx, w.Undone[0], w.TTL); err != nil {
			return err
		}
	}
	if country {
		w := window(countryTag(callingCode(f.Phone)), sent, time.Duration(s.country.Window))
		if _, err := s.store.Incr(ctx, w.Undone[0], w.TTL); err != nil {
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
