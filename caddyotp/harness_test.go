package caddyotp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"
)

// The in-process Caddy that caddytest starts listens here (its admin on localhost:2999).
const site = "http://localhost:9080"

// testGlobals are the global options every in-process Caddy of the tests starts with.
const testGlobals = `admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns`

// loadCaddyfile (re)loads the in-process Caddy with sites, after the tests' global options and
// extra global options of the test's own.
func loadCaddyfile(t *testing.T, tester *caddytest.Tester, extraGlobals, sites string) *caddytest.Tester {
	t.Helper()
	if tester == nil {
		tester = caddytest.NewTester(t)
	}
	tester.InitServer("{\n\t"+testGlobals+"\n\t"+extraGlobals+"\n}\n"+sites, "caddyfile")
	return tester
}

// signOut posts the sign-out form, as the sign-out page's buttons do.
func (v *visitor) signOut(everywhere bool) response {
	v.t.Helper()
	page := v.get("/.otp/logout")
	if !strings.Contains(page.body, `name="csrf"`) {
		// Not signed in (or no longer): the page has no form, so post as a forged one would,
		// with the token of the sign-in page.
		page = v.get("/.otp/login")
	}
	form := url.Values{"csrf": {page.csrf()}}
	if everywhere {
		form.Set("everywhere", "1")
	}
	return v.post("/.otp/logout", form)
}

const (
	alice    = "+12015550123" // may sign in
	bob      = "+12015550145" // may sign in
	stranger = "+12015550199" // may not
	fromNum  = "+12015550100"
)

// gate is one running Caddy with the otp handler in front of a page, and a fake Restcomm.
type gate struct {
	t          *testing.T
	global     string   // extra global options
	faulty     bool     // use the store that tests can switch off
	phones     string   // who may sign in: alice and bob unless set
	redis      string   // if set, the address of the Redis to use as store
	redisOpts  string   // more lines for the redis store's block
	address    string   // the site block's address: http://localhost:9080 unless set
	siteExtra  string   // more directives for the site block
	senderOpts []string // more lines for the restcomm sender's block
	users      string   // if set, the users block's lines after "alice ": users bound to phones
	page       string   // if set, what the protected page says instead of the user and the cookies
	sender     string   // if set, the otp block's whole sender line instead of the restcomm sender
	tester     *caddytest.Tester
	sms        *restcommtest.Server
	logFile    string
}

// twoGates loads two sites into one Caddy (tester, or a new one if nil), http://localhost:9080
// ("a") and http://127.0.0.1:9080 ("b"), each with a gate whose sender is sms and whose
// public_url is its own address; a and b are more lines of each otp block (phones, store...).
// Each site's page says its name. It returns the tester, for a reload.
func twoGates(t *testing.T, tester *caddytest.Tester, sms *restcommtest.Server, a, b string) *caddytest.Tester {
	t.Helper()
	block := func(address, name, lines string) string {
		return fmt.Sprintf("%[1]s {\n\totp {\n\t\t%[3]s\n\t\tpublic_url %[1]s\n\t\t%[4]s\n\t}\n\trespond %[2]q\n}\n",
			address, name, senderBlock(sms, sms.AuthToken), strings.ReplaceAll(strings.TrimSpace(lines), "\n", "\n\t\t"))
	}
	return loadCaddyfile(t, tester, "", block(site, "a", a)+block(siteB, "b", b))
}

// siteB is the second site of twoGates.
const siteB = "http://127.0.0.1:9080"

// startGate loads a Caddyfile whose otp block holds the restcomm sender, alice and bob, a store of
// the test's own, and extra subdirectives; opts change the gate first (its sender, its first
// factor). The protected page echoes the user and the cookies it got.
func startGate(t *testing.T, extra string, opts ...gateOption) *gate {
	t.Helper()
	g := newGate(t)
	for _, o := range opts {
		o(g)
	}
	return g.start(extra)
}

// A gateOption changes a gate before it starts.
type gateOption func(*gate)

// viaTwilio makes the gate send through the Twilio fake tw (its twilio block with senderExtra).
func viaTwilio(tw *restcommtest.Twilio, senderExtra ...string) gateOption {
	return func(g *gate) {
		g.t.Cleanup(tw.Close)
		g.sender = "sender " + twilioBlock(tw, senderExtra...)
	}
}

