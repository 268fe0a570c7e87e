package caddyotp

import (
	"net/url"
	"path"
	"strings"
)

// localPath returns next, normalised, if it is a path on this site outside the gate, else "/".
// It resolves dot segments (%2e too, as browsers do) and merges repeated slashes, then refuses
// anything a browser could read as another origin: schemes, "//host", backslashes, controls.
func localPath(next, gatePath string) string {
	if next == "" || len(next) > maxNextLen || next[0] != '/' || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	p := cleanPath(u.EscapedPath())
	decoded, err := url.PathUnescape(p)
	if err != nil || strings.ContainsAny(decoded, "\\\x00") {
		return "/"
	}
	if decoded = path.Clean(decoded); decoded == gatePath || strings.HasPrefix(decoded, gatePath+"/") {
		return "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		p += "#" + u.EscapedFragment()
	}
	if len(p) > maxNextLen || strings.HasPrefix(p, "//") {
		return "/"
	}
	return p
}

// cleanPath resolves the dot segments of an escaped absolute path and merges repeated slashes,
// keeping a trailing one.
func cleanPath(p string) string {
	var out []string
	trailing := false
	for _, seg := range strings.Split(p, "/")[1:] {
		switch strings.ToLower(seg) {
		case ".", "%2e":
			trailing = true
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = true
		case "":
			trailing = true
		default:
			out = append(out, seg)
			trailing = false
		}
	}
	if len(out) == 0 {
		return "/"
	}
	if trailing {
		return "/" + strings.Join(out, "/") + "/"
	}
	return "/" + strings.Join(out, "/")
}
