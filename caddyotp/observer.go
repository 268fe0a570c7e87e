package caddyotp

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"
)

// observer is how the gate's parts report what happened: Prometheus metrics, Caddy events and
// log lines, from one place. The handler makes it at Provision and gives it to each part, which
// call it from a request or from background work (a delivery that ends after the page was
// answered) alike. No report carries a code, a token or, unless log_phones, a full number.
type observer struct {
	logger    *zap.Logger
	logPhones bool
	path      string
	events    *caddyevents.App // nil when Caddy has no events app
	ctx       caddy.Context    // the gate's, which names it as the events' origin

	strictWarned atomic.Bool // the advice to set trusted_proxies_strict was logged
}

// The events the gate emits, for an operator's `events { on otp_... }` handlers.
const (
	eventCodeSent       = "otp_code_sent"       // a delivery finished: sent, refused by the provider, or simulated
	eventVerified       = "otp_verified"        // a right code signed a visitor in
	eventFailed         = "otp_failed"          // a code was wrong, expired or exhausted
	eventLocked         = "otp_locked"          // an address (or a phone) was locked out
	eventSessionRevoked = "otp_session_revoked" // a sign-out
	eventPumpingBlocked = "otp_pumping_blocked" // the pumping shield quarantined a number prefix
	eventPasskeyCreated = "otp_passkey_created" // a visitor made a passkey after a code
	eventPasskeyUsed    = "otp_passkey_used"    // a passkey signed a visitor in, with no SMS
	eventPasskeyRemoved = "otp_passkey_removed" // a passkey was removed (sign-out page, or revoked)
)

// phone is a phone for the log and events: masked, unless log_phones is on.
func (o *observer) phone(p string) string {
	if o.logPhones {
		return p
	}
	return maskPhone(p)
}

// subject names a session's subject: "user" and the name, or "phone" and the phone as phone().
func (o *observer) subject(s string) (key, value string) {
	if user, _, ok := subjectUser(s); ok {
		return "user", user
	}
	return "phone", o.phone(s)
}

// emit sends an event with the gate's path and the fields given (pairs of name and value).
// Event handlers run synchronously, so no event is emitted inside the answer to /send.
func (o *observer) emit(name string, fields ...any) {
	if o.events == nil {
		return
	}
	data := map[string]any{"path": o.path}
	for i := 0; i+1 < len(fields); i += 2 {
		data[fields[i].(string)] = fields[i+1]
	}
	o.events.Emit(o.ctx, name, data)
}

// delivered reports a finished delivery: what the provider said (or, for a number that may not
// sign in, what the simulated course ended in).
func (o *observer) delivered(d delivery, sent Sent, state string, took time.Duration, err error) {
	results := metrics.smsSent
	if d.channel == "call" {
		results = metrics.calls
	}
	phone := o.phone(d.flow.Phone)
	switch {
	case !d.flow.Allowed:
		results.WithLabelValues("not_allowed").Inc()
		o.logger.Info("code sent", zap.String("phone", phone), zap.Bool("sms_sent", false), zap.String("channel", d.channel),
			zap.String("delivery", state), zap.String("client_ip", d.client))
	case err == nil:
		metrics.senderDuration.Observe(took.Seconds())
		results.WithLabelValues("sent").Inc()
		msg, idField := "code sent", "message_id"
		if d.channel == "call" {
			msg, idField = "call placed", "call_id"
		}
		fields := []zap.Field{zap.String("phone", phone), zap.Bool("sms_sent", d.channel == "sms"), zap.String("channel", d.channel),
			zap.String(idField, sent.ID), zap.String("delivery", state), zap.String("client_ip", d.client)}
		if sent.Provider != "" {
			fields = append(fields, zap.String("provider", sent.Provider))
		}
		o.logger.Info(msg, fields...)
	default:
		metrics.senderDuration.Observe(took.Seconds())
		var se *SendError
		if !errors.As(err, &se) {
			se = &SendError{Provider: "sender", Fault: TemporaryFault, Detail: err.Error()}
		}
		label, class := "failed_permanent", se.Fault
		if class == DestinationFault { // the operator's to fix, as any fault of the configuration
			class = ConfigFault
		}
		if se.Fault == TemporaryFault {
			label = "failed_temporary"
		}
		results.WithLabelValues(label).Inc()
		msg, level := "sender error", o.logger.Error
		if se.Fault == NumberFault { // not the site's fault: the visitor is told, the operator need not act
			msg, level = "number refused by the provider", o.logger.Info
		}
		provider := sent.Provider
		if se.Provider == "failover" || provider == "" {
			provider = se.Provider
		}
		level(msg, zap.String("phone", phone), zap.String("channel", d.channel), zap.String("provider", provider),
			zap.Int("status", se.Status), zap.Stringer("class", class), zap.Bool("temporary", se.Fault == TemporaryFault),
			zap.String("reason", se.Reason), zap.String("detail", se.Detail), zap.String("delivery", state))
	}
	o.emit(eventCodeSent, "phone", phone, "channel", d.channel, "delivery", state, "client_ip", d.client)
}

