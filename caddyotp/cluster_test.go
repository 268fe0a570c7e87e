//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/redis/go-redis/v9"
)

// instance is one Caddy process of a site served by several.
type instance struct {
	base  string
	admin string // its admin API's address
	cfg   string
	port  int
	*caddyProcess
}

// restart stops the instance's process and starts a new one with the same config: a fresh
// process, with nothing in memory.
func (in *instance) restart(t *testing.T) {
	t.Helper()
	in.stop()
	in.caddyProcess = runCaddy(t, in.cfg, in.port)
}

// racers are phones that may sign in on the instances, one for each round of a race.
var racers = []string{"+12015550161", "+12015550162", "+12015550163", "+12015550164", "+12015550165"}

// startInstances runs n Caddy processes of this repository's build, each on its own port, all
// with one Redis store and one storage directory (so one generated signing key).
func startInstances(t *testing.T, n int, r redisDeployment, sms *restcommtest.Server, extra ...string) []*instance {
	t.Helper()
	storage := t.TempDir()
	var all []*instance
	for i := 0; i < n; i++ {
		all = append(all, startInstance(t, i, storage, r, sms, extra...))
	}
	return all
}

// startInstance runs instance i of a site on Redis r, with Caddy's storage (and so its
// generated signing key) in the directory storage.
func startInstance(t *testing.T, i int, storage string, r redisDeployment, sms *restcommtest.Server, extra ...string) *instance {
	t.Helper()
	port, admin := freePort(t), fmt.Sprintf("localhost:%d", freePort(t))
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
}
http://localhost:%d {
	otp {
		%s
		public_url %s
		phones %s %s %s
		store redis {
			%s
			timeout 300ms
			dial_timeout 300ms
		}
		%s
	}
	respond "instance %d user={http.auth.user.id}"
}
`, admin, storage, port, senderBlock(sms, sms.AuthToken), clusterOrigin, alice, bob, strings.Join(racers, " "), r.storeLines(), strings.Join(extra, "\n\t\t"), i)
	return &instance{base: fmt.Sprintf("http://localhost:%d", port), admin: admin, cfg: cfg, port: port, caddyProcess: runCaddy(t, cfg, port)}
}

// at points the visitor at one instance, as a load balancer would send it there.
func (v *visitor) at(in *instance) *visitor {
	v.base = in.base
	return v
}

// clusterOrigin is the public origin of the instances, as the load balancer in front of them
// would serve it: every instance has it as public_url, and browsers send it as Origin.
const clusterOrigin = "http://localhost:8999"

// newBalancedVisitor is a browser on the site that in serves behind the load balancer.
func newBalancedVisitor(t *testing.T, in *instance) *visitor {
	v := newVisitorAt(t, in.base)
	v.origin = clusterOrigin
	return v
}

func TestSeveralInstancesShareCodesSessionsAndSignOuts(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		in := startInstances(t, 2, r, sms)
		a, b := in[0], in[1]

		// A code asked for on A verifies on B, and the session from it passes on both.
		v := newBalancedVisitor(t, a)
		csrf, sent := v.startSignIn("/", alice)
		wantStatus(t, "send on A", sent, http.StatusSeeOther)
		_, code := smsCode(t, sms, 1)
		wantStatus(t, "verify on B", v.at(b).post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
		for _, at := range in {
			if r := v.at(at).get("/"); r.status != http.StatusOK || !strings.Contains(r.body, "user="+alice) {
				t.Fatalf("signed-in visitor on %s: %d %q", at.base, r.status, r.body)
			}
		}

		// Sign out on B; a copy of the cookie is refused on A within the revocation bound.
		thief := newBalancedVisitor(t, a)
		thief.setCookie("caddy_otp", v.cookie("caddy_otp"))
		wantStatus(t, "copied cookie before logout", thief.get("/"), http.StatusOK)
		logout := v.at(b).get("/.otp/logout")
		start := time.Now()
		wantStatus(t, "logout on B", v.post("/.otp/logout", url.Values{"csrf": {logout.csrf()}}), http.StatusSeeOther)
		for thief.get("/").status != http.StatusSeeOther {
			if time.Since(start) > revocationBound {
				t.Fatalf("the sign-out on B had not reached A after %s", revocationBound)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("sign-out on B reached A after %s", time.Since(start).Round(time.Millisecond))
	})
}

func TestRacingVerificationsOnTwoInstancesMakeExactlyOneSession(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		in := startInstances(t, 2, r, sms)
		for round := 1; round <= len(racers); round++ {
			v := newBalancedVisitor(t, in[0])
			csrf, _ := v.startSignIn("/", racers[round-1]) // a phone of its own: resend_after holds per phone
			_, code := smsCode(t, sms, round)
			flow := v.cookie("caddy_otp_flow")
			var wg sync.WaitGroup
			results := make([]response, 2)
			for i := range in {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w := newBalancedVisitor(t, in[i])
					w.setCookie("caddy_otp_flow", flow)
					results[i] = w.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
				}()
			}
			wg.Wait()
			sessions := 0
			for _, res := range results {
				if res.status == http.StatusSeeOther && strings.Contains(strings.Join(res.header.Values("Set-Cookie"), ";"), "caddy_otp=") {
					sessions++
				}
			}
			if sessions != 1 {
				t.Fatalf("round %d: %d sessions from one code (statuses %d, %d)", round, sessions, results[0].status, results[1].status)
			}
		}
	})
}

// TestRedisDownFailsClosedAndRecovers kills Redis (the single server, or the cluster master that
// holds the revocations) and brings it back. Sessions are refused within the bound while it is
// down and pass again by themselves afterwards; with persistence on, a revocation made before
// the outage still holds, even for an instance started after it with nothing in memory.
func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		in := startInstances(t, 1, r, sms)
		v := newBalancedVisitor(t, in[0])
		v.signInWith(sms, alice)
		wantStatus(t, "signed in", v.get("/"), http.StatusOK)

		// Before the outage: bob signs in and out; a copy of his cookie is refused.
		w := newBalancedVisitor(t, in[0])
		w.signInWith(sms, bob)
		thief := newBalancedVisitor(t, in[0])
		thief.setCookie("caddy_otp", w.cookie("caddy_otp"))
		wantStatus(t, "copied cookie before the sign-out", thief.get("/"), http.StatusOK)
		wantStatus(t, "sign-out", w.signOut(false), http.StatusSeeOther)
		wantStatus(t, "copied cookie after the sign-out", thief.get("/"), http.StatusSeeOther)

		down := r.serverOf("caddy-otp:" + revocationsTag)
		down.Stop()
		start := time.Now()
		for v.get("/").status != http.StatusServiceUnavailable {
			if time.Since(start) > 2*revocationBound {
				t.Fatalf("signed-in visitor still passes %s after %s went away", 2*revocationBound, down)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("sessions refused %s after %s went away", time.Since(start).Round(time.Millisecond), down)
		if c, ok := r.(*redisCluster); ok {
			c.waitState(down, "fail") // until then, keys on the other masters still answer
		}
		page := v.get("/.otp/login")
		if sent := v.post("/.otp/send", url.Values{"csrf": {page.csrf()}, "phone": {alice}}); sent.status != http.StatusServiceUnavailable || !strings.Contains(sent.body, "not working right now") {
			t.Errorf("send while Redis is down: %d %.200s", sent.status, sent.body)
		}
		if !strings.Contains(in[0].out.String(), "store error") {
			t.Errorf("no log line says the store failed")
		}

		down.Start()
		start = time.Now()
		for v.get("/").status != http.StatusOK {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("no recovery 15s after %s came back", down)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("sessions accepted again %s after %s came back", time.Since(start).Round(time.Millisecond), down)
		wantStatus(t, "revoked before the outage, after it", thief.get("/"), http.StatusSeeOther)
		in[0].restart(t)
		wantStatus(t, "signed in before the outage, on a fresh instance", v.get("/"), http.StatusOK)
		wantStatus(t, "revoked before the outage, on a fresh instance", thief.get("/"), http.StatusSeeOther)
		x := newBalancedVisitor(t, in[0])
		x.signInWith(sms, racers[0])
		wantStatus(t, "new sign-in after recovery", x.get("/"), http.StatusOK)
	})
}

// TestRedisStoreLeaksNoGoroutinesOrConnectionsAcrossReloads reloads a Caddy with a Redis store
// many times, half of them with other store settings (so the old client must close), and counts
// goroutines and Redis connections.
func TestRedisStoreLeaksNoGoroutinesOrConnectionsAcrossReloads(t *testing.T) {
	r := startRedis(t)
	g := newGate(t)
	g.redis = r.Addr()
	g.start("")
	v := newVisitor(t)
	v.signIn(g, alice) // starts the store's listeners
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	clients := func() int {
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n")
	}
	settle := func() (int, int) {
		time.Sleep(300 * time.Millisecond) // let closed connections and stopped goroutines go
		runtime.GC()
		return runtime.NumGoroutine(), clients()
	}
	goroutines0, clients0 := settle()
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			g.redisOpts = "" // the same store settings as before: the client is shared
		} else {
			g.redisOpts = fmt.Sprintf("timeout %dms", 900+i) // other settings: a new client, the old one closes
		}
		g.reload("", fmt.Sprintf("reload %d", i))
		wantStatus(t, "after reload", v.get("/"), http.StatusOK)
	}
	g.redisOpts = ""
	g.reload("", "last")
	wantStatus(t, "after the last reload", v.get("/"), http.StatusOK)
	goroutines1, clients1 := settle()
	if goroutines1 > goroutines0+5 {
		t.Errorf("goroutines grew from %d to %d over 11 reloads", goroutines0, goroutines1)
	}
	if clients1 > clients0+2 {
		t.Errorf("Redis connections grew from %d to %d over 11 reloads", clients0, clients1)
	}
	t.Logf("goroutines %d -> %d, redis clients %d -> %d", goroutines0, goroutines1, clients0, clients1)
}

// TestParallelGuessesOnTwoInstancesCannotOutrunTheLockout: wrong codes fired at once, on several
// flows, at two instances sharing Redis: at most the lockout's count of them are compared.
func TestParallelGuessesOnTwoInstancesCannotOutrunTheLockout(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		in := startInstances(t, 2, r, sms, "lockout 10 15m", "resend_after 1ms", "send_limit 10 10m", "ip_limit 100 10m")
		type attempt struct {
			v    *visitor
			csrf string
			code string
		}
		var flows []attempt
		for i := 0; i < 5; i++ {
			v := newBalancedVisitor(t, in[0])
			csrf, sent := v.startSignIn("/", bob)
			wantStatus(t, "send", sent, http.StatusSeeOther)
			_, code := smsCode(t, sms, i+1)
			flows = append(flows, attempt{v, csrf, code})
			time.Sleep(2 * time.Millisecond) // past resend_after, on the instances' own clock
		}
		var wg sync.WaitGroup
		results := make(chan response, 25)
		for i, f := range flows {
			for j := 0; j < 5; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w := newBalancedVisitor(t, in[(i+j)%2])
					w.setCookie("caddy_otp_flow", f.v.cookie("caddy_otp_flow"))
					results <- w.post("/.otp/verify", url.Values{"csrf": {f.csrf}, "code": {otherCode(f.code)}})
				}()
			}
		}
		wg.Wait()
		close(results)
		compared, refused := 0, 0
		for res := range results {
			switch res.status {
			case http.StatusUnauthorized:
				compared++ // a wrong code, or the last of a flow's attempts
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Errorf("a guess got %d", res.status)
			}
		}
		t.Logf("%d guesses compared, %d refused by the lockout", compared, refused)
		if compared > 10 {
			t.Fatalf("%d of 25 parallel wrong codes were compared; the lockout allows 10", compared)
		}
	})
}

// TestRevocationThroughOneInstancesAdminAPIHoldsOnTheOther: caddy otp revoke against instance B
// ends a session that instance A honoured, within the staleness bound.
func TestRevocationThroughOneInstancesAdminAPIHoldsOnTheOther(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		sms := restcommtest.NewServer()
		defer sms.Close()
		in := startInstances(t, 2, r, sms)
		v := newBalancedVisitor(t, in[0])
		v.signInWith(sms, alice)
		wantStatus(t, "signed in on A", v.get("/"), http.StatusOK)
		out, err := exec.Command(buildCaddy(t), "otp", "revoke", "--address", in[1].admin, alice).CombinedOutput()
		if err != nil {
			t.Fatalf("caddy otp revoke on B: %v\n%s", err, out)
		}
		start := time.Now()
		for v.get("/").status != http.StatusSeeOther {
			if time.Since(start) > revocationBound {
				t.Fatalf("the revocation on B had not reached A after %s", revocationBound)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("revoked through B, refused on A after %s", time.Since(start).Round(time.Millisecond))
	})
}

// TestInstancesWithDifferentKeysOnOneStoreAreTold: two instances of one site share a Redis, but
// each has its own storage and no secret, so each generated its own key. Every limit would
// count apart on each; the second to come says so, with what to do.
func TestInstancesWithDifferentKeysOnOneStoreAreTold(t *testing.T) {
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	r := startRedis(t)
	shared := t.TempDir()
	first, twin := startInstance(t, 0, shared, r, sms), startInstance(t, 1, shared, r, sms)
	second := startInstance(t, 2, t.TempDir(), r, sms)
	for i, in := range []*instance{first, twin, second} {
		if _, r := newBalancedVisitor(t, in).startSignIn("/", racers[i]); r.status != http.StatusSeeOther {
			t.Fatalf("send on instance %d: status %d", i, r.status)
		}
		time.Sleep(300 * time.Millisecond) // each keeps or checks its fingerprint in the background
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(second.out.String(), "another instance of this gate uses the same store with a different key") {
		if time.Now().After(deadline) {
			t.Fatalf("the second instance, with a key of its own, said nothing:\n%s", second.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, in := range []*instance{first, twin} {
		if strings.Contains(in.out.String(), "different key") {
			t.Errorf("an instance that shares the key was told it does not:\n%s", in.out.String())
		}
	}
}

// TestRefusedNumberEndsLikeReceiptsTakenByAnotherInstance: the provider posts a real delivery's
// receipt to whichever instance the load balancer picks; a number that may not sign in, on the
// instance that sent, must still end as the real ones do.
func TestRefusedNumberEndsLikeReceiptsTakenByAnotherInstance(t *testing.T) {
	r := startRedis(t)
	a, v := deliveredThroughB(t, r)
	if state := v.settledFinal(); state != deliveryDelivered {
		t.Fatalf("the allowed number ended %q", state)
	}
	s := newBalancedVisitor(t, a)
	s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryDelivered {
		t.Errorf("the allowed number was delivered; the refused one, on the sending instance, ended %q", state)
	}
}

func TestReceiptOnInstanceBIsSeenOnA(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, r redisDeployment) {
		a, v := deliveredThroughB(t, r)
		if _, state := v.at(a).status(); state != deliveryDelivered {
			t.Errorf("A serves %q after B took the delivered receipt", state)
		}
	})
}

// deliveredThroughB starts two instances on r, sends alice's code from A, and posts its
// delivered receipt to B, as a load balancer may hand it there; it returns A and alice's browser.
func deliveredThroughB(t *testing.T, r redisDeployment) (*instance, *visitor) {
	t.Helper()
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	in := startInstances(t, 2, r, sms)
	a, b := in[0], in[1]
	v := newBalancedVisitor(t, a)
	v.startSignIn("/", alice)
	m, _ := smsCode(t, sms, 1)
	if !strings.HasPrefix(m.StatusCallback, clusterOrigin+"/.otp/receipt/") {
		t.Fatalf("StatusCallback %q is not on the public origin", m.StatusCallback)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Fatalf("state on A %q, want sent", state)
	}
	m.StatusCallback = b.base + strings.TrimPrefix(m.StatusCallback, clusterOrigin)
	if got := sms.PostReceipt(m, "delivered", 0); got != http.StatusNoContent {
		t.Fatalf("receipt on B: %d", got)
	}
	return a, v
}
