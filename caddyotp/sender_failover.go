package caddyotp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Failover{})
}

// Failover sends through the first of its senders that accepts the message. A failure of the
// provider's own (5xx, 429, 401, 403, a timeout, a dropped connection) or a fault of the
// request (a field the provider refuses) moves on to the next sender; a refusal that belongs to
// the visitor's number (not a valid number, not a mobile, opted out) does not, since every
// provider would refuse it, and neither does a refusal of the number's region (geographic
// permissions, an anti-fraud control) unless region_failover is set. A sender that failed 3
// times in a row on its own is skipped for a minute, then given one trial message; calls and
// SMS have a breaker each. When every sender is skipped or failed, the skipped ones are tried
// all the same, in order: refusing unsent would fail the visitor for certain. Voice calls go
// through the senders that can call, on the same terms.
type Failover struct {
	// The senders, in the order they are tried: modules in http.handlers.otp.senders.
	SendersRaw []json.RawMessage `json:"senders,omitempty" caddy:"namespace=http.handlers.otp.senders inline_key=module"`
	// Move on to the next sender when one refuses the number's region (Twilio 21408). Off by
	// default: a provider's geographic permissions are an anti-fraud control of the operator's.
	RegionFailover bool `json:"region_failover,omitempty"`

	providers []*provider
	logger    *zap.Logger
	now       func() time.Time
}

// provider is one sender of a failover, with its name for logs and metrics and its breakers.
type provider struct {
	name      string
	sender    Sender
	sms, call breaker
}

// breaker is the provider's breaker for channel ("sms" or "call").
func (p *provider) breaker(channel string) *breaker {
	if channel == "call" {
		return &p.call
	}
	return &p.sms
}

// CaddyModule returns the Caddy module information.
func (Failover) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.failover",
		New: func() caddy.Module { return new(Failover) },
	}
}

// Provision loads the senders (each provisions and validates itself) and names them.
func (f *Failover) Provision(ctx caddy.Context) error {
	f.logger, f.now = ctx.Logger(), defaultClock
	if len(f.SendersRaw) < 2 {
		return errors.New("failover sender: give two senders or more, in the order to try them, e.g. failover { restcomm { ... } twilio { ... } }")
	}
	mods, err := ctx.LoadModule(f, "SendersRaw")
	if err != nil {
		return fmt.Errorf("failover sender: %v", err)
	}
	seen := map[string]int{}
	for _, m := range mods.([]any) {
		name := string(m.(caddy.Module).CaddyModule().ID.Name())
		if name == "failover" {
			return errors.New("failover sender: a failover inside a failover: list its senders in one failover instead")
		}
		seen[name]++
		if seen[name] > 1 {
			name = fmt.Sprintf("%s#%d", name, seen[name])
		}
		f.providers = append(f.providers, &provider{name: name, sender: m.(Sender)})
	}
	return nil
}

// Send sends through the first provider that accepts msg. Each is given the receipt URL made
// for its own name in the failover, and Sent names it so.
func (f *Failover) Send(ctx context.Context, msg Message) (Sent, error) {
	return f.try(ctx, "sms", func(p *provider) (Sent, error) {
		m := msg
		if msg.Receipts != nil {
			m.Receipts = func(string) string { return msg.Receipts(p.name) }
		}
		return p.sender.Send(ctx, m)
	}, func(p *provider) bool { return true })
}

// try runs do on each allowed provider in order (those for which usable says yes) until one
// accepts or refuses the number; then, as a last resort, on those the breaker skipped.
func (f *Failover) try(ctx context.Context, channel string, do func(*provider) (Sent, error), usable func(*provider) bool) (Sent, error) {
	var failures []string
	var skipped []int
	temporary, any := false, false
	// attempt hands the message to provider p; done says the answer is final.
	attempt := func(p *provider, trial bool) (sent Sent, done bool, err error) {
		b := p.breaker(channel)
		sent, err = f.hand(p, b, trial, do)
		sent.Provider = p.name
		if err == nil {
			b.settle(f.now(), answered, trial)
			metrics.providerSends.WithLabelValues(p.name, "sent").Inc()
			if len(failures) > 0 {
				f.logger.Info("sent through a later provider", zap.String("provider", p.name), zap.String("channel", channel),
					zap.String("id", sent.ID), zap.Strings("failed", failures))
			}
			return sent, true, nil
		}
		var se *SendError
		if !errors.As(err, &se) {
			se = &SendError{Provider: p.name, Fault: TemporaryFault, Detail: err.Error()}
		}
		switch {
		case se.Fault == NumberFault:
			b.settle(f.now(), answered, trial) // it answered: it works, whatever it thinks of this number
			metrics.providerSends.WithLabelValues(p.name, "refused_number").Inc()
			return sent, true, err
		case se.Fault == DestinationFault && !f.RegionFailover:
			b.settle(f.now(), answered, trial)
			metrics.providerSends.WithLabelValues(p.name, "refused_region").Inc()
			return sent, true, err
		}
		result := "failed_config"
		if providerTrouble(se) {
			b.settle(f.now(), troubled, trial)
		} else {
			b.settle(f.now(), answered, trial) // it answered; the fault is the request's, the next provider may not share it
		}
		if se.Fault == DestinationFault {
			result = "refused_region"
		}
		if se.Fault == TemporaryFault {
			result, temporary = "failed_temporary", true
		}
		metrics.providerSends.WithLabelValues(p.name, result).Inc()
		f.logger.Warn("provider failed, trying the next", zap.String("provider", p.name), zap.String("channel", channel),
			zap.Int("status", se.Status), zap.Bool("temporary", se.Fault == TemporaryFault), zap.String("detail", se.Detail))
		failures = append(failures, p.name+": "+se.Error())
		return sent, false, nil
	}
	for i, p := range f.providers {
		if !usable(p) {
			continue
		}
		any = true
		ok, trial := p.breaker(channel).allow(f.now())
		if !ok {
			metrics.providerSends.WithLabelValues(p.name, "skipped").Inc()
			skipped = append(skipped, i)
			continue
		}
		if sent, done, err := attempt(p, trial); done {
			return sent, err
		}
	}
	for _, i := range skipped { // every other one failed: the skipped ones, as a last resort
		if sent, done, err := attempt(f.providers[i], false); done {
			return sent, err
		}
	}
	if !any {
		return Sent{}, &SendError{Provider: "failover", Detail: "no sender of the failover can " + channel}
	}
	fault := ConfigFault
	if temporary {
		fault = TemporaryFault
	}
	return Sent{}, &SendError{Provider: "failover", Fault: fault, Detail: "every provider failed: " + strings.Join(failures, "; ")}
}

