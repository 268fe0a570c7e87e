package caddyotp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// pumping is the admin API's GET /otp/pumping and DELETE /otp/pumping/{prefix}.
func (a *adminAPI) pumping(w http.ResponseWriter, r *http.Request) error {
	prefix, one := strings.CutPrefix(r.URL.Path, "/otp/pumping/")
	allow := http.MethodGet
	if one {
		allow = http.MethodDelete
	}
	if r.Method != allow {
		w.Header().Set("Allow", allow)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use " + allow), Message: "use " + allow}
	}
	if one && !validPrefix(prefix) {
		return badRevoke("%q is not a prefix in E.164 with its +, e.g. /otp/pumping/+4479111", prefix)
	}
	var shields []*pumpingShield
	seen := map[string]bool{}
	for _, h := range runningGates() {
		s := h.flows.deliveries.shield
		if s == nil || s.off {
			continue
		}
		// Gates that share a store and its key share its quarantines: each is read or lifted once.
		if id := storeIdentity(h.store) + "\x00" + s.prefixTag("+1"); !seen[id] {
			seen[id] = true
			shields = append(shields, s)
		}
	}
	if len(shields) == 0 {
		err := errors.New("no otp gate with the pumping shield on is running in this Caddy's config")
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err, Message: err.Error()}
	}
	unavailable := func(s *pumpingShield, err error) error {
		s.obs.storeFailed(err)
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: "a store could not answer, try again: " + err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	if one {
		held := false
		for _, s := range shields {
			lifted, err := s.lift(r.Context(), prefix)
			if err != nil {
				return unavailable(s, err)
			}
			held = held || lifted
		}
		return json.NewEncoder(w).Encode(map[string]any{"lifted": prefix, "was_quarantined": held})
	}
	type listed struct {
		Prefix     string    `json:"prefix"`
		Country    string    `json:"country"`
		Unverified int64     `json:"unverified"`
		Since      time.Time `json:"since"`
		Until      time.Time `json:"until"`
		Monitor    bool      `json:"monitor,omitempty"`
	}
	out := []listed{}
	for _, s := range shields {
		qs, err := s.quarantines(r.Context())
		if err != nil {
			return unavailable(s, err)
		}
		for _, q := range qs {
			out = append(out, listed{q.Prefix, q.Country, q.Unverified, time.Unix(0, q.Since).UTC(), time.Unix(0, q.Until).UTC(), q.Monitor})
		}
	}
	return json.NewEncoder(w).Encode(map[string]any{"quarantined": out})
}
