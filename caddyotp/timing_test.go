//go:build timing

package caddyotp

// The timing check of /send: whether an observer who measures answers can tell a number that
// may sign in from one that may not. It is a measurement, not a CI gate: bench/timing.sh runs it
// (go test -tags timing -run TestSendTimingTellsNothing -v ./caddyotp) and SECURITY.md quotes
// its result.

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowSender answers like a provider: 60 ms plus exponential jitter with a 30 ms mean.
type slowSender struct{}

func (slowSender) Send(ctx context.Context, _ Message) (Sent, error) {
	d := 60*time.Millisecond + time.Duration(mrand.ExpFloat64()*float64(30*time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return Sent{ID: "SM1"}, nil
}

// ksD is the two-sample Kolmogorov–Smirnov statistic: the largest distance between the two
// samples' distribution functions.
func ksD(a, b []time.Duration) float64 {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	var i, j int
	var d float64
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] <= x {
			i++
		}
		for j < len(b) && b[j] <= x {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return d
}

// ksCritical is the D above which two samples of sizes n and m differ at p = 0.01.
func ksCritical(n, m int) float64 {
	return 1.628 * math.Sqrt(float64(n+m)/float64(n*m))
}

func TestSendTimingTellsNothing(t *testing.T) {
	const samples = 1000
	h, _ := newUnitHandler(t, map[string]any{
		"phones":       []string{alice, bob, "+12015550102", "+12015550103", "+12015550104"},
		"ip_limit":     map[string]any{"count": 100000, "window": "10m"},
		"send_limit":   map[string]any{"count": 100000, "window": "10m"},
		"resend_after": "1ms",
	})
	h.flows.deliveries.sender = slowSender{}
	h.flows.deliveries.health = new(health)
	h.flows.deliveries.wait = sleepCtx
	allowed := []string{alice, bob, "+12015550102", "+12015550103", "+12015550104"}

	// send answers one /send, and with leaky set waits for an allowed number's delivery before
	// answering, as the gate did before it sent in the background: the positive control. The
	// visitors come from many addresses, as on a running site, each within its outbox share.
	var sends int
	send := func(phone string, leaky bool) (answer time.Duration, id string) {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
		sends++
		ip := fmt.Sprintf("198.%d.100.7", sends%64)
		start := time.Now()
		if err := serveAs(h, w, r, ip); err != nil || w.Code != http.StatusSeeOther {
			t.Fatalf("send: %d %v", w.Code, err)
		}
		c, _ := r.Cookie("caddy_otp_flow")
		id = c.Value[:flowIDLen]
		if leaky && h.flows.allow.phones.allows(phone) {
			unitSettledQuietly(t, h, id)
		}
		return time.Since(start), id
	}

	run := func(leaky bool) (answerA, answerR, courseA, courseR []time.Duration) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		inFlight := make(chan struct{}, 32) // a steady stream, as on a running site, within the outbox
		for i := 0; i < 2*samples; i++ {
			mayIn := i%2 == 0
			phone := allowed[i/2%len(allowed)]
			if !mayIn {
				phone = fmt.Sprintf("+1201555%04d", 2000+i/2%7000)
			}
			clock.Advance(2 * time.Millisecond) // past resend_after
			inFlight <- struct{}{}
			took, id := send(phone, leaky)
			start := time.Now().Add(-took)
			wg.Add(1)
			go func() { // how long the code page says "sending"
				defer wg.Done()
				defer func() { <-inFlight }()
				unitSettledQuietly(t, h, id)
				course := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				if mayIn {
					answerA, courseA = append(answerA, took), append(courseA, course)
				} else {
					answerR, courseR = append(answerR, took), append(courseR, course)
				}
			}()
		}
		wg.Wait()
		return
	}

	// Warm up: the simulated course is drawn from real deliveries, as on a running site.
	for i := 0; i < 64; i++ {
		clock.Advance(2 * time.Millisecond)
		_, id := send(allowed[i%len(allowed)], false)
		unitSettledQuietly(t, h, id)
	}
	crit := ksCritical(samples, samples)
	a, r, ca, cr := run(false)
	dAnswer, dCourse := ksD(a, r), ksD(ca, cr)
	t.Logf("the gate: %d allowed and %d refused numbers; /send answer D = %.4f, time until the code page leaves \"sending\" D = %.4f; cut-off at p = 0.01: %.4f",
		len(a), len(r), dAnswer, dCourse, crit)
	t.Logf("median answer: allowed %s, refused %s; median course: allowed %s, refused %s", median(a), median(r), median(ca), median(cr))
	la, lr, _, _ := run(true)
	dLeaky := ksD(la, lr)
	t.Logf("positive control (answer after the provider, as before): D = %.4f; median answer: allowed %s, refused %s", dLeaky, median(la), median(lr))
	if dLeaky <= crit {
		t.Errorf("the check cannot see a leak: the leaky variant's D %.4f is under %.4f", dLeaky, crit)
	}
	if dAnswer > crit {
		t.Errorf("/send's answer tells the numbers apart: D %.4f > %.4f", dAnswer, crit)
	}
	if dCourse > crit {
		t.Errorf("the delivery state's course tells the numbers apart: D %.4f > %.4f", dCourse, crit)
	}
}

// TestSendAnswerOfCaddyTellsNothing measures /send on a real Caddy, as an observer on the same
// host would: a provider that answers in 60 ms, sends paced 40 ms apart, numbers that may sign
// in alternating with numbers that may not, in both orders. A real send's work, begun while the
// answer is still on its way, shows as a slower answer for the numbers that may sign in.
func TestSendAnswerOfCaddyTellsNothing(t *testing.T) {
	const samples = 300
	allowed := []string{alice, bob, "+12015550102", "+12015550103", "+12015550104"}
	g := newGate(t)
	g.phones = strings.Join(allowed, " ")
	g.start("ip_limit 100000 10m\n\t\tsend_limit 100000 10m\n\t\tresend_after 1ms")
	g.sms.Delay(60 * time.Millisecond)
	for order, allowedFirst := range []bool{true, false} {
		var a, r []time.Duration
		for i := 0; i < 2*samples; i++ {
			mayIn := (i%2 == 0) == allowedFirst
			phone := allowed[i/2%len(allowed)]
			if !mayIn {
				phone = fmt.Sprintf("+1201555%04d", 2000+order*samples+i/2)
			}
			clock.Advance(2 * time.Millisecond) // past resend_after
			v := newVisitor(t)
			csrf := v.get("/.otp/login").csrf()
			start := time.Now()
			res := v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {phone}})
			took := time.Since(start)
			if res.status != http.StatusSeeOther {
				t.Fatalf("send %s: status %d", phone, res.status)
			}
			if mayIn {
				a = append(a, took)
			} else {
				r = append(r, took)
			}
			time.Sleep(40 * time.Millisecond)
		}
		d, crit := ksD(a, r), ksCritical(len(a), len(r))
		t.Logf("allowed first %v: /send answer D = %.4f, cut-off at p = 0.01: %.4f; median answer: allowed %s, refused %s",
			allowedFirst, d, crit, median(a), median(r))
		if d > crit {
			t.Errorf("allowed first %v: /send's answer tells the numbers apart: D %.4f > %.4f", allowedFirst, d, crit)
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

// unitSettledQuietly waits until the flow's delivery left "sending", polling every 200 µs.
func unitSettledQuietly(t *testing.T, h *Handler, id string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		f, err := h.flows.load(context.Background(), id)
		if err != nil || f == nil {
			t.Errorf("flow: %v", err)
			return
		}
		if state, _ := h.flows.deliveries.state(context.Background(), id, f); state != deliverySending {
			return
		}
	}
	t.Errorf("a delivery did not settle within 10s")
}
