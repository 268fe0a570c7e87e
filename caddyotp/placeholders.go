package caddyotp

import (
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// envPlaceholder finds the {env.VAR} placeholders of a configured value.
var envPlaceholder = regexp.MustCompile(`\{env\.([^{}]+)\}`)

// resolved is a configured value with its placeholders resolved, as a sender's Provision does,
// and the {env.VAR}s in it that are not set, so that an empty value can name them.
func resolved(repl *caddy.Replacer, s string) (value string, unset []string) {
	for _, m := range envPlaceholder.FindAllStringSubmatch(s, -1) {
		if _, ok := os.LookupEnv(m[1]); !ok {
			unset = append(unset, m[1])
		}
	}
	return strings.TrimSpace(repl.ReplaceKnown(s, "")), unset
}

// emptyBecause says why a field came out empty: the variables it names that are not set in
// Caddy's environment, or, if it names none, how to give it.
func emptyBecause(unset []string) string {
	if len(unset) == 0 {
		return " is empty: give it, or take it from the environment, e.g. {env.NAME}"
	}
	return " is empty: " + strings.Join(unset, ", ") + " is not set in Caddy's environment (as {env." + unset[0] + "} asks)"
}
