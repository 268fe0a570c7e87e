package caddyotp

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNormalizePhone(t *testing.T) {
	t.Parallel() // no server, no shared clock
	cases := []struct{ in, region, want, wantRegion string }{
		{"+12015550123", "", "+12015550123", "US"},
		{"+1 (201) 555-0123", "", "+12015550123", "US"},
		{"(201) 555-0123", "US", "+12015550123", "US"},
		{"020 7946 0000", "GB", "+442079460000", "GB"},
		{"+44 20 7946 0000", "US", "+442079460000", "GB"},
	}
	for _, c := range cases {
		got, region, err := normalizePhone(c.in, c.region)
		if err != nil || got != c.want || region != c.wantRegion {
			t.Errorf("normalizePhone(%q, %q) = %q, %q, %v; want %q, %q", c.in, c.region, got, region, err, c.want, c.wantRegion)
		}
	}
	for _, bad := range []string{"", "hello", "(201) 555-0123", "+1 555 123 4567", "+1", strings.Repeat("1", 41)} {
		if got, _, err := normalizePhone(bad, ""); err == nil {
			t.Errorf("normalizePhone(%q) = %q, want an error", bad, got)
		}
	}
}

func TestMaskPhoneHidesTheMiddle(t *testing.T) {
	t.Parallel() // no server, no shared clock
	if got := maskPhone("+12015550123"); got != "+1201*****23" {
		t.Errorf("maskPhone = %q", got)
	}
	if got := maskPhone("+442079460000"); got != "+4420******00" {
		t.Errorf("maskPhone = %q", got)
	}
	if got := maskPhone("+1234"); strings.ContainsAny(got, "1234") {
		t.Errorf("short input leaks digits: %q", got)
	}
}

func TestPhoneListFromFileNamesTheBadLine(t *testing.T) {
	t.Parallel() // no server, no shared clock
	path := filepath.Join(t.TempDir(), "phones.txt")
	content := "# staff\n+12015550123\n\n  (201) 555-0145  # bob, national form\nnot-a-phone\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var l phoneList
	err := l.addFile(path, "US")
	if err == nil || !strings.Contains(err.Error(), path+":5") {
		t.Fatalf("error %v does not name line 5", err)
	}
	if !l.allows("+12015550123") || !l.allows("+12015550145") {
		t.Errorf("lines before the bad one were not read")
	}
}

func TestPhoneListAnyoneOnlyByExplicitStar(t *testing.T) {
	t.Parallel() // no server, no shared clock
	var l phoneList
	if !l.empty() || l.allows("+12015550123") {
		t.Fatal("an empty list lets someone in")
	}
	if err := l.add("*", "", "phones"); err != nil {
		t.Fatal(err)
	}
	if !l.allows("+12015550199") {
		t.Error("phones * does not let anyone in")
	}
}

// TestCostlyNumbersInAllowedRegionsAreNeverTextedOrCalled is toll fraud inside the regions
// codes may go to: numbers whose texts and calls cost the sender more, or pay their owner
// (premium rate, personal, VoIP, UAN, pager, toll free), get what a number that may not sign in
// gets: the same answers, and no SMS and no call. A fixed line gets no SMS, but may be called.
func TestCostlyNumbersInAllowedRegionsAreNeverTextedOrCalled(t *testing.T) {
	g := newGate(t)
	g.phones = "*"
	g.senderOpts = []string{"voice"}
	g.start("regions US GB\n\t\tsend_limit 50 10m\n\t\tip_limit 200 10m")
	costly := []string{"+19002345678", "+449098765432", "+447012345678", "+445612345678", "+445512345678", "+447640123456", "+18005550199"}
	for _, number := range costly {
		v := newVisitor(t)
		csrf, sent := v.startSignIn("/", number)
		wantStatus(t, "send to "+number, sent, http.StatusSeeOther)
		clock.Advance(31 * time.Second)
		wantStatus(t, "resend to "+number, v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
		clock.Advance(31 * time.Second)
		wantStatus(t, "call to "+number, v.post("/.otp/call", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
		v.settled()
	}
	time.Sleep(200 * time.Millisecond) // what the background would still send
	if m, c := g.sms.Messages(), g.sms.Calls(); len(m)+len(c) != 0 {
		t.Fatalf("costly numbers got %d texts and %d calls: %v %v", len(m), len(c), m, c)
	}

	const landline = "+442079460000"
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", landline)
	clock.Advance(31 * time.Second)
	wantStatus(t, "resend to a fixed line", v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	clock.Advance(31 * time.Second)
	wantStatus(t, "call to a fixed line", v.post("/.otp/call", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	calls, err := g.sms.WaitCalls(1, 5*time.Second)
	if err != nil || calls[0].To != landline {
		t.Fatalf("a fixed line was not called: %v %v", calls, err)
	}
	if m := g.sms.Messages(); len(m) != 0 {
		t.Errorf("a fixed line was texted: %v", m)
	}
}
