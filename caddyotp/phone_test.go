package caddyotp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
