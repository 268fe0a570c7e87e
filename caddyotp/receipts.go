package caddyotp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// Receipts are posted to public_url + P/receipt/{token}, a token sealed over one code of one
// flow and the provider handed it: nothing is stored before a send (docs/ARCHITECTURE.md).

// receiptBook seals receipt tokens and opens the ones receipts are posted to.
type receiptBook struct {
	aead cipher.AEAD
	url  string        // public_url + P + "/receipt/": never built from a request
	ttl  time.Duration // code_ttl
	ad   []byte        // what a token is bound to besides its record: the gate's url and audience
}

// newReceiptBook makes the book of the receipt key, which is 32 bytes (deriveKeys), for the gate
// whose receipts come to url and whose sessions name gate (its audience). The gates of one Caddy
// share the key; a token opens only at the gate that sealed it (and at the instances that share
// its name), so a receipt of one gate's signed provider cannot be posted to a gate whose
// provider signs nothing.
func newReceiptBook(key []byte, url string, gate []byte, ttl time.Duration) *receiptBook {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("receipt key: " + err.Error()) // a derived key always has the length
	}
	aead, _ := cipher.NewGCM(block) // fails only for a block size other than AES's
	ad := append([]byte("receipt\x00"+url+"\x00"), gate...)
	return &receiptBook{aead: aead, url: url, ttl: ttl, ad: ad}
}

// receiptRecord is what a token is for.
type receiptRecord struct {
	Flow     string
	Hash     []byte    // a prefix of the code's hash (codeHash)
	Provider string    // the provider handed the message, as it names itself (Sent.Provider)
	At       time.Time // when the token was made, just before the send, on the machine's clock
}

const (
	receiptHashLen     = 16
	maxReceiptProvider = 64
)

// sentAgo is how long ago the message was handed over; false for a time in the future.
func (r *receiptRecord) sentAgo() (time.Duration, bool) {
	ago := time.Since(r.At)
	return ago, ago >= 0
}

// callbacks gives the receipt URLs of flow flowID's code with hash, per provider, for a send
// that begins now (Message.Receipts). A token that cannot be sealed gives "": no receipts.
func (rb *receiptBook) callbacks(flowID string, hash []byte) func(provider string) string {
	at := time.Now()
	return func(provider string) string {
		token, err := rb.seal(receiptRecord{Flow: flowID, Hash: hash, Provider: provider, At: at})
		if err != nil {
			return ""
		}
		return rb.url + token
	}
}

// seal makes the token of rec: base64url(nonce | AES-GCM(at | hash prefix | flow | provider)).
func (rb *receiptBook) seal(rec receiptRecord) (string, error) {
	if len(rec.Flow) != flowIDLen || len(rec.Hash) < receiptHashLen || len(rec.Provider) > maxReceiptProvider {
		return "", errors.New("receipt token: malformed record")
	}
	plain := binary.BigEndian.AppendUint64(nil, uint64(rec.At.UnixNano()))
	plain = append(plain, rec.Hash[:receiptHashLen]...)
	plain = append(plain, rec.Flow...)
	plain = append(plain, rec.Provider...)
	nonce := make([]byte, rb.aead.NonceSize(), rb.aead.NonceSize()+len(plain)+rb.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(rb.aead.Seal(nonce, nonce, plain, rb.ad)), nil
}

// open returns the record of token, or nil for one the gate did not seal or that outlived its
// code's time.
func (rb *receiptBook) open(token string) *receiptRecord {
	if len(token) > 512 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < rb.aead.NonceSize() {
		return nil
	}
	n := rb.aead.NonceSize()
	plain, err := rb.aead.Open(nil, b[:n], b[n:], rb.ad)
	if err != nil || len(plain) < 8+receiptHashLen+flowIDLen {
		return nil
	}
	rec := &receiptRecord{
		At:       time.Unix(0, int64(binary.BigEndian.Uint64(plain))),
		Hash:     plain[8 : 8+receiptHashLen],
		Flow:     string(plain[8+receiptHashLen : 8+receiptHashLen+flowIDLen]),
		Provider: string(plain[8+receiptHashLen+flowIDLen:]),
	}
	if ago, ok := rec.sentAgo(); !ok || ago > rb.ttl {
		return nil
	}
	return rec
}

// receiptState is the delivery state a receipt's status makes, or "" for one that says nothing
// new.
func receiptState(s ReceiptStatus) string {
	switch s {
	case ReceiptSent:
		return deliverySent
	case ReceiptDelivered:
		return deliveryDelivered
	case ReceiptFailed:
		return deliveryFailed
	}
	return ""
}
