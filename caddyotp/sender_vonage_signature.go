package caddyotp

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// How Vonage's SMS API signs (Vonage's "signing messages" guide), and how its receipts read.

// vonageReceiptParams reads a receipt's fields, from a JSON object or a form.
func vonageReceiptParams(r *http.Request) (map[string]string, error) {
	params := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var fields map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return nil, err
		}
		for k, v := range fields {
			switch v := v.(type) {
			case string:
				params[k] = v
			case json.Number:
				params[k] = v.String()
			case bool:
				params[k] = strconv.FormatBool(v)
			case nil:
				params[k] = ""
			default:
				return nil, fmt.Errorf("vonage receipt: field %q is not a string", k)
			}
		}
		return params, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	for k := range r.PostForm {
		params[k] = r.PostForm.Get(k)
	}
	return params, nil
}

// vonageReceiptErrors are the receipts' err-code meanings (Vonage's SMS delivery error codes).
var vonageReceiptErrors = map[string]string{
	"1": "unknown", "2": "absent subscriber (temporary)", "3": "absent subscriber (permanent)",
	"4": "call barred by user", "5": "portability error", "6": "anti-spam rejection",
	"7": "handset busy", "8": "network error", "9": "illegal number (the recipient opted out)",
	"10": "illegal message", "11": "unroutable", "12": "destination unreachable",
	"13": "subscriber age restriction", "14": "number blocked by carrier",
}

// vonageReceipt maps a receipt's status: delivered, or failed (expired, failed, rejected, or a
// final status with a non-zero err-code, which Vonage says indicates a failed delivery); the
// intermediate accepted and buffered, and unknown, say nothing new.
func vonageReceipt(status, errCode string) Receipt {
	failed := errCode != "" && errCode != "0"
	switch status {
	case "delivered":
		if !failed {
			return Receipt{Status: ReceiptDelivered}
		}
	case "expired", "failed", "rejected":
	default:
		return Receipt{Status: ReceiptPending}
	}
	reason := status
	if failed {
		meaning := vonageReceiptErrors[errCode]
		if meaning == "" {
			meaning = "error"
		}
		reason += ": " + meaning + " (err-code " + scrubbed(errCode) + ")"
	}
	return Receipt{Status: ReceiptFailed, Reason: reason}
}

// vonageHashes are the signature methods: md5hash is md5(string + secret), the others HMACs
// keyed with the secret.
var vonageHashes = map[string]func() hash.Hash{"md5hash": md5.New, "md5": md5.New, "sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New}

// vonageSignature signs params (sig excluded) as Vonage's signing guide says: the fields sorted
// by name, each value's & and = replaced by _, joined as &k1=v1&k2=v2 (a leading &), then
// md5(that + secret) for md5hash, or HMAC(secret, that); lower-case hex. (Vonage compares
// case-insensitively; whether its requests' check does too is not stated: its SDKs send either.)
func vonageSignature(method, secret string, params map[string]string) string {
	names := make([]string, 0, len(params))
	for k := range params {
		if k != "sig" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	clean := strings.NewReplacer("&", "_", "=", "_")
	for _, k := range names {
		b.WriteString("&" + k + "=" + clean.Replace(params[k]))
	}
	newHash, ok := vonageHashes[method]
	if !ok {
		return ""
	}
	if method == "md5hash" {
		sum := md5.Sum([]byte(b.String() + secret))
		return hex.EncodeToString(sum[:])
	}
	m := hmac.New(newHash, []byte(secret))
	m.Write([]byte(b.String()))
	return hex.EncodeToString(m.Sum(nil))
}

// validVonageSignature checks params' sig, case-insensitively, in constant time.
// A field name with & or = in it is refused: the signed string does not escape names, so such a
// name could carry other fields' text, and a signed receipt be read with a field taken out.
func validVonageSignature(method, secret string, params map[string]string) bool {
	for k := range params {
		if strings.ContainsAny(k, "&=") {
			return false
		}
	}
	sig := params["sig"]
	want := vonageSignature(method, secret, params)
	return secret != "" && sig != "" && want != "" && sameText(strings.ToLower(sig), want)
}
