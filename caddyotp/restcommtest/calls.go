package restcommtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Call is a voice call the fake placed. Like Restcomm, it fetches the call's script (RCML) from
// URL when the call is answered, which the fake does at once, in the background.
type Call struct {
	SID    string
	From   string
	To     string
	URL    string
	Method string
	// What fetching URL gave: the HTTP status and the RCML, once fetched.
	FetchStatus int
	RCML        string
}

// HoldCalls makes the following calls ring unanswered: the fake records them at once and does
// not fetch their script, so that a test can fetch it itself, later.
func (s *Server) HoldCalls(hold bool) {
	s.mu.Lock()
	s.hold = hold
	s.mu.Unlock()
}

// Calls returns the calls placed so far whose script has been fetched (or that are held),
// oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// WaitCalls waits until at least n calls have fetched their script and returns them all.
func (s *Server) WaitCalls(n int, timeout time.Duration) ([]Call, error) {
	return waitFor(&s.mu, &s.notify, &s.calls, n, timeout, "calls")
}

// placeCall answers POST .../Calls.json as Restcomm does (200 with the call record) and then,
// as the callee answers, fetches the RCML from Url with Method (default POST).
func (s *Server) placeCall(w http.ResponseWriter, r *http.Request) {
	c := Call{SID: "CA" + randomHex(16), From: r.PostForm.Get("From"), To: r.PostForm.Get("To"),
		URL: r.PostForm.Get("Url"), Method: r.PostForm.Get("Method")}
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	date := time.Now().Format("Mon, 02 Jan 2006 15:04:05 -0700")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": c.SID, "date_created": date, "date_updated": date, "account_sid": s.AccountSID,
		"to": c.To, "from": c.From, "status": "queued", "direction": "outbound-api", "api_version": APIVersion,
		"uri": "/" + APIVersion + "/Accounts/" + s.AccountSID + "/Calls/" + c.SID + ".json",
	})
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold {
		s.mu.Lock()
		s.calls = append(s.calls, c)
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
		return
	}
	go func() {
		form := url.Values{"CallSid": {c.SID}, "AccountSid": {s.AccountSID}, "From": {c.From}, "To": {c.To},
			"CallStatus": {"in-progress"}, "Direction": {"outbound-api"}, "ApiVersion": {APIVersion}}
		var resp *http.Response
		var err error
		if c.Method == http.MethodGet {
			resp, err = http.Get(c.URL + "?" + form.Encode())
		} else {
			resp, err = http.PostForm(c.URL, form)
		}
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			c.FetchStatus, c.RCML = resp.StatusCode, string(body)
		}
		s.mu.Lock()
		s.calls = append(s.calls, c)
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
	}()
}
