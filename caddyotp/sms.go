package caddyotp

import (
	"context"
	"strings"
)

// smsSender returns the send of an SMS to phone: the message (the operator's, or the default in
// the visitor's language) with {code}, {site} and {host} ({http.request.host} is how the
// Caddyfile writes {host}), and the origin-bound line "@host #code" that Safari and Chrome read
// to offer the code for autofill. Nothing in it comes from the request but the language.
func (fl *flows) smsSender(v *visit, phone string) sendFunc {
	site, host := fl.site(v), v.host
	if host == "" {
		host = site
	}
	text := fl.message
	if text == "" {
		text = catalog[v.lang]["sms"]
		if site == "" {
			text = catalog[v.lang]["sms_no_site"]
		}
	}
	bound := v.host
	sender := fl.deliveries.sender
	ttl := fl.codeTTL
	return func(ctx context.Context, code string, receipts func(string) string) (Sent, error) {
		return sender.Send(ctx, Message{To: phone, Body: smsBody(text, code, site, host, bound), Code: code, Validity: ttl, Receipts: receipts})
	}
}

// smsBody is an SMS: text with {code}, {site} and {host} filled in, and the origin-bound line
// "@bound #code" when the host is known.
func smsBody(text, code, site, host, bound string) string {
	body := strings.NewReplacer("{code}", code, "{site}", site, "{host}", host, "{http.request.host}", host).Replace(text)
	if bound != "" {
		body += "\n\n@" + bound + " #" + code
	}
	return body
}

// smsSegments is how many segments an SMS takes: GSM-7 (160 septets, 153 a part when
// concatenated; the extension table takes two) when every character is in that alphabet, else
// UCS-2 (70 UTF-16 units, 67 a part).
func smsSegments(body string) int {
	n, single, part := 0, 160, 153
	if isGSM7(body) {
		for _, r := range body {
			n++
			if strings.ContainsRune("\f^{}\\[~]|€", r) {
				n++
			}
		}
	} else {
		single, part = 70, 67
		for _, r := range body {
			n++
			if r > 0xFFFF {
				n++
			}
		}
	}
	if n <= single {
		return 1
	}
	return (n + part - 1) / part
}

// gsm7 is the GSM 03.38 alphabet with its extension table: what an SMS carries in its default
// encoding.
const gsm7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà" +
	"\f^{}\\[~]|€"

func isGSM7(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune(gsm7, r) {
			return false
		}
	}
	return true
}
