package restcommtest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VonageMessage is an SMS the Vonage fake accepted.
type VonageMessage struct {
	ID       string // message-id
	From     string
	To       string // as sent: E.164 without +
	Text     string // as the handset shows it: a text outside GSM-7 sent as type text is mangled
	Type     string // as sent; "" is the API's default, text
	Callback string
	TTL      string
	Signed   bool // authenticated by sig rather than api_secret
	Received time.Time
}

// VonageFailure makes the Vonage fake refuse every following send: a messages[].status code
// of the SMS API ("1" throttled ... "33"), which it answers inside a 200 as the API does, or
// one of the HTTP-level failures below.
type VonageFailure string

const (
	VonageNone               VonageFailure = ""
	VonageThrottled          VonageFailure = "1"
	VonageInvalidCredentials VonageFailure = "4"
	VonageInternalError      VonageFailure = "5"
	VonageInvalidMessage     VonageFailure = "6"
	VonageNumberBarred       VonageFailure = "7"
	VonageAccountBarred      VonageFailure = "8"
	VonageQuotaExceeded      VonageFailure = "9"
	VonageInvalidSender      VonageFailure = "15"
	VonageNonWhitelisted     VonageFailure = "29"
	VonageNumberDeactivated  VonageFailure = "33"
	VonageHTTP500            VonageFailure = "http-500" // 500 with a text body: the platform's own failure
	VonageDropConnection     VonageFailure = "drop"     // the connection closed without an answer
)

// vonageErrorTexts are the error-text of each status code (the SMS API specification's x-errors).
var vonageErrorTexts = map[string]string{
	"1": "Throttled", "2": "Missing params", "3": "Invalid params", "4": "Bad Credentials",
	"5": "Internal Error", "6": "Invalid Message", "7": "Number Barred", "8": "Partner Account Barred",
	"9": "Partner Quota Violation", "10": "Too Many Existing Binds", "11": "Account Not Enabled For HTTP",
	"12": "Message Too Long", "14": "Invalid Signature", "15": "Invalid Sender Address",
	"22": "Invalid Network Code", "23": "Invalid Callback Url", "29": "Non-Whitelisted Destination",
	"32": "Signature And API Secret Disallowed", "33": "Number De-activated",
}

// Vonage is a running fake of the Vonage SMS API (POST /sms/json). It checks what the API
// checks (api_key with api_secret, or a signature when SignatureSecret is set; the required
// fields; to as digits), answers 200 with the messages[] of the real API, refusals included,
// and posts delivery receipts (JSON, signed when SignatureSecret is set) to a message's
// callback. Close it when done.
type Vonage struct {
	*httptest.Server
	APIKey    string
	APISecret string
	// Set by SignWith: the account's signature secret and method (md5hash, md5, sha1, sha256,
	// sha512), which sign receipts and verify signed requests.
	SignatureSecret string
	SignatureMethod string

	mu       sync.Mutex
	messages []VonageMessage
	failure  VonageFailure
	refusals map[string]VonageFailure
	receipts []ReceiptStep
	notify   chan struct{}
}

// NewVonage starts a fake with a fresh account: an 8-character key and a 16-character secret.
func NewVonage() *Vonage {
	s := &Vonage{APIKey: randomHex(4), APISecret: randomHex(8), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// SignWith turns signed requests and receipts on, as Vonage support does for an account.
func (s *Vonage) SignWith(method, secret string) {
	s.mu.Lock()
	s.SignatureMethod, s.SignatureSecret = method, secret
	s.mu.Unlock()
}

// Fail sets how every following send fails; VonageNone restores success.
func (s *Vonage) Fail(f VonageFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// Refuse makes every following send to (E.164, with or without +) fail with code f.
func (s *Vonage) Refuse(to string, f VonageFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]VonageFailure{}
	}
	s.refusals[strings.TrimPrefix(to, "+")] = f
}

// AutoReceipts makes every following accepted message with a callback get these receipts
// (Status delivered, expired, failed, rejected, accepted, buffered; ErrorCode the err-code),
// in this order, each After the one before; none withholds them.
func (s *Vonage) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Vonage) Messages() []VonageMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]VonageMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Vonage) WaitMessages(n int, timeout time.Duration) ([]VonageMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "vonage messages")
}

// ReceiptParams are the fields of a receipt of m with status and errCode, as Vonage posts them:
// signed (timestamp, nonce, sig) when the account signs.
func (s *Vonage) ReceiptParams(m VonageMessage, status string, errCode int) map[string]string {
	now := time.Now().UTC()
	p := map[string]string{"msisdn": m.To, "to": m.From, "network-code": "310090", "messageId": m.ID,
		"price": "0.00570000", "status": status, "scts": now.Format("0601021504"), "err-code": strconv.Itoa(errCode),
		"api-key": s.APIKey, "message-timestamp": now.Format("2006-01-02 15:04:05")}
	s.mu.Lock()
	method, secret := s.SignatureMethod, s.SignatureSecret
	s.mu.Unlock()
	if secret != "" {
		p["timestamp"] = strconv.FormatInt(now.Unix(), 10)
		p["nonce"] = randomHex(4) + "-" + randomHex(2) + "-" + randomHex(2) + "-" + randomHex(2) + "-" + randomHex(6)
		p["sig"] = VonageSignature(method, secret, p)
	}
	return p
}

