package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/url"
	"time"
)

// A provider reports what became of an SMS by posting receipts to the message's StatusCallback:
// public_url + P/receipt/{token}, never a URL built from a request. The token is random, made
// for one code of one flow, and dies with that code: the store keeps, under a hash of the
// token, which flow and code it is for and which sender was handed the message, for code_ttl;
// a receipt counts only while that code is the flow's live one. Where the provider signs its
// receipts (X-Twilio-Signature), the signature is checked with that sender's key over the URL
// as the gate gave it; Restcomm does not sign, so there the token alone authenticates. A receipt
// only ever moves the delivery state forward: sending < sent < delivered or failed.

// receiptBook makes receipt tokens and reads the receipts posted to them.
type receiptBook struct {
	store  Store
	sender Sender
	key    []byte        // the receipt key: the store sees a hash of each token only
	url    string        // public_url + P + "/receipt/": never built from a request
	ttl    time.Duration // code_ttl
}

// receiptRecord is what a token is for.
type receiptRecord struct {
	Flow string `json:"f"`
	Hash []byte `json:"h"` // the code's hash (codeHash)
	Via  int    `json:"v"` // which of a failover's senders was handed the message (0 for a sender on its own)
	At   int64  `json:"t"` // when it was handed over, Unix ns on the machine's clock
}

// sentAgo is how long ago the message was handed over; false for a record without that time.
func (r *receiptRecord) sentAgo() (time.Duration, bool) {
	ago := time.Since(time.Unix(0, r.At))
	return ago, r.At != 0 && ago >= 0
}

// storeKey is where the record of token is kept: under a keyed hash of the token.
func (rb *receiptBook) storeKey(token string) string {
	m := hmac.New(sha256.New, rb.key)
	m.Write([]byte(token))
	return receiptKey(m.Sum(nil)[:16])
}

// sendHooks go with one message to the sender: the receipt callback to give the provider
// ("" for none), and attempt, which is told which sender is about to be handed the message and
// whether it asks for receipts, before it is.
type sendHooks struct {
	callback string
	attempt  func(ctx context.Context, via int, receipts bool) error
}

// hook makes a new token for the code hash of flow flowID. It stores nothing until a sender
// that asks for receipts is about to send (record).
func (rb *receiptBook) hook(flowID string, hash []byte) (callback string, record func(ctx context.Context, via int) error, err error) {
	token, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	key := rb.storeKey(token)
	return rb.url + token, func(ctx context.Context, via int) error {
		b, _ := json.Marshal(receiptRecord{Flow: flowID, Hash: hash, Via: via, At: time.Now().UnixNano()})
		return rb.store.Set(ctx, key, b, rb.ttl)
	}, nil
}

// lookup returns the record of token, or nil for an unknown, malformed or expired one.
func (rb *receiptBook) lookup(ctx context.Context, token string) (*receiptRecord, error) {
	if !validToken(token) {
		return nil, nil
	}
	b, err := rb.store.Get(ctx, rb.storeKey(token))
	if err != nil || b == nil {
		return nil, err
	}
	var rec receiptRecord
	if json.Unmarshal(b, &rec) != nil || rec.Flow == "" || len(rec.Hash) < 8 {
		return nil, nil
	}
	return &rec, nil
}

// authentic says whether a receipt posted to token with form and signature comes from the
// sender that was handed the message. The URL signed is the one the gate gave the provider.
func (rb *receiptBook) authentic(rec *receiptRecord, token string, form url.Values, signature string) bool {
	return verifyReceiptVia(rb.sender, rec.Via, rb.url+token, form, signature)
}

// receiptState is the delivery state a receipt's MessageStatus makes, or "" for one that
// says nothing new (queued, accepted, scheduled, sending) or that the gate does not know.
func receiptState(status string) string {
	switch status {
	case "sent":
		return deliverySent
	case "delivered":
		return deliveryDelivered
	case "undelivered", "failed":
		return deliveryFailed
	}
	return ""
}
