package caddyotp

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(LogSender{})
}

// LogSender writes each message, code included, to Caddy's log instead of sending it.
// It exists for development and demos only: never use it on a site that strangers can reach.
type LogSender struct {
	logger *zap.Logger
	out    io.Writer // where the code line goes: the terminal Caddy runs in
}

// CaddyModule returns the Caddy module information.
func (LogSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.log",
		New: func() caddy.Module { return new(LogSender) },
	}
}

// Provision warns, loudly, that codes will be written to the log.
func (s *LogSender) Provision(ctx caddy.Context) error {
	s.logger, s.out = ctx.Logger(), os.Stderr
	s.logger.Warn("DEVELOPMENT ONLY: the otp log sender writes sign-in codes to this log instead of sending SMS; anyone who reads the log can sign in")
	return nil
}

// Send logs the message (the phone masked, the body, which holds the code, not), and writes a
// line that starts with the code to the terminal, where a developer trying the gate looks.
func (s *LogSender) Send(_ context.Context, msg Message) (Sent, error) {
	s.logger.Warn("DEVELOPMENT ONLY: SMS not sent, logged instead",
		zap.String("to", maskPhone(msg.To)),
		zap.String("body", msg.Body))
	if msg.Code != "" {
		fmt.Fprintf(s.out, "%s  is the sign-in code for %s (otp log sender: development only)\n", msg.Code, maskPhone(msg.To))
	}
	return Sent{Provider: "log"}, nil
}

// Withheld says in the terminal that no code went to a number that may not sign in: the demo's
// user is the operator, who would otherwise wait for a code that never comes.
func (s *LogSender) Withheld(to, channel, why string) {
	what := "code sent"
	if channel == "call" {
		what = "call placed"
	}
	fmt.Fprintf(s.out, "%s gets no code here (%s): no %s (otp log sender: development only)\n", maskPhone(to), why, what)
}

// UnmarshalCaddyfile reads the log sender, which takes no options:
//
//	sender log
func (s *LogSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Errf("log sender takes no options")
	}
	return nil
}

var (
	_ caddyfile.Unmarshaler = (*LogSender)(nil)
	_ Sender                = (*LogSender)(nil)
	_ withholdingTold       = (*LogSender)(nil)
	_ caddy.Provisioner     = (*LogSender)(nil)
)
