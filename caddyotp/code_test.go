package caddyotp

import (
	"bytes"
	"testing"
)

func TestNewCodeHasExactlyNDigits(t *testing.T) {
	t.Parallel() // no server, no shared clock
	for n := 6; n <= 10; n++ {
		for i := 0; i < 200; i++ {
			c, err := newCode(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(c) != n || cleanCode(c, n) != c {
				t.Fatalf("newCode(%d) = %q", n, c)
			}
		}
	}
}

// TestNewCodeIsUniform draws 100,000 six-digit codes and checks each digit position with a
// chi-square test (9 degrees of freedom; 27.88 is the 0.1% critical value), and that leading
// zeros appear as often as they should (a code is not a number that drops them).
func TestNewCodeIsUniform(t *testing.T) {
	t.Parallel() // no server, no shared clock
	const draws = 100_000
	var counts [6][10]int
	for i := 0; i < draws; i++ {
		c, err := newCode(6)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < 6; p++ {
			counts[p][c[p]-'0']++
		}
	}
	// One chi-square over every position's digits (54 degrees of freedom), held to p = 1e-6:
	// a fair generator fails once in a million runs, where a test per position at p = 0.001
	// failed about one run in 170. A modulo bias (byte % 10) scores about 220 here.
	expected := float64(draws) / 10
	chi := 0.0
	for p := 0; p < 6; p++ {
		for d := 0; d < 10; d++ {
			diff := float64(counts[p][d]) - expected
			chi += diff * diff / expected
		}
	}
	if chi > 118.45 {
		t.Errorf("chi-square %.1f over 118.45 (54 degrees of freedom, p = 1e-6): %v", chi, counts)
	}
}

func TestCodeHashBindsCodeToFlowAndKey(t *testing.T) {
	t.Parallel() // no server, no shared clock
	key, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	h := codeHash(key, "flowA", "123456")
	if !codeMatches(key, "flowA", "123456", h) {
		t.Fatal("right code in its flow does not match")
	}
	for name, ok := range map[string]bool{
		"other code": codeMatches(key, "flowA", "123457", h),
		"other flow": codeMatches(key, "flowB", "123456", h),
		"other key":  codeMatches(other, "flowA", "123456", h),
		"shifted":    codeMatches(key, "flowA1", "23456", h), // the separator keeps id and code apart
	} {
		if ok {
			t.Errorf("%s matches", name)
		}
	}
	if bytes.Contains(h, []byte("123456")) {
		t.Error("hash holds the code")
	}
}

func TestCleanCodeAcceptsPastedFormsOnly(t *testing.T) {
	t.Parallel() // no server, no shared clock
	for in, want := range map[string]string{
		"123456": "123456", "123 456": "123456", "123-456": "123456", " 12.34.56 ": "123456",
		"12345": "", "1234567": "", "12345a": "", "١٢٣٤٥٦": "", "": "",
	} {
		if got := cleanCode(in, 6); got != want {
			t.Errorf("cleanCode(%q) = %q, want %q", in, got, want)
		}
	}
}
