package oracle

import "strings"

// NormalizeURL is url.normalize's rule, written again from its
// description: drop everything from the first '#', and when the URL starts
// with "scheme://" (a letter, then letters, digits, '+', '-' or '.'),
// lowercase the scheme and the host: the authority (up to the first '/'
// or '?') after its last '@' (user info keeps its case).
func NormalizeURL(u string) string {
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u = u[:i]
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || scheme == "" || !validScheme(scheme) {
		return u
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	user, host := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, host = authority[:i+1], authority[i+1:]
	}
	return asciiLower(scheme) + "://" + user + asciiLower(host) + path
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter || i > 0 && !letter && !(c >= '0' && c <= '9') && !strings.ContainsRune("+-.", rune(c)) {
			return false
		}
	}
	return true
}

// asciiLower lowercases A-Z only, as the pipeline does (not Unicode).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