// PostReceipt posts a receipt of m (signed as the account signs) to its callback now, as JSON,
// and returns the receiver's HTTP status (0 if it did not answer).
func (s *Vonage) PostReceipt(m VonageMessage, status string, errCode int) int {
	return PostVonageReceipt(m.Callback, s.ReceiptParams(m, status, errCode))
}

// PostVonageReceipt posts params as a JSON receipt to callback, as Vonage does (or a forger
// would), and returns the receiver's HTTP status.
func PostVonageReceipt(callback string, params map[string]string) int {
	b, _ := json.Marshal(params)
	return postRaw(callback, b, nil)
}

// VonageSignature signs params (sig excluded) as Vonage's signing guide says: sorted by name,
// & and = in values replaced by _, "&k=v" joined; md5hash is md5(that + secret) in lower-case
// hex, the others HMAC(secret, that) in upper-case hex, as Vonage's own library writes them.
func VonageSignature(method, secret string, params map[string]string) string {
	names := make([]string, 0, len(params))
	for k := range params {
		if k != "sig" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString("&" + k + "=" + strings.NewReplacer("&", "_", "=", "_").Replace(params[k]))
	}
	hashes := map[string]func() hash.Hash{"md5": md5.New, "sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New}
	if method == "md5hash" {
		sum := md5.Sum([]byte(b.String() + secret))
		return hex.EncodeToString(sum[:])
	}
	h, ok := hashes[method]
	if !ok {
		panic("restcommtest: unknown Vonage signature method " + method)
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(b.String()))
	return strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
}

var vonageTo = regexp.MustCompile(`^[0-9]{7,15}$`)

func (s *Vonage) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, method, secret, refusals := s.failure, s.SignatureMethod, s.SignatureSecret, s.refusals
	s.mu.Unlock()
	if r.URL.Path != "/sms/json" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	switch failure {
	case VonageDropConnection:
		drop(w)
		return
	case VonageHTTP500:
		plain(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || r.ParseForm() != nil {
		vonageRefusal(w, "", "2")
		return
	}
	p := map[string]string{}
	for k := range r.PostForm {
		p[k] = r.PostForm.Get(k)
	}
	to := p["to"]
	switch {
	case p["api_key"] == "" || p["from"] == "" || to == "" || p["text"] == "" || p["api_secret"] == "" && p["sig"] == "":
		vonageRefusal(w, to, "2")
		return
	case p["api_secret"] != "" && p["sig"] != "":
		vonageRefusal(w, to, "32")
		return
	case !equal(p["api_key"], s.APIKey):
		vonageRefusal(w, to, "4")
		return
	case p["sig"] != "":
		if secret == "" || p["timestamp"] == "" || !equal(strings.ToLower(p["sig"]), strings.ToLower(VonageSignature(method, secret, p))) {
			vonageRefusal(w, to, "14")
			return
		}
	case !equal(p["api_secret"], s.APISecret):
		vonageRefusal(w, to, "4")
		return
	}
	if !vonageTo.MatchString(to) {
		vonageRefusal(w, to, "3")
		return
	}
	if code := refusals[to]; code != "" {
		vonageRefusal(w, to, string(code))
		return
	}
	if failure != VonageNone {
		vonageRefusal(w, to, string(failure))
		return
	}
	text := p["text"]
	if t := p["type"]; t == "" || t == "text" {
		text = gsmMangled(text)
	}
	m := VonageMessage{ID: strings.ToUpper(randomHex(8)), From: p["from"], To: to, Text: text, Type: p["type"],
		Callback: p["callback"], TTL: p["ttl"], Signed: p["sig"] != "", Received: time.Now()}
	writeJSON(w, http.StatusOK, map[string]any{"message-count": "1", "messages": []map[string]string{{
		"to": to, "message-id": m.ID, "status": "0", "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "310090"}}})
	s.mu.Lock()
	s.messages = append(s.messages, m)
	steps := append([]ReceiptStep(nil), s.receipts...)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if m.Callback != "" {
		schedule(steps, func(st ReceiptStep) { s.PostReceipt(m, st.Status, st.ErrorCode) })
	}
}

// vonageRefusal answers a refusal as the SMS API does: 200, and the code in messages[].status.
func vonageRefusal(w http.ResponseWriter, to, code string) {
	writeJSON(w, http.StatusOK, map[string]any{"message-count": "1", "messages": []map[string]string{{
		"to": to, "status": code, "error-text": vonageErrorTexts[code]}}})
}

// gsm7 is the GSM 03.38 alphabet with its extension table: what a text message of type text
// can carry; anything else reaches the handset as "?".
const gsm7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\f^{}\\[~]|€"

func gsmMangled(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(gsm7, r) {
			return r
		}
		return '?'
	}, s)
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