// viaFailover makes the gate's sender a failover: the fake Restcomm first, then tw.
func viaFailover(tw *restcommtest.Twilio) gateOption {
	return func(g *gate) {
		g.t.Cleanup(tw.Close)
		g.sender = "sender failover {\n\t\t\t" + strings.TrimPrefix(senderBlock(g.sms, g.sms.AuthToken), "sender ") + "\n\t\t\t" + twilioBlock(tw) + "\n\t\t}"
	}
}

// viaTwilioPair makes the gate's sender a failover of two Twilio-style providers: first, then
// second.
func viaTwilioPair(first, second *restcommtest.Twilio) gateOption {
	return func(g *gate) {
		g.t.Cleanup(first.Close)
		g.t.Cleanup(second.Close)
		g.sender = "sender failover {\n\t\t\t" + twilioBlock(first) + "\n\t\t\t" + twilioBlock(second) + "\n\t\t}"
	}
}

// withVoice lets the gate's Restcomm sender place calls.
func withVoice(g *gate) { g.senderOpts = append(g.senderOpts, "voice") }

// withFirstFactor puts Caddy's basic_auth (alice, bob and carol, password "correct horse") in
// front of the gate, which binds alice and bob to their phones; carol has none. The page says
// the user.
func withFirstFactor(g *gate) {
	g.siteExtra = "basic_auth {\n\t\talice " + passwordHash(g.t) + "\n\t\tbob " + passwordHash(g.t) + "\n\t\tcarol " + passwordHash(g.t) + "\n\t}"
	g.phones, g.users = "", alice+"\n\t\t\tbob "+bob
	g.page = "user={http.auth.user.id}"
}

// withOptionalFirstFactor runs basic_auth (alice) only for requests that carry credentials; the
// gate binds alice to her phone and lets bob's phone sign in on its own.
func withOptionalFirstFactor(g *gate) {
	g.siteExtra = "@creds header Authorization *\n\tbasic_auth @creds {\n\t\talice " + passwordHash(g.t) + "\n\t}"
	g.phones, g.users = bob, alice
	g.page = "user={http.auth.user.id}"
}

func newGate(t *testing.T) *gate {
	g := &gate{t: t, sms: restcommtest.NewServer(), logFile: filepath.Join(t.TempDir(), "caddy.log"), phones: alice + " " + bob}
	t.Cleanup(g.sms.Close)
	return g
}

// store is the otp block's store line: a memory store of the test's own, the switchable one,
// or Redis.
func (g *gate) store() string {
	switch {
	case g.redis != "":
		return fmt.Sprintf("redis {\n\t\t\taddress %s\n\t\t\tkey_prefix %s:\n\t\t\t%s\n\t\t}", g.redis, storeName(g.t), g.redisOpts)
	case g.faulty:
		return "test_fault " + storeName(g.t)
	}
	return "memory " + storeName(g.t)
}

func (g *gate) start(extra string) *gate {
	t := g.t
	t.Helper()
	g.tester = caddytest.NewTester(t)
	g.tester.InitServer(g.config(extra, "upstream"), "caddyfile")
	forgetDeliveries()
	if t.Failed() {
		t.FailNow()
	}
	return g
}

func (g *gate) config(extra, body string) string {
	page := body + " user={http.auth.user.id} cookies={http.request.header.Cookie}"
	if g.page != "" {
		page = g.page
	}
	address := g.address
	if address == "" {
		address = site
		if !strings.Contains(extra, "public_url") {
			extra = "public_url " + site + "\n\t\t" + extra
		}
	}
	return fmt.Sprintf(`{
	%s
	log {
		output file %s
		format json
		level DEBUG
	}
	%s
}
%s {
	otp {
		%s
		%s
		store %s
		%s
	}
	%s
	respond %q
}
`, testGlobals, g.logFile, g.global, address, g.senderLine(), g.who(), g.store(), extra, g.siteExtra, page)
}

