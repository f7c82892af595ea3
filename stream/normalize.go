package stream

import "bytes"

// NormalizeURL appends to dst the normalized form of url (setting
// url.normalize): the scheme and the host lowercased (ASCII), the fragment
// ("#..." ) dropped. Everything else — user info, port, path, query,
// percent-escapes — is kept byte for byte. A URL without "scheme://" only
// loses its fragment.
func NormalizeURL(dst, url []byte) []byte {
	url, _, _ = bytes.Cut(url, []byte{'#'})
	start := len(dst)
	dst = append(dst, url...)
	out := dst[start:]
	n := schemeLen(out)
	if n == 0 {
		return dst
	}
	lower(out[:n])
	auth := out[n+3:]
	if end := bytes.IndexAny(auth, "/?"); end >= 0 {
		auth = auth[:end]
	}
	// NB: user info is case-sensitive; only what follows the last '@' is
	// the host (and port, which lowercasing leaves alone).
	lower(auth[bytes.LastIndexByte(auth, '@')+1:])
	return dst
}

// schemeLen returns the length of u's scheme when u starts with
// "scheme://" (RFC 3986: a letter, then letters, digits, '+', '-', '.'),
// else 0.
func schemeLen(u []byte) int {
	for i, c := range u {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			if len(u) >= i+3 && u[i+1] == '/' && u[i+2] == '/' {
				return i
			}
			return 0
		default:
			return 0
		}
	}
	return 0
}

func lower(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}
