package caddyotp

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestReceiptsDeliveredAndUndeliveredShowInTheStatus(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startGate(t, "", viaTwilio(tw))

	v := newVisitor(t)
	v.startSignIn("/", alice)
	m, _ := twilioCode(t, tw, 1)
	v.settledAt(deliverySent)
	for _, st := range []string{"queued", "sent"} {
		if got := tw.PostReceipt(m, st, 0); got != http.StatusNoContent {
			t.Fatalf("%s receipt: %d", st, got)
		}
	}
	if _, state := v.status(); state != deliverySent {
		t.Errorf("after queued and sent receipts: %q", state)
	}
	tw.PostReceipt(m, "delivered", 0)
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after the delivered receipt: %q", state)
	}
	if page := v.get("/.otp/verify"); page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not carry the delivered line for the typed number: %d", page.status)
	}

	// Undelivered: the state is failed, and the visitor may ask for a new code at once.
	clock.Advance(31 * time.Second)
	w := newVisitor(t)
	csrf, _ := w.startSignIn("/", bob)
	m, _ = twilioCode(t, tw, 2)
	w.settledAt(deliverySent)
	tw.PostReceipt(m, "undelivered", 30003)
	if _, state := w.status(); state != deliveryFailed {
		t.Errorf("after the undelivered receipt: %q", state)
	}
	wantStatus(t, "resend at once after an undelivered code", w.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	twilioCode(t, tw, 3)
	if line := lastLogLine(t, g.logs(), "delivery receipt"); line["result"] != "accepted" || line["delivery"] != deliveryFailed {
		t.Errorf("receipt log line %v", line)
	}
}

func TestForgedReplayedAndLateReceiptsChangeNothing(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startGate(t, "code_ttl 2m", viaTwilio(tw))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, _ := twilioCode(t, tw, 1)
	v.settledAt(deliverySent)
	unchanged := func(what string, got, wantStatus int) {
		t.Helper()
		if got != wantStatus {
			t.Errorf("%s: %d, want %d", what, got, wantStatus)
		}
		if _, state := v.status(); state != deliverySent {
			t.Errorf("%s changed the state to %q", what, state)
		}
	}
	delivered := tw.ReceiptForm(m, "delivered", 0)
	token := strings.TrimPrefix(m.StatusCallback, site+"/.otp/receipt/")

	unchanged("no signature", restcommtest.PostUnsigned(m.StatusCallback, delivered, ""), http.StatusForbidden)
	unchanged("a signature made with another key", restcommtest.PostUnsigned(m.StatusCallback, delivered, restcommtest.Signature("guess", m.StatusCallback, delivered)), http.StatusForbidden)
	hostURL := "http://attacker.example/.otp/receipt/" + token // what a gate that trusted Host would check
	unchanged("a signature over a URL of another host", restcommtest.PostUnsigned(m.StatusCallback, delivered, restcommtest.Signature(tw.SigningKey, hostURL, delivered)), http.StatusForbidden)
	sent := tw.ReceiptForm(m, "sent", 0)
	unchanged("a field changed after signing", restcommtest.PostUnsigned(m.StatusCallback, delivered, restcommtest.Signature(tw.SigningKey, m.StatusCallback, sent)), http.StatusForbidden)
	unknown := site + "/.otp/receipt/" + strings.Repeat("A", 43)
	unchanged("an unknown token", restcommtest.PostUnsigned(unknown, delivered, restcommtest.Signature(tw.SigningKey, unknown, delivered)), http.StatusNotFound)
	unchanged("a malformed token", restcommtest.PostUnsigned(site+"/.otp/receipt/..%2f", delivered, ""), http.StatusNotFound)
	if line := lastLogLine(t, g.logs(), "delivery receipt"); line["result"] != "unknown" {
		t.Errorf("last receipt log line %v", line)
	}

	// Out of order and repeated: the state never goes back.
	tw.PostReceipt(m, "delivered", 0)
	for _, st := range []string{"sent", "delivered", "queued", "undelivered", "failed"} {
		if got := tw.PostReceipt(m, st, 30008); got != http.StatusNoContent {
			t.Errorf("%s after delivered: %d", st, got)
		}
		if _, state := v.status(); state != deliveryDelivered {
			t.Errorf("%s after delivered moved the state to %q", st, state)
		}
	}

	// A receipt of a replaced code does not touch the new code's state.
	clock.Advance(31 * time.Second)
	wantStatus(t, "resend", v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	m2, code := twilioCode(t, tw, 2)
	v.settledAt(deliverySent)
	tw.PostReceipt(m, "undelivered", 30003)
	if _, state := v.status(); state != deliverySent {
		t.Errorf("a receipt of the replaced code moved the new one's to %q", state)
	}

	// Once the code is used, its receipts change nothing; and one past code_ttl neither.
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	tw.PostReceipt(m2, "delivered", 0)
	if line := lastLogLine(t, g.logs(), "delivery receipt"); line["result"] != "unchanged" {
		t.Errorf("a receipt of a used code: %v", line)
	}
	clock.Advance(31 * time.Second)
	late := newVisitor(t)
	late.startSignIn("/", alice)
	m3, _ := twilioCode(t, tw, 3)
	late.settledAt(deliverySent)
	clock.Advance(2*time.Minute + time.Second)
	tw.PostReceipt(m3, "delivered", 0)
	if _, state := late.status(); state != deliverySent {
		t.Errorf("a receipt after code_ttl moved the state to %q", state)
	}
}

func TestRestcommReceiptsAreAuthenticatedByTheTokenNotLoggedAndExemptFromIPLimit(t *testing.T) {
	g := startGate(t, "ip_limit 2 10m")
	clock.StartWindow(10 * time.Minute)
	// Out of order, repeated, and late: only the forward steps count.
	g.sms.AutoReceipts(restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered"},
		restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered"})
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice) // counts 1 of 2 for the address
	m, code := g.code(1)
	if !receiptURL.MatchString(m.StatusCallback) {
		t.Fatalf("StatusCallback %q", m.StatusCallback)
	}
	if state := v.settledAt(deliveryDelivered); state != deliveryDelivered {
		t.Errorf("state %q, want delivered", state)
	}
	for i := 0; i < 5; i++ { // receipts come from the same address, and count for no limit
		if got := g.sms.PostReceipt(m, "delivered", 0); got != http.StatusNoContent {
			t.Fatalf("receipt %d: %d", i, got)
		}
	}
	wantStatus(t, "verify after the receipts (2 of 2)", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	logs := g.logs()
	token := strings.TrimPrefix(m.StatusCallback, site+"/.otp/receipt/")
	for _, secret := range []string{code, token, m.Body, alice} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret of the receipt: %q", secret)
		}
	}
}

