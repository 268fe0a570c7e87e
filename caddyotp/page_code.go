package caddyotp

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// codePage shows the code page for flow f, with an error line if errMsg is set. The number is
// shown whole, as typed, so that a typo shows; in users mode, where nobody typed it, masked.
func (ps *pageSet) codePage(w http.ResponseWriter, v *visit, status int, f *flow, errMsg string) error {
	t := words(catalog[v.lang])
	t0 := ps.now()
	resendIn := ceilSeconds(time.Unix(0, f.Sent).Add(ps.resendAfter).Sub(t0))
	return ps.render(w, v, status, "verify.html", page{Title: t["title_code"], CSRF: ps.cookies.csrf(v.flowID), Error: errMsg,
		Intro:    t.Say("code_intro", "n", strconv.Itoa(ps.codeLength), "phone", shownPhone(f)),
		Expires:  t.Say("code_expires", "wait", t.duration(ceilSeconds(time.Unix(0, f.Expires).Sub(t0)))),
		ResendIn: max(0, resendIn), CanCall: ps.canCall && f.Resends > 0, Clock: countdown(max(0, resendIn)),
		Link: linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"],
		DeliveredTo: shownPhone(f), Voice: ps.canCall})
}

// shownPhone is flow f's number as its pages show it: whole and grouped when the visitor typed
// it, masked in users mode.
func shownPhone(f *flow) string {
	if f.User != "" {
		return unbreakable.Replace(maskPhoneDisplay(f.Phone))
	}
	return unbreakable.Replace(formatPhone(f.Phone))
}

// pending shows what became of the visitor's pending code (GET /verify): the code page, the
// page of a code that could not be sent, or of one that expired; with none, the phone page.
func (ps *pageSet) pending(w http.ResponseWriter, v *visit, f *flow, state string) error {
	switch {
	case f == nil:
		return seeOther(w, ps.path+"/login")
	case state == deliveryFailed || state == deliveryMisconfigured:
		return ps.notSent(w, v, f, state)
	case f.Hash == nil || ps.now().UnixNano() >= f.Expires:
		return ps.expired(w, v, http.StatusOK, f)
	}
	return ps.codePage(w, v, http.StatusOK, f, "")
}

// expired shows that the flow's code is dead, and the one thing to do: get a new code.
func (ps *pageSet) expired(w http.ResponseWriter, v *visit, status int, f *flow) error {
	t := words(catalog[v.lang])
	wait := max(0, ceilSeconds(time.Unix(0, f.Sent).Add(ps.resendAfter).Sub(ps.now())))
	p := page{Title: t["title_expired"], Text: t.Say("text_expired", "wait", t.duration(ceilSeconds(ps.codeTTL))),
		Action: &action{Label: t["resend"], Path: "/resend", Post: true}, CSRF: ps.cookies.csrf(v.flowID),
		Link: linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"]}
	ps.waitFor(&p, t, wait)
	return ps.render(w, v, status, "message.html", p)
}

// waitFor makes the page's action wait secs, with a live countdown.
func (ps *pageSet) waitFor(p *page, t words, secs int) {
	if secs <= 0 {
		return
	}
	p.Wait, p.Clock = secs, countdown(secs)
	p.WaitBefore, p.WaitAfter, _ = strings.Cut(t["ready_in"], "{clock}")
}

// countdown is how long to wait as the pages show it: m:ss.
func countdown(secs int) string {
	return fmt.Sprintf("%d:%02d", secs/60, secs%60)
}

func linkIf(ok bool, link string) string {
	if ok {
		return link
	}
	return ""
}

// retry is the action that asks again for what the visitor asked for (v.form): the same form
// posted again, or the code field; on a page that was not a form, the sign-in page.
func (ps *pageSet) retry(v *visit, t words, label string) *action {
	switch v.form.route {
	case "/send":
		return &action{Label: orWord(label, t["send_code"]), Path: "/send", Post: true, Phone: v.form.phone, Region: v.form.region}
	case "/resend":
		return &action{Label: orWord(label, t["resend"]), Path: "/resend", Post: true}
	case "/call":
		return &action{Label: orWord(label, t["call_me"]), Path: "/call", Post: true}
	case "/verify":
		return &action{Label: t["verify"], Path: "/verify", Post: true, Code: true}
	case "/logout":
		return &action{Label: orWord(label, t["sign_out"]), Path: "/logout", Post: true, Everywhere: v.form.everywhere}
	}
	return &action{Label: orWord(label, t["start_again"]), Path: "/login"}
}

func orWord(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// notSent answers the code page of a flow whose code could not be delivered: 502 when the site's
// provider setup is broken (nothing the visitor can do; the operator's log says why), 503 and a
// retry when the provider failed or is down.
func (ps *pageSet) notSent(w http.ResponseWriter, v *visit, f *flow, state string) error {
	t := words(catalog[v.lang])
	if state != deliveryFailed {
		return ps.render(w, v, http.StatusBadGateway, "message.html", page{Title: t["title_not_sent"], Text: t["text_misconfigured"]})
	}
	setRetryAfter(w, 30*time.Second)
	p := page{Title: t["title_not_sent"], Text: t["text_not_sent"], CSRF: ps.cookies.csrf(v.flowID),
		Action: &action{Label: t["try_again"], Path: "/send", Post: true},
		Link:   linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"]}
	if f.User == "" {
		p.Action.Phone = f.Phone // in users mode the code goes to the user's phone anyway
	}
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", p)
}
