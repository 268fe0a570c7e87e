package caddyotp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
)

// newCode returns n decimal digits drawn uniformly from crypto/rand. rand.Int samples [0, 10^n)
// by rejection, so every code is equally likely (no modulo bias).
func newCode(n int) (string, error) {
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", n, v.Int64()), nil // n <= 10 fits an int64
}

// codeHash is what the store keeps instead of a code: HMAC-SHA256 over the flow id and the code,
// so a code is worthless outside the flow that asked for it and the store never holds it.
func codeHash(key []byte, flowID, code string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(flowID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// codeMatches compares in constant time.
func codeMatches(key []byte, flowID, code string, want []byte) bool {
	return hmac.Equal(codeHash(key, flowID, code), want)
}

// cleanCode accepts what people paste: digits with spaces, dashes or dots between them.
// It returns "" unless exactly n digits remain.
func cleanCode(s string, n int) string {
	if len(s) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '\t':
		default:
			return ""
		}
	}
	if b.Len() != n {
		return ""
	}
	return b.String()
}