// hand runs do on p. A panic of the sender ends the try as the provider's trouble, so that a
// trial never stays under way, and goes on up to the delivery.
func (f *Failover) hand(p *provider, b *breaker, trial bool, do func(*provider) (Sent, error)) (Sent, error) {
	defer func() {
		if r := recover(); r != nil {
			b.settle(f.now(), troubled, trial)
			panic(r)
		}
	}()
	return do(p)
}

// VoiceEnabled says whether one of the senders can call.
func (f *Failover) VoiceEnabled() bool {
	for _, p := range f.providers {
		if voiceOn(p.sender) {
			return true
		}
	}
	return false
}

// Call places the call through the first sender that can call (and, on its failure, the next).
func (f *Failover) Call(ctx context.Context, to, script string) (Sent, error) {
	return f.try(ctx, "call", func(p *provider) (Sent, error) {
		return p.sender.(Caller).Call(ctx, to, script)
	}, func(p *provider) bool { return voiceOn(p.sender) })
}

// ReceiptsEnabled says whether one of the senders asks for receipts.
func (f *Failover) ReceiptsEnabled() bool {
	for _, p := range f.providers {
		if receiptsOn(p.sender) {
			return true
		}
	}
	return false
}

// ReadReceipt reads a receipt with the sender the failover named provider: the one that was
// handed the message, with its own key.
func (f *Failover) ReadReceipt(r *http.Request, provider, callback string) (Receipt, error) {
	for _, p := range f.providers {
		if p.name == provider && receiptsOn(p.sender) {
			return p.sender.(ReceiptReader).ReadReceipt(r, provider, callback)
		}
	}
	return Receipt{}, ErrForgedReceipt
}

// receiptsOn says whether s asks its provider for receipts.
func receiptsOn(s Sender) bool {
	rs, ok := s.(ReceiptReader)
	return ok && rs.ReceiptsEnabled()
}

// UnmarshalCaddyfile reads the failover sender's block: senders in the order to try them, each
// written as in its own `sender` line, without the word sender:
//
//	sender failover {
//	    region_failover        # move on when a sender refuses the number's region (off by default)
//	    restcomm {
//	        account_sid {env.RESTCOMM_ACCOUNT_SID}
//	        ...
//	    }
//	    twilio {
//	        account_sid {env.TWILIO_ACCOUNT_SID}
//	        ...
//	    }
//	}
func (f *Failover) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		if name == "region_failover" {
			if d.NextArg() {
				return d.ArgErr()
			}
			f.RegionFailover = true
			continue
		}
		if name == "failover" {
			return d.Errf("failover sender: a failover inside a failover: list its senders in one failover instead")
		}
		if _, err := caddy.GetModule("http.handlers.otp.senders." + name); err != nil {
			known := []string{"region_failover"}
			for _, m := range caddy.GetModules("http.handlers.otp.senders") {
				if n := m.ID.Name(); n != "failover" && !strings.HasPrefix(n, "test_") {
					known = append(known, n)
				}
			}
			return d.Errf("failover sender: unknown sender %q%s", name, suggestion(name, known))
		}
		unm, err := caddyfile.UnmarshalModule(d, "http.handlers.otp.senders."+name)
		if err != nil {
			return err
		}
		f.SendersRaw = append(f.SendersRaw, caddyconfig.JSONModuleObject(unm, "module", name, nil))
	}
	if len(f.SendersRaw) < 2 {
		return d.Errf("failover sender: give two senders or more, in the order to try them, e.g. failover { restcomm { ... } twilio { ... } }")
	}
	return nil
}

var (
	_ Sender                = (*Failover)(nil)
	_ Caller                = (*Failover)(nil)
	_ ReceiptReader         = (*Failover)(nil)
	_ caddy.Provisioner     = (*Failover)(nil)
	_ caddyfile.Unmarshaler = (*Failover)(nil)
)
