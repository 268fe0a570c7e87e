package caddyotp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-otp/caddy-otp/templates"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "otp",
		Usage: "export-templates <dir>",
		Short: "Tools for the otp gate",
		Long: `Tools for the otp gate.

export-templates writes the embedded pages to <dir>, as a start for the otp
handler's "templates" option. It refuses to overwrite existing files.`,
		CobraFunc: func(cmd *cobra.Command) {
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
