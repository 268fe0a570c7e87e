package caddyotp

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// userPrefix marks a session subject that is a first-factor user, not a phone (phones always
// start with "+").
const userPrefix = "u:"

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

// firstFactor is the user a preceding handler authenticated, or "".
func firstFactor(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// subjectAllowed says whether a session's subject may pass here, for this request: a user
// session needs the same user from the first factor, and that user still bound to a phone; a
// phone session needs the phone allowed, and no first-factor user whom a user session should
// have named.
func (h *Handler) subjectAllowed(r *http.Request, subject string) bool {
	if user, ok := strings.CutPrefix(subject, userPrefix); ok {
		return h.users[user] != "" && firstFactor(r) == user
	}
	if len(h.users) > 0 && firstFactor(r) != "" {
		return false
	}
	return h.phones.allows(subject)
}

// boundUser is the first-factor user of the request when the gate binds users to phones;
// ok is false when the phone flow applies instead.
func (h *Handler) boundUser(r *http.Request) (user string, ok bool) {
	if len(h.users) == 0 {
		return "", false
	}
	user = firstFactor(r)
	return user, user != "" || h.phones.empty()
}

// userPhone is the phone a bound user's code goes to, or the key of the refusal to show:
// no first factor, or no phone for this user.
func (h *Handler) userPhone(user string) (phone, refusal string) {
	if user == "" {
		return "", "no_account"
	}
	if phone = h.users[user]; phone == "" {
		h.obs.noPhone(user)
		return "", "no_phone"
	}
	return phone, ""
}

// refuse answers 403 with the sentences title_KEY and text_KEY and no way forward but the
// site's administrator.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, key string) error {
	t := h.words(r)
	return h.render(w, r, http.StatusForbidden, "message.html", page{Title: t["title_"+key], Text: t["text_"+key]})
}
