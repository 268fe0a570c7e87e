package caddyotp

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// PumpingShield configures the pumping shield (docs/fraud.md): numbers handed a code that
// nobody verifies, each counted once, per number prefix (the E.164 number without its last 4
// digits) and, if asked, per country calling code; one address range adds at most half of a
// limit. A prefix with prefix_limit of them in the last hour is quarantined on its gate for an
// hour: its numbers get what a number that may not sign in gets, and no SMS or call. On by
// default.
type PumpingShield struct {
	// "on" (the default), "off", or "monitor": count, log and report, block nothing.
	Mode string `json:"mode,omitempty"`
	// Numbers of one prefix handed a code nobody verified in the last hour that quarantine it.
	// Default 10.
	PrefixLimit int `json:"prefix_limit,omitempty"`
	// At most Count numbers of one country calling code handed a code nobody verified in the
	// last Window; beyond, codes to new numbers of that country are held back as a quarantined
	// prefix's are. Off unless set.
	CountryLimit *Limit `json:"country_limit,omitempty"`
	// Prefixes in E.164 with their + (e.g. +4479111) that are never quarantined: an office's
	// block of numbers.
	Safe []string `json:"safe,omitempty"`
}

const (
	defaultPrefixLimit = 10
	maxPrefixLimit     = 100000
	maxCountryWindow   = 7 * 24 * time.Hour
)

// validate says what to fix in the shield's settings; a nil shield is the default.
func (c *PumpingShield) validate() error {
	if c == nil {
		return nil
	}
	switch c.Mode {
	case "", "on", "off", "monitor":
	default:
		return fmt.Errorf("otp: pumping_shield %q is not on, off or monitor", c.Mode)
	}
	if c.PrefixLimit < 0 || c.PrefixLimit > maxPrefixLimit {
		return fmt.Errorf("otp: pumping_shield: prefix_limit %d is outside 1..%d (unverified numbers per prefix per hour)", c.PrefixLimit, maxPrefixLimit)
	}
	if l := c.CountryLimit; l != nil && (l.Count < 1 || l.Window <= 0 || time.Duration(l.Window) > maxCountryWindow) {
		return errors.New("otp: pumping_shield: country_limit needs a count of at least 1 and a window of at most 7d, e.g. `country_limit 500 per 24h`")
	}
	for _, p := range c.Safe {
		if !validPrefix(p) {
			return fmt.Errorf("otp: pumping_shield: safe %q is not a prefix in E.164 with its +, e.g. +4479111", p)
		}
	}
	return nil
}

// pumpGate names the gate whose counts and quarantines a pumping shield keeps: what its
// instances share and other gates do not. That is its audience (the name set, else path,
// cookie_name, store and public_url) and who may sign in: two site blocks of one Caddy without
// public_url have one audience, and a gate that texts anyone must not quarantine the numbers
// of another gate's staff.
func pumpGate(h *Handler, aud []byte) []byte {
	regions := make([]string, 0, len(h.Regions))
	for _, r := range h.Regions {
		regions = append(regions, strings.ToUpper(r))
	}
	slices.Sort(regions)
	b, _ := json.Marshal([]any{aud, h.Phones, h.PhonesFile, h.Users, h.UsersFile, slices.Compact(regions), strings.ToUpper(h.DefaultRegion)})
	sum := sha256.Sum256(b)
	return sum[:]
}

// validPrefix says whether p is a + and 1 to 15 digits, the first not 0: the start of an
// E.164 number.
func validPrefix(p string) bool {
	digits, ok := strings.CutPrefix(p, "+")
	return ok && len(digits) >= 1 && len(digits) <= 15 && digits[0] != '0' && isDigits(digits)
}

// unmarshalPumping reads the pumping shield:
//
//	pumping_shield off|monitor
//	pumping_shield [monitor] {
//	    prefix_limit 10                  # unverified numbers per prefix per hour -> quarantine
//	    country_limit 500 per 24h        # unverified numbers per country calling code (off by default)
//	    safe +4479111 +1201555           # prefixes never quarantined
//	}
func unmarshalPumping(d *caddyfile.Dispenser, c *PumpingShield) error {
	if d.NextArg() {
		switch c.Mode = d.Val(); c.Mode {
		case "on", "off", "monitor":
		default:
			return badValuef("%q is not on, off or monitor", c.Mode)
		}
		if d.NextArg() {
			return badValuef("takes on, off or monitor, then an optional block")
		}
	}
	return parseBlockAt(d, d.Nesting(), "pumping_shield", map[string]func() error{
		"prefix_limit": func() error {
			if err := oneInt(d, &c.PrefixLimit, "1 or more"); err != nil {
				return err
			}
			if c.PrefixLimit < 1 {
				return badValuef("%d is not a count of at least 1", c.PrefixLimit)
			}
			return nil
		},
		"country_limit": func() (err error) { c.CountryLimit, err = countryLimitArgs(d); return err },
		"safe": func() error {
			if err := someStrings(d, &c.Safe, "+4479111"); err != nil {
				return err
			}
			for _, p := range c.Safe {
				if !validPrefix(p) {
					return badValuef("%q is not a prefix in E.164 with its +, e.g. +4479111", p)
				}
			}
			return nil
		},
	})
}

// countryLimitArgs reads `COUNT per WINDOW`, e.g. `500 per 24h`.
func countryLimitArgs(d *caddyfile.Dispenser) (*Limit, error) {
	args := d.RemainingArgs()
	if len(args) != 3 || args[1] != "per" {
		return nil, badValuef("expected a count, per and a window, e.g. `500 per 24h`")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, badValuef("%q is not a count of at least 1", args[0])
	}
	w, err := caddy.ParseDuration(args[2])
	if err != nil || w <= 0 {
		return nil, badValuef("%q is not a positive duration such as 24h", args[2])
	}
	return &Limit{Count: n, Window: caddy.Duration(w)}, nil
}
