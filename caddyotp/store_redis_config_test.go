package caddyotp

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestClusterRefusesAKeyPrefixWithHashTags: the store sets its own hash tags; a prefix with
// braces (an empty "{}" cancels them) would split a script's keys across slots.
func TestClusterRefusesAKeyPrefixWithHashTags(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, prefix := range []string{"site{}:", "{site}:", "site}"} {
		err := (&RedisStore{Addresses: []string{"127.0.0.1:7000"}, KeyPrefix: prefix}).Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), "key_prefix") {
			t.Errorf("key_prefix %q on a cluster was accepted: %v", prefix, err)
		}
	}
}
