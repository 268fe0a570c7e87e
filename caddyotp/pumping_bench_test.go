package caddyotp

import (
	"context"
	"fmt"
	"testing"
)

// shieldCase is the shield of h set for a benchmark: codes to 1,000 prefixes, a limit never
// reached (steady traffic), and country_limit on or off.
func shieldCase(h *Handler, country bool) (*pumpingShield, []flow) {
	s := h.flows.deliveries.shield
	s.prefixLimit, s.country = 1<<40, Limit{}
	if country {
		s.country = Limit{Count: 1 << 30, Window: defaultIPLimit.Window}
	}
	flows := make([]flow, 1000)
	for i := range flows {
		flows[i] = flow{Phone: fmt.Sprintf("+44740%07d", i*97), Allowed: true, Sent: h.now().UnixNano()}
	}
	return s, flows
}

// benchShield measures the shield per code handed to the provider (admit) or, verify, per
// verified code (forget).
func benchShield(b *testing.B, h *Handler, country, verify bool) {
	s, flows := shieldCase(h, country)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f := &flows[i%len(flows)]
		if verify {
			if err := s.forget(ctx, f); err != nil {
				b.Fatal(err)
			}
		} else if ok, err := s.admit(ctx, f); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkPumpingShield is the shield's cost with the memory store: per send and per verify,
// without and with country_limit.
func BenchmarkPumpingShield(b *testing.B) {
	h, _ := newUnitHandler(b, nil)
	for _, country := range []bool{false, true} {
		b.Run(fmt.Sprintf("send/country_limit=%v", country), func(b *testing.B) { benchShield(b, h, country, false) })
		b.Run(fmt.Sprintf("verify/country_limit=%v", country), func(b *testing.B) { benchShield(b, h, country, true) })
	}
}
