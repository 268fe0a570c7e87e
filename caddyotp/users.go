package caddyotp

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// userPrefix marks a session subject that is a first-factor user, not a phone (phones always
// start with "+"): "u:" user "\x00" phone, the phone the user's code went to. A user's session
// holds only where that user is bound to that same phone: not on a gate that binds the user to
// another phone, nor after the operator rebinds the user.
const userPrefix = "u:"

// userSubject is the subject of a session of user, whose code went to phone.
func userSubject(user, phone string) string { return userPrefix + user + "\x00" + phone }

// subjectUser splits a subject: the user and the phone of a user's session; ok is false for a
// phone's.
func subjectUser(subject string) (user, phone string, ok bool) {
	rest, ok := strings.CutPrefix(subject, userPrefix)
	if !ok {
		return "", "", false
	}
	user, phone, _ = strings.Cut(rest, "\x00")
	return user, phone, true
}

// subjectName is what the site behind the gate knows a subject by: the user, or the phone.
func subjectName(subject string) string {
	if user, _, ok := subjectUser(subject); ok {
		return user
	}
	return subject
}

// userPhones binds first-factor users ({http.auth.user.id}, from basic_auth or forward_auth) to
// the phone their code goes to.
type userPhones map[string]string

// add normalises a user's phone; where names the source in errors.
func (u userPhones) add(user, phone, defaultRegion, where string) error {
	if user == "" {
		return fmt.Errorf("%s: a user needs a name", where)
	}
	e164, _, err := normalizePhone(phone, defaultRegion)
	if err != nil {
		return fmt.Errorf("%s: user %q: %q is not a valid phone number (write it in E.164, e.g. +12015550123)", where, user, phone)
	}
	u[user] = e164
	return nil
}

// addFile reads "USER PHONE" lines (the phone is the rest of the line); blank lines and
// # comments are skipped.
func (u userPhones) addFile(path, defaultRegion string) error {
	return readEntries(path, "users_file", func(entry, where string) error {
		user, phone, ok := strings.Cut(strings.Replace(entry, "\t", " ", 1), " ")
		if phone = strings.TrimSpace(phone); !ok || phone == "" {
			return fmt.Errorf("%s: expected a user and a phone number", where)
		}
		return u.add(user, phone, defaultRegion, where)
	})
}

// allowlist says who may sign in at a gate: phones on the allowlist, first-factor users bound to
// phones, and the regions codes may go to.
type allowlist struct {
	phones        phoneList
	users         userPhones
	regions       map[string]bool // nil: any
	defaultRegion string
	obs           *observer
}

// allows says whether a session's subject may pass for a visitor whose first factor (if any) is
// user: a user session needs that same user, still bound to the phone its code went to; a phone
// session needs the phone allowed, and no first-factor user whom a user session should have named.
func (w *allowlist) allows(subject, user string) bool {
	if name, phone, ok := subjectUser(subject); ok {
		return user == name && phone != "" && w.users[name] == phone
	}
	if len(w.users) > 0 && user != "" {
		return false
	}
	return w.phones.allows(subject)
}

// bound says whether the code goes to a first-factor user's phone rather than a typed one: the
// gate binds users and the visitor has a first factor, or the gate binds users only.
func (w *allowlist) bound(user string) bool {
	return len(w.users) > 0 && (user != "" || w.phones.empty())
}

// userPhone is the phone a bound user's code goes to, or the key of the refusal to show: no
// first factor, or no phone for this user.
func (w *allowlist) userPhone(user string) (phone, refusal string) {
	if user == "" {
		return "", "no_account"
	}
	if phone = w.users[user]; phone == "" {
		w.obs.noPhone(user)
		return "", "no_phone"
	}
	return phone, ""
}

// region says whether codes may go to region.
func (w *allowlist) region(region string) bool {
	return w.regions == nil || w.regions[region]
}

// subjectOf is what a flow's session is for: its user, or its phone.
func subjectOf(f *flow) string {
	if f.User != "" {
		return userSubject(f.User, f.Phone)
	}
	return f.Phone
}

// newAllowlist reads who may sign in at h: phones, users and regions.
func newAllowlist(h *Handler, repl *caddy.Replacer) (*allowlist, error) {
	if h.DefaultRegion != "" && !knownRegion(h.DefaultRegion) {
		return nil, fmt.Errorf("default_region %q is not a region code such as US or GB", h.DefaultRegion)
	}
	w := &allowlist{phones: phoneList{}, users: userPhones{}, defaultRegion: h.DefaultRegion, obs: h.obs}
	for _, p := range h.Phones {
		if err := w.phones.add(repl.ReplaceKnown(p, ""), h.DefaultRegion, "phones"); err != nil {
			return nil, err
		}
	}
	if h.PhonesFile != "" {
		if err := w.phones.addFile(repl.ReplaceKnown(h.PhonesFile, ""), h.DefaultRegion); err != nil {
			return nil, err
		}
	}
	for user, phone := range h.Users {
		if err := w.users.add(user, repl.ReplaceKnown(phone, ""), h.DefaultRegion, "users"); err != nil {
			return nil, err
		}
	}
	if h.UsersFile != "" {
		if err := w.users.addFile(repl.ReplaceKnown(h.UsersFile, ""), h.DefaultRegion); err != nil {
			return nil, err
		}
	}
	for _, r := range h.Regions {
		r = strings.ToUpper(r)
		if !knownRegion(r) {
			return nil, fmt.Errorf("regions: %q is not a region code such as US or GB", r)
		}
		if w.regions == nil {
			w.regions = make(map[string]bool)
		}
		w.regions[r] = true
	}
	return w, nil
}
