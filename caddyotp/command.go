package caddyotp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-otp/caddy-otp/templates"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "otp",
		Usage: "export-templates <dir> | send-test [--config <file>] <phone> | revoke [--address <addr>] <phone> | --user <name>",
		Short: "Tools for the otp gate",
		Long: `Tools for the otp gate.

export-templates writes the embedded pages to <dir>, as a start for the otp
handler's "templates" option. It refuses to overwrite existing files.

send-test sends one test SMS (no code in it) to <phone> through the sender of
the first otp handler in the config (--config, else ./Caddyfile, as caddy run
finds it), and prints the provider's answer: a way to check credentials and the
sender number before going live. Through a failover sender it says which
provider answered.

A phone number may be typed with spaces, unquoted: +1 201 555 0123.

revoke ends every session and trusted browser of a phone, or of a user, on every
otp gate of the running Caddy (and, through a shared store, on every instance),
and removes their passkeys.
It calls the admin API (POST /otp/revoke), found as caddy reload finds it: the
--address flag, else the admin address of --config, else the default.`,
		CobraFunc: func(cmd *cobra.Command) {
			send := &cobra.Command{
				Use:   "send-test [--config <file>] [--adapter <name>] <phone>",
				Short: "Send a test SMS through the configured sender",
				RunE: func(cmd *cobra.Command, args []string) error {
					if len(args) == 0 {
						return errors.New("give the phone number to send the test SMS to, e.g. +12015550123")
					}
					config, _ := cmd.Flags().GetString("config")
					adapter, _ := cmd.Flags().GetString("adapter")
					return sendTest(cmd.Context(), cmd.OutOrStdout(), config, adapter, typedPhone(args))
				},
			}
			send.Flags().StringP("config", "c", "", "the Caddy config file (Caddyfile or JSON); default: ./Caddyfile")
			send.Flags().StringP("adapter", "a", "", "the config adapter, if the file name does not tell")
			cmd.AddCommand(send)
			revoke := &cobra.Command{
				Use:   "revoke [--address <addr>] [--config <file> [--adapter <name>]] <phone> | --user <name>",
				Short: "End every session of a phone or a user, on every instance",
				RunE: func(cmd *cobra.Command, args []string) error {
					address, _ := cmd.Flags().GetString("address")
					config, _ := cmd.Flags().GetString("config")
					adapter, _ := cmd.Flags().GetString("adapter")
					user, _ := cmd.Flags().GetString("user")
					var req revokeRequest
					switch {
					case user != "" && len(args) == 0:
						req.User = user
					case user == "" && len(args) > 0:
						req.Phone = typedPhone(args)
					case user == "":
						return errors.New("give the phone number whose sessions to end, e.g. +12015550123, or --user NAME")
					default:
						return errors.New("give a phone number, or --user NAME, not both")
					}
					return revokeCommand(cmd.OutOrStdout(), address, config, adapter, req)
				},
			}
			revoke.Flags().String("address", "", "the admin API's address (default: from --config, else Caddy's default)")
			revoke.Flags().StringP("config", "c", "", "the Caddy config file whose admin address to use")
			revoke.Flags().StringP("adapter", "a", "", "the config adapter, if the file name does not tell")
			revoke.Flags().String("user", "", "revoke a first-factor user's sessions instead of a phone's")
			cmd.AddCommand(revoke)
			cmd.AddCommand(&cobra.Command{
				Use:   "export-templates <dir>",
				Short: "Write the embedded pages to a directory",
				Args:  cobra.ExactArgs(1),
				RunE: func(cmd *cobra.Command, args []string) error {
					if err := exportTemplates(args[0]); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "wrote the otp pages to %s; point the otp handler's `templates` at it\n", args[0])
					return nil
				},
			})
		},
	})
}

// sendTest loads the config, provisions the sender of its first otp handler (placeholders such
// as {env.RESTCOMM_AUTH_TOKEN} resolved as at run time) and sends one message to phone.
func sendTest(ctx context.Context, out io.Writer, configFile, adapter, phone string) error {
	to, _, err := normalizePhone(phone, "")
	if err != nil {
		return fmt.Errorf("%q is not a phone number in E.164, e.g. +12015550123", phone)
	}
	cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return err
	}
	if configFile == "" {
		configFile = "./Caddyfile"
	}
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		return err
	}
	handler := findOTPHandler(doc)
	if handler == nil {
		return fmt.Errorf("%s has no otp handler", configFile)
	}
	fields, _ := handler["sender"].(map[string]any)
	name, _ := fields["module"].(string)
	if name == "" {
		return fmt.Errorf("the otp handler in %s has no sender", configFile)
	}
	delete(fields, "module") // the inline key names the module; it is not one of its fields
	raw, _ := json.Marshal(fields)
	var sender Sender
	if name == "log" {
		// Its development-only warning, without the stack trace Caddy's default logger adds.
		logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(os.Stderr), zap.InfoLevel))
		logger.Warn("the log sender writes messages to the log instead of sending them: development only")
		sender = &LogSender{logger: logger, out: out}
	} else {
		cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
		defer cancel()
		mod, err := cctx.LoadModuleByID("http.handlers.otp.senders."+name, raw)
		if err != nil {
			return err
		}
		sender = mod.(Sender)
	}
	msg := Message{To: to, Body: "Test message from caddy-otp: the " + name + " sender works."}
	sent, err := sender.Send(ctx, msg)
	provider := name
	if sent.Provider != "" && sent.Provider != name { // a failover: say which of its senders answered
		provider = name + ", provider " + sent.Provider
	}
	id := sent.ID
	if err != nil {
		return fmt.Errorf("not sent through %s: %w", provider, err)
	}
	if id == "" {
		id = "(the provider gave none)"
	}
	fmt.Fprintf(out, "sent to %s through %s: accepted, message id %s\n", maskPhone(to), provider, id)
	return nil
}

// findOTPHandler returns the first {"handler": "otp", ...} object in a config, depth first.
func findOTPHandler(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "otp" {
			return v
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // a stable choice among several sites
		for _, k := range keys {
			if h := findOTPHandler(v[k]); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range v {
			if h := findOTPHandler(e); h != nil {
				return h
			}
		}
	}
	return nil
}

// exportTemplates writes every embedded page to dir, creating it; it overwrites nothing.
func exportTemplates(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names, err := fs.Glob(templates.FS, "*.html")
	if err != nil {
		return err
	}
	for _, name := range names {
		b, err := fs.ReadFile(templates.FS, name)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists already; export into an empty directory", filepath.Join(dir, name))
		} else if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// revokeCommand asks the running Caddy's admin API to revoke a phone's or a user's sessions, and
// says what it did, or why not.
func revokeCommand(out io.Writer, address, config, adapter string, req revokeRequest) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return fmt.Errorf("finding the admin API: %v", err)
	}
	body, _ := json.Marshal(req)
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/otp/revoke", nil, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("revoking through the admin API at %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var answer struct {
		Revoked  string `json:"revoked"`
		Records  int    `json:"records"`
		Passkeys int    `json:"passkeys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("the admin API at %s answered %s, not JSON", addr, resp.Status)
	}
	fmt.Fprintf(out, "revoked every session and trusted browser of %s (%d record(s) written) and removed %d passkey(s)\n", answer.Revoked, answer.Records, answer.Passkeys)
	return nil
}

// typedPhone is a phone number as the command line split it: "+1 201 555 0123" unquoted is four
// arguments, and one number.
func typedPhone(args []string) string { return strings.Join(args, " ") }
