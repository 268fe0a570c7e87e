package caddyotp

import (
	"context"
	"fmt"
	"strconv"
	"testing"
)

// shieldCase is the shield of h set for a benchmark: codes to numbers of 1,000 prefixes, a limit
// never reached (steady traffic), and country_limit on or off.
func shieldCase(h *Handler, country bool) *pumpingShield {
	s := h.flows.deliveries.shield
	s.prefixLimit, s.country = 1<<40, Limit{}
	if country {
		s.country = Limit{Count: 1 << 30, Window: defaultIPLimit.Window}
	}
	return s
}

// benchFlow is the i-th code of a benchmark: to a number of its own (up to 10 million), in one
// of 1,000 prefixes, from one of 256 address ranges.
func benchFlow(h *Handler, i int) (*flow, string) {
	phone := "+4474" + strconv.Itoa(10_000_000 + (i*97)%10_000_000)[1:]
	return &flow{Phone: phone, Allowed: true, Sent: h.now().UnixNano()}, "198.51." + strconv.Itoa(i%256) + ".7"
}

// benchShield measures the shield per code handed to the provider (admit, its number new to its
// prefix) or, verify, per verified code (forget, of a number admitted before the clock runs).
func benchShield(b *testing.B, h *Handler, country, verify bool) {
	s := shieldCase(h, country)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f, client := benchFlow(h, i)
		if verify {
			b.StopTimer()
			if a, err := s.admit(ctx, f, client); err != nil || !a.ok {
				b.Fatal(a, err)
			}
			b.StartTimer()
			if err := s.forget(ctx, f); err != nil {
				b.Fatal(err)
			}
		} else if a, err := s.admit(ctx, f, client); err != nil || !a.ok {
			b.Fatal(a, err)
		}
	}
}

// BenchmarkPumpingShield is the shield's cost with the memory store: per send and per verify,
// without and with country_limit.
func BenchmarkPumpingShield(b *testing.B) {
	for _, country := range []bool{false, true} {
		b.Run(fmt.Sprintf("send/country_limit=%v", country), func(b *testing.B) { benchShield(b, newBenchHandler(b), country, false) })
		b.Run(fmt.Sprintf("verify/country_limit=%v", country), func(b *testing.B) { benchShield(b, newBenchHandler(b), country, true) })
	}
}

// newBenchHandler is a gate of a benchmark's own, with a memory store of its own: numbers that
// another case counted are new to it.
func newBenchHandler(b *testing.B) *Handler {
	h, _ := newUnitHandler(b, map[string]any{"phones": []string{"*"}})
	return h
}
