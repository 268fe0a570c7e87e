package caddyotp

import (
	"strings"
	"testing"
)

func TestSMSSegmentsCountGSMAndUCS2(t *testing.T) {
	for body, want := range map[string]int{
		strings.Repeat("a", 160): 1, strings.Repeat("a", 161): 2, strings.Repeat("a", 306): 2, strings.Repeat("a", 307): 3,
		strings.Repeat("€", 80): 1, strings.Repeat("€", 81): 2, // the extension table takes two septets
		strings.Repeat("ó", 70): 1, strings.Repeat("ó", 71): 2, strings.Repeat("ó", 134): 2, strings.Repeat("ó", 135): 3,
	} {
		if got := smsSegments(body); got != want {
			t.Errorf("%d × %q: %d segments, want %d", len([]rune(body)), []rune(body)[0], got, want)
		}
	}
}

// TestDefaultSMSStaysInOneSegmentInEveryLanguage: with a 6-digit code, a site whose name and
// host take smsSiteBudget characters together (or a host of half that without site_name) gets
// a one-segment default SMS in every language, Spanish's UCS-2 included; a character more
// does not fit in Spanish.
func TestDefaultSMSStaysInOneSegmentInEveryLanguage(t *testing.T) {
	host := strings.Repeat("h", smsSiteBudget/2-4) + ".com" // smsSiteBudget/2 characters
	site := strings.Repeat("S", smsSiteBudget-len(host))
	for lang, w := range catalog {
		for _, s := range []string{site, host} {
			body := smsBody(w["sms"], "123456", s, host, host)
			if n := smsSegments(body); n != 1 {
				t.Errorf("%s, site %q: %d segments: %q", lang, s, n, body)
			}
		}
	}
	if isGSM7(catalog["es"]["sms"]) {
		t.Errorf("the Spanish SMS is GSM-7: the budget is set by UCS-2 and should be looked at again")
	}
	if n := smsSegments(smsBody(catalog["es"]["sms"], "123456", site+"S", host, host)); n != 2 {
		t.Errorf("one character over the budget: %d segments, want 2 (the budget is not tight)", n)
	}
}

// TestLongSMSIsWarnedAtLoad: a site_name that makes the default SMS two segments is reported
// at load, with the budget; one within it is not.
func TestLongSMSIsWarnedAtLoad(t *testing.T) {
	// public_url is http://localhost:9080: a 9-character host.
	h, _ := newUnitHandler(t, map[string]any{"site_name": strings.Repeat("S", smsSiteBudget-len("localhost"))})
	for _, w := range h.warnings() {
		if strings.Contains(w, "segments") {
			t.Errorf("a site within the budget is warned: %s", w)
		}
	}
	h, _ = newUnitHandler(t, map[string]any{"site_name": strings.Repeat("S", smsSiteBudget-len("localhost")+1)})
	found := false
	for _, w := range h.warnings() {
		found = found || strings.Contains(w, "takes 2 segments in es") && strings.Contains(w, "shorten site_name")
	}
	if !found {
		t.Errorf("no warning for a two-segment SMS: %q", h.warnings())
	}
}
