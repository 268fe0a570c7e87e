//go:build integration

package caddyotp

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// startShieldedInstance runs instance i of a site that texts anyone in GB and the US, on Redis
// r, behind a trusted proxy, with Caddy's storage (and so its key) in storage.
func startShieldedInstance(t *testing.T, i int, storage string, r redisDeployment, sms *restcommtest.Server, shield string) *instance {
	t.Helper()
	port, admin := freePort(t), fmt.Sprintf("localhost:%d", freePort(t))
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	servers {
		trusted_proxies static 127.0.0.0/8
	}
}
http://localhost:%d {
	otp {
		%s
		public_url %s
		phones *
		regions GB US
		store redis {
			%s
		}
		%s
	}
	respond "instance %d"
}
`, admin, storage, port, senderBlock(sms, sms.AuthToken), clusterOrigin, r.storeLines(), shield, i)
	return &instance{base: fmt.Sprintf("http://localhost:%d", port), admin: admin, cfg: cfg, port: port, caddyProcess: runCaddy(t, cfg, port)}
}

// TestQuarantineOnOneInstanceHoldsOnTheOther: a prefix pumped through instance A is
// quarantined at once on instance B of the same Redis, and on a Redis Cluster; B's admin API
// lists it and lifts it for both.
func TestQuarantineOnOneInstanceHoldsOnTheOther(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		storage := t.TempDir()
		shield := "pumping_shield {\n\t\t\tprefix_limit 5\n\t\t}"
		a, b := startShieldedInstance(t, 0, storage, r, sms, shield), startShieldedInstance(t, 1, storage, r, sms, shield)
		on := func(in *instance, n, from0 int) pumped {
			var p pumped
			for i := 0; i < n; i++ {
				v := from(t, in.base, fmt.Sprintf("203.%d.%d.9", (from0+i)/250, (from0+i)%250))
				v.origin = clusterOrigin
				_, res := v.startSignIn("/", fmt.Sprintf("%s%04d", ukRange, from0+i))
				wantStatus(t, "a pumped code", res, http.StatusSeeOther)
				p.visitors = append(p.visitors, v)
			}
			return p
		}
		on(a, 8, 0).settled()
		if n := sentTo(sms, ukRange); n != 5 {
			t.Fatalf("%d SMS through A, want prefix_limit's 5", n)
		}
		on(b, 5, 100).settled() // at once: the hold is in the store, no instance caches it
		if n := sentTo(sms, ukRange); n != 5 {
			t.Errorf("%d SMS after 5 more codes through B, want still 5: the quarantine made on A holds on B", n)
		}

		list := adminAt(t, b, http.MethodGet, "/otp/pumping")
		if !strings.Contains(list, `"prefix":"`+ukRange+`"`) {
			t.Errorf("B's GET /otp/pumping: %s, want the range", list)
		}
		if out := adminAt(t, b, http.MethodDelete, "/otp/pumping/"+ukRange); !strings.Contains(out, `"was_quarantined":true`) {
			t.Fatalf("B's DELETE: %s", out)
		}
		on(a, 1, 200).settled()
		if n := sentTo(sms, ukRange); n != 6 {
			t.Errorf("%d SMS after the lift through B and a code through A, want 6", n)
		}
	})
}

// adminAt calls instance in's admin API.
func adminAt(t *testing.T, in *instance, method, path string) string {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+in.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b)
}
