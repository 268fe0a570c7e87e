package caddyotp

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBreakerStates walks the circuit breaker through its states: closed, open for
// breakerOpen after breakerFailures troubles in a row, one trial once that is over, and closed
// again after an answer. Each step is a try at a time: allowed or not, as which kind, and how it
// ended.
func TestBreakerStates(t *testing.T) {
	type step struct {
		at      time.Duration // since the start
		allowed bool          // allow's answer
		trial   bool          // and whether it is the trial
		end     attemptEnd    // how the try ended, when allowed
	}
	open := func(at time.Duration) step { return step{at: at} }
	tried := func(at time.Duration, trial bool, end attemptEnd) step {
		return step{at: at, allowed: true, trial: trial, end: end}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"answers keep it closed", []step{tried(0, false, answered), tried(1, false, answered), tried(2, false, answered)}},
		{"troubles below the count keep it closed", []step{tried(0, false, troubled), tried(1, false, troubled), tried(2, false, answered), tried(3, false, troubled), tried(4, false, troubled), tried(5, false, answered)}},
		{"three troubles in a row open it for a minute", []step{tried(0, false, troubled), tried(1, false, troubled), tried(2, false, troubled), open(3), open(2 + breakerOpen - 1), tried(2+breakerOpen, true, troubled)}},
		{"after the minute one trial; an answer closes it", []step{tried(0, false, troubled), tried(0, false, troubled), tried(0, false, troubled), open(30 * time.Second), tried(breakerOpen, true, answered), tried(breakerOpen, false, answered)}},
		{"a failed trial opens it for another minute", []step{tried(0, false, troubled), tried(0, false, troubled), tried(0, false, troubled), tried(breakerOpen, true, troubled), open(breakerOpen + time.Second), open(2*breakerOpen - time.Second), tried(2*breakerOpen, true, answered), tried(2*breakerOpen, false, troubled)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b breaker
			start := time.Unix(1_900_000_000, 0)
			for i, s := range tc.steps {
				now := start.Add(s.at)
				ok, trial := b.allow(now)
				if ok != s.allowed || trial != s.trial {
					t.Fatalf("step %d at %v: allow = %v, trial %v; want %v, %v", i, s.at, ok, trial, s.allowed, s.trial)
				}
				if ok {
					b.settle(now, s.end, trial)
				}
			}
		})
	}
}

// TestBreakerGivesOneTrialAtATime: while the trial is under way, every other try is refused,
// however long it takes; its end, whatever it is, lets the next try in.
func TestBreakerGivesOneTrialAtATime(t *testing.T) {
	var b breaker
	now := time.Unix(1_900_000_000, 0)
	for i := 0; i < breakerFailures; i++ {
		b.settle(now, troubled, false)
	}
	later := now.Add(breakerOpen)
	if ok, trial := b.allow(later); !ok || !trial {
		t.Fatalf("after breakerOpen: allow %v trial %v, want the trial", ok, trial)
	}
	for _, d := range []time.Duration{0, time.Second, time.Hour} {
		if ok, _ := b.allow(later.Add(d)); ok {
			t.Fatalf("a second try %v into the trial was allowed", d)
		}
	}
	b.settle(later, answered, true)
	if ok, trial := b.allow(later); !ok || trial {
		t.Fatalf("after the trial answered: allow %v trial %v, want closed", ok, trial)
	}
}

// TestProviderTroubleIsTheProvidersOwn: which errors count against a breaker.
func TestProviderTroubleIsTheProvidersOwn(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&SendError{Fault: TemporaryFault, Status: 503}, true},
		{&SendError{Fault: TemporaryFault}, true}, // no answer: a timeout, a dropped connection
		{&SendError{Fault: ConfigFault, Status: 401}, true},
		{&SendError{Fault: ConfigFault, Status: 403}, true},
		{&SendError{Fault: ConfigFault, Status: 400}, false}, // the request's: the next provider may not share it
		{&SendError{Fault: NumberFault, Status: 400, Reason: "invalid"}, false},
		{&SendError{Fault: NumberFault, Status: 403}, false}, // a number refusal whatever its status
		{&SendError{Fault: DestinationFault, Status: 400}, false},
		{&SendError{Fault: DestinationFault, Status: 403}, false},
		{errors.New("a sender's error that says nothing more"), true},
		// Providers that refuse inside a 200: the account's refusals count, a field's do not.
		{vonageError("9", "Partner quota exceeded"), true},
		{vonageError("4", "Bad Credentials"), true},
		{vonageError("15", "Invalid sender address"), false},
		{infobipRejection(infobipStatus{GroupID: 5, ID: 12, Name: "REJECTED_NOT_ENOUGH_CREDITS"}), true},
		{infobipRejection(infobipStatus{GroupID: 5, ID: 11, Name: "REJECTED_SENDER"}), false},
		{fmt.Errorf("wrapped: %w", &SendError{Fault: NumberFault}), false},
	} {
		if got := providerTrouble(tc.err); got != tc.want {
			t.Errorf("providerTrouble(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
