//go:build integration

package caddyotp

import (
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/chromedp/chromedp"
)

// TestBrowserCodePageShowsDeliveryByItself: the code page asks for the delivery state on its
// own; a delivered receipt turns it to "Delivered to ...", an undelivered one to "We could not
// reach this number" with a call and another number.
func TestBrowserCodePageShowsDeliveryByItself(t *testing.T) {
	tw := restcommtest.NewTwilio()
	startGate(t, "", viaTwilio(tw, "voice"))
	b := newBrowser(t, "phone", 390, 844, "en-US")
	b.open("/")
	b.do("type the number", chromedp.SendKeys(chromedp.ID("phone"), "+12015550123"))
	b.submit("form[action$='/send'] button")
	m, _ := twilioCode(t, tw, 1)
	if got := tw.PostReceipt(m, "delivered", 0); got != 204 {
		t.Fatalf("receipt: %d", got)
	}
	b.do("wait for the delivered line", chromedp.Action[chromedp.Void](chromedp.Poll[chromedp.Void](
		`document.getElementById("delivery-line").textContent !== ""`)))
	if line := b.text("#delivery-line"); line != "Delivered to "+unbreakable.Replace("+1 201-555-0123") {
		t.Errorf("delivered line %q", line)
	}
	if hidden := eval[bool](b, `document.getElementById("delivery-failed").hidden`); !hidden {
		t.Errorf("the failed actions show for a delivered code")
	}
	b.checkPage("delivered")
	b.shot("code-delivered")

	// Another number, whose code does not arrive.
	b.submit("#other a")
	b.do("type the other number", chromedp.SendKeys(chromedp.ID("phone"), bob))
	b.submit("form[action$='/send'] button")
	m, _ = twilioCode(t, tw, 2)
	tw.PostReceipt(m, "undelivered", 30003)
	b.do("wait for the failed state", chromedp.Action[chromedp.Void](chromedp.Poll[chromedp.Void](
		`!document.getElementById("delivery-failed").hidden`)))
	if line := b.text("#delivery-line"); line != "We could not reach this number." {
		t.Errorf("failed line %q", line)
	}
	if call, other := b.text("#delivery-call"), b.text("#delivery-other"); call != "Get the code by phone call" || other != "Use another number" {
		t.Errorf("failed actions %q / %q", call, other)
	}
	b.checkPage("not delivered")
	b.shot("code-not-delivered")
	b.submit("#delivery-call")
	waitCall(t, tw)

	// A number that cannot take texts is told so, and offered the call.
	clock.Advance(31 * time.Second)
	tw.Fail(restcommtest.TwilioNotMobile)
	defer tw.Fail(restcommtest.TwilioNone)
	answer := make(chan struct{})
	tw.Hold(answer) // the provider answers once the code page is there
	defer tw.Hold(nil)
	b.open("/.otp/login")
	b.do("type the number", chromedp.SendKeys(chromedp.ID("phone"), alice))
	b.submit("form[action$='/send'] button")
	close(answer)
	b.do("wait for the failed state", chromedp.Action[chromedp.Void](chromedp.Poll[chromedp.Void](
		`!document.getElementById("delivery-failed").hidden`)))
	if line := b.text("#delivery-line"); line != "This number cannot receive texts." {
		t.Errorf("not-a-mobile line %q", line)
	}
	if call := b.text("#delivery-call"); call != "Get the code by phone call" {
		t.Errorf("no call offered to a number that cannot take texts: %q", call)
	}
	b.checkPage("not a mobile")
}

// waitCall waits for the call the fake was asked to place, in the background.
func waitCall(t *testing.T, tw *restcommtest.Twilio) {
	t.Helper()
	calls := tw.Calls()
	for deadline := time.Now().Add(5 * time.Second); len(calls) == 0 && time.Now().Before(deadline); calls = tw.Calls() {
		time.Sleep(10 * time.Millisecond) // the call is placed in the background
	}
	if len(calls) != 1 || calls[0].To != bob {
		t.Errorf("calls placed: %+v, want one to bob", calls)
	}
}
