package caddyotp

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

var errNotPhone = errors.New("not a valid phone number")

// normalizePhone parses what a person typed into E.164 (+12015550123) and its region (US).
// Numbers without a +country prefix are read in defaultRegion; an empty region requires the prefix.
func normalizePhone(input, defaultRegion string) (e164, region string, err error) {
	input = strings.TrimSpace(input)
	if input == "" || len(input) > 40 {
		return "", "", errNotPhone
	}
	num, err := phonenumbers.Parse(input, defaultRegion)
	if err != nil {
		return "", "", errNotPhone
	}
	// IsValidNumber would look the region up again: find it once, then check the number in it.
	region = phonenumbers.GetRegionCodeForNumber(num)
	if region == "" || !phonenumbers.IsValidNumberForRegion(num, region) {
		return "", "", errNotPhone
	}
	return phonenumbers.Format(num, phonenumbers.E164), region, nil
}

// deliverable says whether a code may go to the E.164 number by channel ("sms" or "call"): by
// SMS to a mobile number, or one its country's plan does not tell from a fixed line; by a call
// to those and to fixed lines. Every other type (premium rate, shared cost, personal, UAN,
// pager, VoIP, toll free, voicemail, unknown) is never texted or called: what they cost the
// sender, or pay their owner, is toll fraud.
func deliverable(e164, channel string) bool {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return false
	}
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
		return true
	case phonenumbers.FIXED_LINE:
		return channel == "call"
	}
	return false
}

// regionOf is the region of an E.164 number, or "".
func regionOf(e164 string) string {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return ""
	}
	return phonenumbers.GetRegionCodeForNumber(num)
}

// maskPhone keeps the country and area prefix and the last two digits: +1201*****23.
func maskPhone(e164 string) string {
	if len(e164) < 8 {
		return strings.Repeat("*", len(e164))
	}
	return e164[:5] + strings.Repeat("*", len(e164)-7) + e164[len(e164)-2:]
}

// formatPhone is an E.164 number grouped the way its country writes it: +1 201-555-0123.
func formatPhone(e164 string) string {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return e164
	}
	return phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
}

// maskPhoneDisplay is the masked number as the code page shows it, grouped the way the
// number's country writes it: +1 201-***-**23, +44 20 **** **00.
func maskPhoneDisplay(e164 string) string {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return maskPhone(e164)
	}
	s := []byte(phonenumbers.Format(num, phonenumbers.INTERNATIONAL))
	// Keep the country code and the first group, and the last two digits.
	keep := strings.IndexByte(string(s), ' ')
	if next := strings.IndexAny(string(s[keep+1:]), " -"); keep >= 0 && next >= 0 {
		keep += 1 + next
	}
	last := 2
	for i := len(s) - 1; i > keep; i-- {
		if s[i] < '0' || s[i] > '9' {
			continue
		}
		if last > 0 {
			last--
			continue
		}
		s[i] = '*'
	}
	return string(s)
}

// phoneList is who may sign in: a set of E.164 numbers, or anyone with a phone.
type phoneList struct {
	anyone bool
	set    map[string]struct{}
}

func (l *phoneList) allows(e164 string) bool {
	if l.anyone {
		return true
	}
	_, ok := l.set[e164]
	return ok
}

// add normalises entries into the list; "*" lets anyone in. where names the source in errors.
func (l *phoneList) add(entry, defaultRegion, where string) error {
	if entry == "*" {
		l.anyone = true
		return nil
	}
	e164, _, err := normalizePhone(entry, defaultRegion)
	if err != nil {
		return fmt.Errorf("%s: %q is not a valid phone number (write it in E.164, e.g. +12015550123, or set default_region)", where, entry)
	}
	if l.set == nil {
		l.set = make(map[string]struct{})
	}
	l.set[e164] = struct{}{}
	return nil
}

// addFile reads one number a line; blank lines and # comments are skipped.
func (l *phoneList) addFile(path, defaultRegion string) error {
	return readEntries(path, "phones_file", func(entry, where string) error {
		return l.add(entry, defaultRegion, where)
	})
}

// readEntries calls add with each entry of a list file (a line without its # comment and outer
// spaces, blank ones skipped) and where it stands ("what PATH:LINE"), for error messages.
func readEntries(path, what string, add func(entry, where string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		entry, _, _ := strings.Cut(sc.Text(), "#")
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		if err := add(entry, fmt.Sprintf("%s %s:%d", what, path, line)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: %v", what, path, err)
	}
	return nil
}

func (l *phoneList) empty() bool { return !l.anyone && len(l.set) == 0 }
