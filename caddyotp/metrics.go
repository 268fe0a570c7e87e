package caddyotp

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are made once for the process and registered in Caddy's registry at every Provision
// (each config has its own registry). Labels take a handful of fixed values: never a phone, an
// IP or anything else a visitor chooses.
var metrics = struct {
	smsSent        *prometheus.CounterVec
	calls          *prometheus.CounterVec
	verifications  *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	sessions       prometheus.Counter
	revoked        prometheus.Counter
	storeErrors    prometheus.Counter
	senderDuration prometheus.Histogram
	providerSends  *prometheus.CounterVec
	receipts       *prometheus.CounterVec
	pumping        *prometheus.CounterVec
	passkeys       *prometheus.CounterVec
}{
	smsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "sms_sent_total",
		Help: "Codes issued, by result: sent; not_allowed (a number that may not sign in: no SMS); failed_temporary and failed_permanent (the provider refused or failed).",
	}, []string{"result"}),
	calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "voice_calls_total",
		Help: "Codes issued by voice call, by result, as for caddy_otp_sms_sent_total.",
	}, []string{"result"}),
	verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "verifications_total",
		Help: "Codes checked, by result: accepted, wrong, expired, exhausted (max_attempts reached).",
	}, []string{"result"}),
	rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "rate_limited_total",
		Help: "Requests refused with 429, by limit: ip, send, site, lockout, resend.",
	}, []string{"limit"}),
	sessions: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "sessions_issued_total",
		Help: "Sessions issued after a right code.",
	}),
	revoked: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "sessions_revoked_total",
		Help: "Sessions signed out.",
	}),
	storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "store_errors_total",
		Help: "Requests refused with 503 because the store could not answer.",
	}),
	senderDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "sender_duration_seconds",
		Help:    "How long the SMS provider took to accept or refuse a message.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10},
	}),
	providerSends: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "provider_sends_total",
		Help: "Sends through each provider of a failover sender, by provider (its module name, with #N when one appears twice) and result: sent; refused_number (the visitor's number: no other provider is tried); failed_temporary and failed_config (the next provider is tried); skipped (its circuit is open after 3 failures in a row).",
	}, []string{"provider", "result"}),
	receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "receipts_total",
		Help: "Delivery receipts posted to P/receipt/, by result: accepted (the delivery state moved on), unchanged (repeated, late or out of order), unknown (no live code for the token), bad_signature (refused with 403).",
	}, []string{"result"}),
	pumping: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "pumping_total",
		Help: "The pumping shield's work, by country (ISO 3166 region of the number) and action: blocked (a code held back: no SMS or call), would_block (monitor: sent, but the shield would have held it back), quarantined (a prefix reached prefix_limit).",
	}, []string{"country", "action"}),
	passkeys: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "otp", Name: "passkeys_total",
		Help: "Passkeys, by event: created (after a code), used (a sign-in with no SMS), removed (by the visitor or an operator's revocation), refused (a ceremony's answer that was not accepted: a sign-in, or a new passkey).",
	}, []string{"event"}),
}

// registerMetrics adds the collectors to a config's registry; a second handler in the same
// config finds them there already, which is fine.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.smsSent, metrics.calls, metrics.verifications, metrics.rateLimited,
		metrics.sessions, metrics.revoked, metrics.storeErrors, metrics.senderDuration, metrics.providerSends, metrics.receipts, metrics.pumping, metrics.passkeys} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
