package caddyotp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// gates are the otp handlers of the running configs. Admin modules are built before any app,
// so a gate registers here in Provision and leaves in Cleanup, as reverse_proxy's upstreams do
// for its admin module.
var gates struct {
	sync.Mutex
	all map[*Handler]struct{}
}

func registerGate(h *Handler) {
	gates.Lock()
	defer gates.Unlock()
	if gates.all == nil {
		gates.all = make(map[*Handler]struct{})
	}
	gates.all[h] = struct{}{}
}

func unregisterGate(h *Handler) {
	gates.Lock()
	delete(gates.all, h)
	gates.Unlock()
}

func runningGates() []*Handler {
	gates.Lock()
	defer gates.Unlock()
	out := make([]*Handler, 0, len(gates.all))
	for h := range gates.all {
		out = append(out, h)
	}
	return out
}

// adminAPI is the otp gate's admin API (module admin.api.otp), behind Caddy's own admin
// endpoint and its access controls:
//
//	POST /otp/revoke   {"phone": "+1 201 555 0123"} or {"user": "alice"}
//
// ends every session and trusted browser of that phone (and of the users bound to it) or user,
// on every gate of the running config, and through their stores on every instance that shares
// them, and removes their passkeys ("passkeys" in the answer says how many);
//
//	GET    /otp/pumping           the number prefixes the pumping shield holds quarantined
//	DELETE /otp/pumping/+4479111  lifts that prefix's quarantine and forgets its count
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.otp", New: func() caddy.Module { return new(adminAPI) }}
}

// Routes returns the admin routes of the otp gate.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/otp/revoke", Handler: caddy.AdminHandlerFunc(a.revoke)},
		{Pattern: "/otp/pumping", Handler: caddy.AdminHandlerFunc(a.pumping)},
		{Pattern: "/otp/pumping/", Handler: caddy.AdminHandlerFunc(a.pumping)}}
}

// revokeRequest is the body of POST /otp/revoke: exactly one of its fields.
type revokeRequest struct {
	Phone string `json:"phone,omitempty"`
	User  string `json:"user,omitempty"`
}

func badRevoke(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err, Message: err.Error()}
}

func (a *adminAPI) revoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST"), Message: "use POST"}
	}
	var req revokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRevoke(`the body must be JSON: {"phone": "+12015550123"} or {"user": "alice"} (%v)`, err)
	}
	req.Phone, req.User = strings.TrimSpace(req.Phone), strings.TrimSpace(req.User)
	if (req.Phone == "") == (req.User == "") {
		return badRevoke(`give exactly one of "phone" and "user", e.g. {"phone": "+12015550123"}`)
	}
	running := runningGates()
	if len(running) == 0 {
		err := errors.New("no otp gate is running in this Caddy's config")
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err, Message: err.Error()}
	}
	// First what to revoke on each gate, so that a request some gate cannot read revokes nothing.
	type record struct {
		store string // the store's identity: gates that share one write once
		id    [16]byte
	}
	type write struct {
		gate    *Handler
		subject string
	}
	done := map[record]bool{}
	var writes []write
	subjectsOf := map[*Handler][]string{} // every gate's, for its passkeys
	var what, phone string
	for _, h := range running {
		subjects, name, err := h.revokeSubjects(req)
		if err != nil {
			return badRevoke("%v", err)
		}
		subjectsOf[h] = subjects
		if req.Phone != "" && len(subjects) > 0 {
			if phone != "" && subjects[0] != phone {
				return badRevoke("%q names different numbers on gates with different default regions; write it with its country code, e.g. %s", req.Phone, phone)
			}
			phone = subjects[0]
		}
		what = name
		for _, subject := range subjects {
			rec := record{storeIdentity(h.store), subjectID(h.keys.subject, subject)}
			if !done[rec] {
				done[rec] = true
				writes = append(writes, write{h, subject})
			}
		}
	}
	for _, wr := range writes {
		h, id := wr.gate, subjectID(wr.gate.keys.subject, wr.subject)
		if err := h.store.Revoke(r.Context(), Revocation{ID: id, Subject: id, At: h.now(), TTL: subjectRevocationTTL}); err != nil {
			h.obs.storeFailed(err)
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err,
				Message: "a store could not record the revocation, so it may have reached some gates only; revoking again is safe: " + err.Error()}
		}
		h.obs.revoked(wr.subject, true, "admin API")
	}
	if len(done) == 0 {
		return badRevoke("no otp gate binds a phone to user %q", req.User)
	}
	// Every gate's passkeys, whichever gate wrote the revocation for a store they share: each
	// keeps its own, by its relying party and its key.
	passkeys := 0
	for _, h := range running {
		if h.passkeys == nil {
			continue
		}
		for _, subject := range subjectsOf[h] {
			n, err := h.passkeys.pk.removeAll(r.Context(), subject, "admin API")
			passkeys += n
			if err != nil {
				return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err,
					Message: "the sessions are revoked, but the passkeys' storage could not remove them all; revoking again is safe: " + err.Error()}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"revoked": what, "records": len(done), "passkeys": passkeys})
}

// revokeSubjects are the subjects whose sessions a revocation request ends on this gate, and a
// name for the answer (a masked phone, or the user): a phone, and every user bound to it; or a
// user's session with the phone the user is bound to.
func (h *Handler) revokeSubjects(req revokeRequest) ([]string, string, error) {
	users := h.flows.allow.users
	if req.User != "" {
		if phone := users[req.User]; phone != "" {
			return []string{userSubject(req.User, phone)}, req.User, nil
		}
		return nil, req.User, nil
	}
	phone, _, err := normalizePhone(req.Phone, h.DefaultRegion)
	if err != nil {
		return nil, "", fmt.Errorf("%q is not a phone number; write it with its country code, e.g. +12015550123", req.Phone)
	}
	subjects := []string{phone}
	for user, p := range users {
		if p == phone {
			subjects = append(subjects, userSubject(user, p))
		}
	}
	return subjects, h.obs.phone(phone), nil
}

var _ caddy.AdminRouter = (*adminAPI)(nil)

// storeIdentity names the state a store holds, so that gates sharing it are told apart from gates
// that do not: its storeName, else the store itself.
func storeIdentity(s Store) string {
	if n, ok := s.(interface{ storeName() string }); ok {
		return n.storeName()
	}
	return fmt.Sprintf("%p", s)
}