func TestSimulatedCourseFollowsTheReceiptsOfARealDelivery(t *testing.T) {
	tw := restcommtest.NewTwilio()
	startGate(t, "send_limit 20 10m", viaTwilio(tw))
	known := newVisitor(t)
	known.startSignIn("/", alice)
	m, _ := twilioCode(t, tw, 1)
	known.settledAt(deliverySent)
	tw.PostReceipt(m, "delivered", 0)

	unknown := newVisitor(t)
	unknown.startSignIn("/", stranger)
	if state := unknown.settledAt(deliveryDelivered); state != deliveryDelivered {
		t.Errorf("a number that may not sign in ended %q, the real delivery delivered", state)
	}
	if n := len(tw.Messages()); n != 1 {
		t.Errorf("%d messages sent, want 1 (none to the stranger)", n)
	}
}

// restcommUnitHandler is a unit handler (no server) whose sender is Restcomm against the fake,
// so that real receipt tokens are sealed.
func restcommUnitHandler(t *testing.T, extra map[string]any) (*Handler, *restcommtest.Server) {
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	cfg := map[string]any{
		"sender": map[string]any{"module": "restcomm", "account_sid": sms.AccountSID, "auth_token": sms.AuthToken,
			"from": "+12015550100", "base_url": sms.BaseURL()},
		"ip_limit":   map[string]any{"count": 1000, "window": "10m"},
		"send_limit": map[string]any{"count": 5, "window": "10m"},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	h, _ := newUnitHandler(t, cfg)
	return h, sms
}

// postReceiptTo posts a Restcomm receipt with status to the callback URL a message named.
func postReceiptTo(t *testing.T, h *Handler, callback, status string) int {
	t.Helper()
	path := callback[strings.Index(callback, "/.otp/receipt/"):]
	form := url.Values{"MessageSid": {"SM1"}, "SmsSid": {"SM1"}, "MessageStatus": {status}, "SmsStatus": {status}}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	if err := serveAs(h, w, r, "203.0.113.9"); err != nil {
		t.Fatal(err)
	}
	return w.Code
}

// sendStatus is the status POST /send answers for phone, from a browser of its own.
func sendStatus(t *testing.T, h *Handler, phone string) int {
	t.Helper()
	w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
	if err := serve(h, w, r); err != nil {
		t.Fatal(err)
	}
	return w.Code
}

// TestAFailedReceiptAfterDeliveredKeepsTheCooldown: a "failed" receipt that does not move the
// state (it came after "delivered") does not end the phone's resend_after: a receipt token
// lives for code_ttl, and its holder must not end the cooldowns that other flows to the same
// phone start.
func TestAFailedReceiptAfterDeliveredKeepsTheCooldown(t *testing.T) {
	h, cb := sentToAlice(t)
	if c := postReceiptTo(t, h, cb, "delivered"); c != http.StatusNoContent {
		t.Fatalf("delivered receipt: %d", c)
	}
	// The cooldown runs: another browser is refused.
	if c := sendStatus(t, h, alice); c != http.StatusTooManyRequests {
		t.Fatalf("second send inside resend_after: %d, want 429", c)
	}
	bypassed := 0
	for i := 0; i < 4; i++ {
		// A failed receipt after delivered: the state does not move...
		postReceiptTo(t, h, cb, "failed")
		// ...but does the cooldown end?
		if c := sendStatus(t, h, alice); c == http.StatusSeeOther {
			bypassed++
		}
	}
	if bypassed > 0 {
		t.Errorf("%d sends inside resend_after went through after a failed receipt that did not move the state (delivered first)", bypassed)
	}
}

// TestAReplayedFailedReceiptKeepsTheCooldown: the first "failed" receipt moves the state and
// ends the cooldown, so that the visitor may ask again at once; a replay of it moves nothing and
// does not end the cooldown of the code asked for since.
func TestAReplayedFailedReceiptKeepsTheCooldown(t *testing.T) {
	h, cb := sentToAlice(t)
	postReceiptTo(t, h, cb, "failed") // genuine: ends the cooldown once
	if c := sendStatus(t, h, alice); c != http.StatusSeeOther {
		t.Fatalf("send after a genuine failure: %d, want 303", c)
	}
	bypassed := 0
	for i := 0; i < 3; i++ {
		postReceiptTo(t, h, cb, "failed") // replay
		if c := sendStatus(t, h, alice); c == http.StatusSeeOther {
			bypassed++
		}
	}
	if bypassed > 0 {
		t.Errorf("%d sends inside resend_after went through after replays of one failed receipt", bypassed)
	}
}

// sentToAlice sends a code to alice through a unit handler's Restcomm sender and returns the
// handler and the receipt URL the message named, once the delivery has had time to settle.
func sentToAlice(t *testing.T) (*Handler, string) {
	t.Helper()
	h, sms := restcommUnitHandler(t, nil)
	clock.Advance(time.Minute)
	if c := sendStatus(t, h, alice); c != http.StatusSeeOther {
		t.Fatalf("first send: %d", c)
	}
	msgs, err := sms.WaitMessages(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].StatusCallback == "" {
		t.Fatal("no StatusCallback")
	}
	time.Sleep(100 * time.Millisecond) // let the delivery settle at "sent"
	return h, msgs[0].StatusCallback
}

// TestAReceiptTokenOpensOnlyAtTheGateThatSealedIt: the gates of one Caddy share the receipt
// key, but a token made at a gate whose provider signs its receipts (Twilio) does not open at a
// gate whose provider does not (Restcomm): posted there, without the signature its own gate
// would ask for, it is unknown, and the code's state stays as it was.
func TestAReceiptTokenOpensOnlyAtTheGateThatSealedIt(t *testing.T) {
	tw := restcommtest.NewTwilio()
	t.Cleanup(tw.Close)
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "", fmt.Sprintf(`%[1]s {
	otp {
		sender %[2]s
		public_url %[1]s
		phones %[4]s
		store memory %[5]sa
	}
	respond "a"
}
%[6]s {
	otp {
		%[3]s
		public_url %[6]s
		phones %[4]s
		store memory %[5]sb
	}
	respond "b"
}
`, site, twilioBlock(tw), senderBlock(sms, sms.AuthToken), alice, storeName(t), siteB))
	v := newVisitor(t)
	v.startSignIn("/", alice)
	msgs, err := tw.WaitMessages(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Fatalf("state %q, want sent", state)
	}
	token := strings.TrimPrefix(msgs[0].StatusCallback, site+"/.otp/receipt/")
	resp, err := http.PostForm(siteB+"/.otp/receipt/"+token, url.Values{"MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the other gate answered %d to the token, want 404", resp.StatusCode)
	}
	if _, state := v.status(); state != deliverySent {
		t.Errorf("the code's state is %q after the receipt at the other gate, want sent", state)
	}
}