// receipt reports a delivery receipt: what it did (a result of caddy_otp_receipts_total), the
// state it made, and the provider's reason for a failure (Receipt.Reason). A failure with its
// reason is logged at info, and a bad signature at warn with what to check, for the operator;
// the rest at debug. Nothing else of the receipt's body (which may hold the code) is logged.
func (o *observer) receipt(result, provider, state, reason string) {
	metrics.receipts.WithLabelValues(result).Inc()
	fields := []zap.Field{zap.String("result", result), zap.String("provider", provider), zap.String("delivery", state)}
	switch {
	case result == "bad_signature": // its token was the gate's: the provider's key and the sender's differ, or the URL leaked
		o.logger.Warn("delivery receipt", append(fields, zap.String("fix", "a receipt to a URL the gate gave did not verify: check that the sender's key (signing_key, signature_secret and signature_method, auth_token, public_key) is the provider's"))...)
		return
	case state == deliveryFailed && reason != "":
		o.logger.Info("delivery receipt", append(fields, zap.String("reason", scrubbed(reason)))...)
		return
	}
	o.logger.Debug("delivery receipt", fields...)
}

// codeFailed reports a code that did not sign the visitor in.
func (o *observer) codeFailed(phone string, v verdict, left int, client string) {
	metrics.verifications.WithLabelValues(v.String()).Inc()
	o.logger.Info("code failed", zap.String("phone", o.phone(phone)), zap.String("reason", v.String()), zap.Int("attempts_left", left), zap.String("client_ip", client))
	o.emit(eventFailed, "phone", o.phone(phone), "reason", v.String(), "attempts_left", left, "client_ip", client)
}

// verified reports a right code, and the session it made.
func (o *observer) verified(phone, client string) {
	metrics.verifications.WithLabelValues(codeAccepted.String()).Inc()
	metrics.sessions.Inc()
	o.logger.Info("code verified", zap.String("phone", o.phone(phone)), zap.String("client_ip", client))
	o.emit(eventVerified, "phone", o.phone(phone), "client_ip", client)
}

// trustedBrowser reports a session made from a trusted-browser cookie, without an SMS.
func (o *observer) trustedBrowser(subject, client string) {
	metrics.sessions.Inc()
	key, value := o.subject(subject)
	o.logger.Info("signed in by a trusted browser", zap.String(key, value), zap.String("client_ip", client))
	o.emit(eventVerified, key, value, "client_ip", client, "trusted_browser", true)
}

// locked reports a lockout: of an address for a phone, or (client "") of the phone itself.
func (o *observer) locked(phone, client string, failures int, d time.Duration) {
	if client == "" {
		o.logger.Warn("phone locked", zap.String("phone", o.phone(phone)), zap.Int("failures", failures), zap.Duration("for", d))
	} else {
		o.logger.Warn("address locked out for a phone", zap.String("phone", o.phone(phone)), zap.String("client_ip", client),
			zap.Int("failures", failures), zap.Duration("for", d))
	}
	o.emit(eventLocked, "phone", o.phone(phone), "client_ip", client, "failures", failures, "for", d.String())
}

// revoked reports a sign-out.
func (o *observer) revoked(subject string, everywhere bool, client string) {
	metrics.revoked.Inc()
	key, value := o.subject(subject)
	o.logger.Info("session revoked", zap.String(key, value), zap.Bool("everywhere", everywhere))
	o.emit(eventSessionRevoked, key, value, "everywhere", everywhere, "client_ip", client)
}

// passkey reports a passkey made, used (a session made with it) or removed.
func (o *observer) passkey(event, subject, client string) {
	metrics.passkeys.WithLabelValues(event).Inc()
	if event == "used" {
		metrics.sessions.Inc()
	}
	key, value := o.subject(subject)
	o.logger.Info("passkey "+event, zap.String(key, value), zap.String("client_ip", client))
	o.emit(map[string]string{"created": eventPasskeyCreated, "used": eventPasskeyUsed, "removed": eventPasskeyRemoved}[event],
		key, value, "client_ip", client)
}

// passkeyRefused reports a passkey sign-in that was refused, and why (for the operator only:
// the visitor is told nothing of it).
func (o *observer) passkeyRefused(why, client string) {
	metrics.passkeys.WithLabelValues("refused").Inc()
	o.logger.Info("passkey refused", zap.String("reason", why), zap.String("client_ip", client))
}

// limited reports a request refused by a limit.
func (o *observer) limited(limit string, wait time.Duration, client string) {
	metrics.rateLimited.WithLabelValues(limit).Inc()
	o.logger.Info("rate limited", zap.String("limit", limit), zap.Duration("retry_after", wait), zap.String("client_ip", client))
}

// storeFailed reports a store that could not answer: the gate fails closed.
func (o *observer) storeFailed(err error) {
	metrics.storeErrors.Inc()
	o.logger.Error("store error", zap.Error(err))
}

// panicked reports a sender's panic, with where it happened.
func (o *observer) panicked(r any) {
	o.logger.Error("sender panicked", zap.Any("panic", r), zap.Stack("stack"))
}

// busy reports a /send refused because every slot of the outbox was taken.
func (o *observer) busy() {
	o.logger.Warn("every sender is busy", zap.Int("in_flight", outboxSize))
}

// noPhone reports a first-factor user with no phone bound.
func (o *observer) noPhone(user string) {
	o.logger.Info("no phone for user", zap.String("user", user))
}

// notStrict logs, once, that the server trusts proxies without trusted_proxies_strict.
func (o *observer) notStrict(headers []string) {
	if o.strictWarned.Swap(true) {
		return
	}
	o.logger.Error("trusted_proxies is set without trusted_proxies_strict: a client can write its own address into " +
		strings.Join(headers, ", ") + ", so the otp gate counts the rightmost entry, the address the nearest " +
		"proxy saw; set trusted_proxies_strict in the server's options")
}
