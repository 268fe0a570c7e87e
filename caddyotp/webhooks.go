package caddyotp

import (
	"errors"
	"net/http"
)

// webhooks answer the providers' own requests under the gate's path: the script of a voice
// call, and delivery receipts. No browser sends them, so they carry no form or CSRF token; the
// token in their URL (and, for receipts, the provider's signature) authenticates them.
type webhooks struct {
	voice       *voiceScripts // nil unless voice calls are on
	deliveries  *deliveries
	reader      ReceiptReader // the sender, when it reads receipts
	obs         *observer
	unavailable func(w http.ResponseWriter, r *http.Request, err error) error // the store failed
}

// voiceScript answers the provider's fetch of a call's script, once. An unknown, used or expired
// token is a 404.
func (wh *webhooks) voiceScript(w http.ResponseWriter, r *http.Request, token string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	if wh.voice == nil {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	rcml, ok, err := wh.voice.script(r.Context(), token)
	if err != nil {
		return wh.unavailable(w, r, err)
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	w.Header().Set("Content-Type", "application/xml")
	_, err = w.Write(rcml)
	return err
}

// receipt takes a provider's delivery receipt. The token must be one the gate sealed, not
// yet past code_ttl, and the sender it names must find the receipt authentic (where the
// provider signs, over the URL the gate gave, from public_url), before anything is read from the
// store or changes: else 404 or 403. Neither the body nor the token is logged. Like voice
// scripts, receipts are not counted by ip_limit.
func (wh *webhooks) receipt(w http.ResponseWriter, r *http.Request, token string) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	rb := wh.deliveries.receipts
	if rb == nil {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	rec := rb.open(token)
	if rec == nil {
		wh.obs.receipt("unknown", "", "", "")
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	receipt, err := wh.reader.ReadReceipt(r, rec.Provider, rb.url+token)
	switch {
	case errors.Is(err, ErrForgedReceipt):
		wh.obs.receipt("bad_signature", rec.Provider, "", "")
		w.WriteHeader(http.StatusForbidden)
		return nil
	case err != nil:
		w.WriteHeader(http.StatusBadRequest)
		return nil
	}
	state, result := receiptState(receipt.Status), "unchanged"
	if state != "" {
		moved, err := wh.deliveries.receive(r.Context(), rec, state)
		if err != nil {
			wh.obs.storeFailed(err)
			w.WriteHeader(http.StatusServiceUnavailable)
			return nil
		}
		if moved {
			result = "accepted"
		}
	}
	wh.obs.receipt(result, rec.Provider, state, receipt.Reason)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