// who is the otp block's lines of who may sign in: phones, users bound to phones, or both.
func (g *gate) who() string {
	var lines []string
	if g.phones != "" {
		lines = append(lines, "phones "+g.phones)
	}
	if g.users != "" {
		lines = append(lines, "users {\n\t\t\talice "+g.users+"\n\t\t}")
	}
	return strings.Join(lines, "\n\t\t")
}

// senderLine is the otp block's sender: the test's own, else the fake Restcomm's.
func (g *gate) senderLine() string {
	if g.sender != "" {
		return g.sender
	}
	return senderBlock(g.sms, g.sms.AuthToken, g.senderOpts...)
}

// reload loads the same gate with a different page body, as an operator's `caddy reload` would.
func (g *gate) reload(extra, body string) {
	g.t.Helper()
	g.tester.InitServer(g.config(extra, body), "caddyfile")
}

func storeName(t *testing.T) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// logs returns everything Caddy logged so far.
func (g *gate) logs() string {
	b, err := os.ReadFile(g.logFile)
	if err != nil {
		g.t.Fatalf("reading caddy log: %v", err)
	}
	return string(b)
}

// code waits for the n-th SMS and returns it with the code from its autofill line "@host #code".
func (g *gate) code(n int) (restcommtest.Message, string) {
	g.t.Helper()
	return smsCode(g.t, g.sms, n)
}

func smsCode(t *testing.T, sms *restcommtest.Server, n int) (restcommtest.Message, string) {
	t.Helper()
	msgs, err := sms.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Body)
}

// autofillCode is the code of an SMS's autofill line, "@localhost #code".
func autofillCode(t *testing.T, body string) string {
	t.Helper()
	match := regexp.MustCompile(`\n@localhost #([0-9]+)$`).FindStringSubmatch(body)
	if match == nil {
		t.Fatalf("SMS body %q lacks the autofill line", body)
	}
	return match[1]
}

// visitor is one browser: its own cookie jar, redirects not followed.
type visitor struct {
	t      *testing.T
	base   string // the site's origin
	client *http.Client
	jar    http.CookieJar
	origin string // sent as Origin on POSTs, like a browser on the site's own page
	// sent as Sec-Fetch-Site on POSTs when set: what a browser says of where the form was
	fetchSite string
}

func newVisitor(t *testing.T) *visitor { return newVisitorAt(t, site) }

// newVisitorAt is a browser for the site at base.
func newVisitorAt(t *testing.T, base string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, base: base, jar: jar, origin: base, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) csrf() string {
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(r.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// do sends req. A request that gets no answer is an error of the test, and status 0: Errorf,
// not Fatalf, since parallel visitors call it from goroutines of their own.
func (v *visitor) do(req *http.Request) response {
	v.t.Helper()
	resp, err := v.client.Do(req)
	if err != nil {
		v.t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get requests path as a browser navigating to it would.
func (v *visitor) get(path string) response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.base+path, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	return v.do(req)
}

// post submits a form as a browser would.
func (v *visitor) post(path string, form url.Values) response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, v.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	if v.origin != "" {
		req.Header.Set("Origin", v.origin)
	}
	if v.fetchSite != "" {
		req.Header.Set("Sec-Fetch-Site", v.fetchSite)
	}
	return v.do(req)
}

// cookie returns the value of the named cookie the browser holds for the site.
func (v *visitor) cookie(name string) string {
	u, _ := url.Parse(v.base)
	for _, c := range v.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// startSignIn opens the phone page (remembering next) and submits phone; it returns the csrf token.
func (v *visitor) startSignIn(next, phone string) (string, response) {
	v.t.Helper()
	login := v.get("/.otp/login?next=" + url.QueryEscape(next))
	if login.status != http.StatusOK {
		v.t.Fatalf("GET login: status %d", login.status)
	}
	csrf := login.csrf()
	return csrf, v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {phone}})
}

// setCookie puts a cookie in the browser, as a thief who copied it would.
func (v *visitor) setCookie(name, value string) {
	u, _ := url.Parse(v.base)
	v.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value}})
}

// signIn walks the whole flow for phone.
func (v *visitor) signIn(g *gate, phone string) { v.signInWith(g.sms, phone) }

