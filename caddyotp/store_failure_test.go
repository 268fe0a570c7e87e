package caddyotp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestStoreDownFailsClosed(t *testing.T) {
	g := newGate(t)
	g.faulty = true
	g.start("")
	in := newVisitor(t)
	in.signIn(g, alice)
	pending := newVisitor(t)
	csrf, _ := pending.startSignIn("/", bob)
	_, code := g.code(2)

	storeDown.Store(true)
	defer storeDown.Store(false)
	r := in.get("/")
	wantStatus(t, "signed-in visitor while the store is down", r, http.StatusServiceUnavailable)
	if strings.Contains(r.body, "user=") || !strings.Contains(r.body, "not working right now") {
		t.Errorf("not the unavailable page: %.300s", r.body)
	}
	wantStatus(t, "verify while the store is down", pending.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusServiceUnavailable)
	fresh := newVisitor(t)
	login := fresh.get("/.otp/login")
	wantStatus(t, "send while the store is down", fresh.post("/.otp/send", url.Values{"csrf": {login.csrf()}, "phone": {alice}}), http.StatusServiceUnavailable)
	if n := len(g.sms.Messages()); n != 2 {
		t.Errorf("%d SMS, want no new one while the store is down", n)
	}
	if !strings.Contains(g.logs(), `"msg":"store error"`) {
		t.Errorf("no log line says the store failed")
	}

	storeDown.Store(false)
	wantStatus(t, "signed-in visitor after the store is back", in.get("/"), http.StatusOK)
	wantStatus(t, "verify after the store is back", pending.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
}