func (v *visitor) signInWith(sms *restcommtest.Server, phone string) {
	v.t.Helper()
	n := len(sms.Messages()) + 1
	csrf, sent := v.startSignIn("/", phone)
	if sent.status != http.StatusSeeOther {
		v.t.Fatalf("send: status %d", sent.status)
	}
	m, code := smsCode(v.t, sms, n)
	for m.To != phone { // another visitor's code, sent in the background, came first
		n++
		m, code = smsCode(v.t, sms, n)
	}
	if r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}); r.status != http.StatusSeeOther {
		v.t.Fatalf("verify: status %d: %s", r.status, r.body)
	}
}

func wantStatus(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body: %.300s", what, r.status, status, r.body)
	}
}

var (
	regexpNonce = regexp.MustCompile(`nonce="[^"]*"`)
	regexpCSRF  = regexp.MustCompile(`name="csrf" value="[^"]*"`)
)

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// senderBlock is an otp block's sender for the fake Restcomm. An empty token writes the
// placeholder {env.TEST_RESTCOMM_TOKEN} instead, as an operator keeps secrets out of the file.
func senderBlock(sms *restcommtest.Server, token string, extra ...string) string {
	if token == "" {
		token = "{env.TEST_RESTCOMM_TOKEN}"
	}
	return fmt.Sprintf(`sender restcomm {
			account_sid %s
			auth_token %s
			from %s
			base_url %s
			timeout 2s
			%s
		}`, sms.AccountSID, token, fromNum, sms.BaseURL(), strings.Join(extra, "\n\t\t\t"))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// forgetDeliveries empties every sender's delivery history, so that a test's simulated
// deliveries are drawn from its own real ones only (a test's fake provider may reuse the port,
// and so the configuration, of an earlier test's).
func forgetDeliveries() {
	healthPool.Range(func(_, v any) bool {
		h := v.(*health)
		h.mu.Lock()
		h.channels = nil
		h.mu.Unlock()
		return true
	})
}

func newRestcomm(t *testing.T) *restcommtest.Server {
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	return sms
}

// passwordHash is basic_auth's hash of "correct horse", the test users' password.
func passwordHash(t *testing.T) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(hash)
}

// logEventsContaining returns the log lines that mention s.
func logEventsContaining(logs, s string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// status asks for the delivery state of the visitor's code, as the code page's script does.
func (v *visitor) status() (int, string) {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.base+"/.otp/status", nil)
	req.Header.Set("Accept", "application/json")
	r := v.do(req)
	var body struct{ Delivery string }
	_ = json.Unmarshal([]byte(r.body), &body)
	return r.status, body.Delivery
}

// settled waits until the visitor's code has left "sending", and returns its state.
func (v *visitor) settled() string {
	v.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		status, state := v.status()
		if status != http.StatusOK {
			v.t.Fatalf("status: %d", status)
		}
		if state != deliverySending {
			return state
		}
	}
	v.t.Fatal("the delivery did not settle within 10s")
	return ""
}

// twilioCode waits for the n-th message the fake accepted and returns it with its code.
func twilioCode(t *testing.T, tw *restcommtest.Twilio, n int) (restcommtest.TwilioMessage, string) {
	t.Helper()
	msgs, err := tw.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Body)
}

// settledAt waits until the visitor's code has reached want (or any final state) and returns
// the state it reached. Receipts are posted synchronously by the tests, so the state it waits
// for is there already, or the background send is still finishing.
func (v *visitor) settledAt(want string) string {
	v.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		status, state := v.status()
		if status != http.StatusOK {
			v.t.Fatalf("status: %d", status)
		}
		if state == want || terminal(state) {
			return state
		}
	}
	_, state := v.status()
	return state
}

// statusReason is the reason GET /.otp/status gives for a failure of the visitor's number.
func (v *visitor) statusReason() string {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.base+"/.otp/status", nil)
	req.Header.Set("Accept", "application/json")
	var body struct{ Reason string }
	_ = json.Unmarshal([]byte(v.do(req).body), &body)
	return body.Reason
}

// settledFinal waits for a final state (a receipt's, or a failure), or gives the last seen
// after 10 s: settledAt stops at delivered, and at any other final state.
func (v *visitor) settledFinal() string { v.t.Helper(); return v.settledAt(deliveryDelivered) }

// eventually polls cond for up to 5 seconds: for TTLs, which run on the store's own clock.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}
