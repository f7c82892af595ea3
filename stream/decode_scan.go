package stream

// JSON scanning for Decode: the scanner that validates one record in a
// single pass without building any values (objects, arrays, literals,
// numbers, the nesting limit), and the bookkeeping that remembers where the
// mapped values lie in the input: the top-level "url", "ts" and "id" for the
// default mapping (topFields), the values at a mapping's paths otherwise
// (scanMappedObject, walking the path trie of decode_path.go). Strings,
// being the hot path, have their own file: decode_string.go.

// maxDepth is the deepest nesting of objects and arrays accepted; the
// top-level object counts as depth 1.
const maxDepth = 512

// valueKind classifies a scanned JSON value.
type valueKind uint8

const (
	kindAbsent        valueKind = iota // key not present
	kindString                         // string without escapes
	kindEscapedString                  // string containing backslash escapes
	kindInt                            // number literal without fraction or exponent
	kindFloat                          // number literal with fraction or exponent
	kindNull
	kindBool  // true or false
	kindOther // object or array
)

// field records where a mapped value lies in the input. For strings the
// span excludes the quotes.
type field struct {
	start, end int
	kind       valueKind
}

func (f field) bytes(data []byte) []byte { return data[f.start:f.end:f.end] }

// topFields holds the last occurrence of each top-level key the default
// mapping reads. Other mappings work on slots instead; this one keeps the
// default as fast as before mappings existed.
type topFields struct {
	url, ts, id field
}

// lookup returns the slot for a top-level key, or nil for an ignored key.
// raw is the key's undecoded contents.
func (f *topFields) lookup(raw []byte, escaped bool) *field {
	if escaped {
		// An escape encodes at least one byte in at most 6 (12 for a
		// surrogate pair, which encodes 4), so a key longer than 6*3 bytes
		// cannot decode to "url", "ts" or "id".
		if len(raw) > 18 {
			return nil
		}
		var buf [18]byte
		raw = appendUnescaped(buf[:0], raw)
	}
	switch string(raw) {
	case "url":
		return &f.url
	case "ts":
		return &f.ts
	case "id":
		return &f.id
	}
	return nil
}

// scanner validates JSON. Its scan methods take the index of the first byte
// of a construct and return the index just past it, or -1 after recording
// the first problem in err.
type scanner struct {
	data  []byte
	err   Reason
	m     *mapping         // for scanMappedObject
	slots *[maxSlots]field // the values at m's paths, by pathNode.slot
}

func (s *scanner) fail(r Reason) int {
	if s.err == ReasonNone {
		s.err = r
	}
	return -1
}

func skipWS(data []byte, i int) int {
	// NB: the first test ends the loop at once for the common case, a byte
	// that is no space at all.
	for i < len(data) && data[i] <= ' ' && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// scanValue scans any JSON value starting at i, inside a container at depth.
func (s *scanner) scanValue(i, depth int) (int, valueKind) {
	data := s.data
	if i >= len(data) {
		return s.fail(ReasonInvalidJSON), 0
	}
	switch c := data[i]; c {
	case '"':
		if end := shortString(data, i+1); end >= 0 {
			return end + 1, kindString
		}
		end, escaped := s.scanString(i + 1)
		if end < 0 {
			return -1, 0
		}
		if escaped {
			return end + 1, kindEscapedString
		}
		return end + 1, kindString
	case '{':
		return s.scanObject(i, depth+1, nil), kindOther
	case '[':
		return s.scanArray(i, depth+1), kindOther
	case 't':
		return s.scanLiteral(i, "true"), kindBool
	case 'f':
		return s.scanLiteral(i, "false"), kindBool
	case 'n':
		return s.scanLiteral(i, "null"), kindNull
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return s.scanNumber(i)
		}
		return s.fail(ReasonInvalidJSON), 0
	}
}

// valueField is the slot of a value scanned at [start, end): a string's
// contents, without its quotes; any other value whole.
func valueField(start, end int, kind valueKind) field {
	if kind == kindString || kind == kindEscapedString {
		return field{start: start + 1, end: end - 1, kind: kind}
	}
	return field{start: start, end: end, kind: kind}
}

// scanObject scans the object at i (data[i] == '{'). When top is non-nil the
// object is the record itself and the url/ts/id values are recorded in top.
func (s *scanner) scanObject(i, depth int, top *topFields) int {
	if depth > maxDepth {
		return s.fail(ReasonInvalidJSON)
	}
	data := s.data
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return s.fail(ReasonInvalidJSON)
		}
		keyEnd, keyEscaped := shortString(data, i+1), false
		if keyEnd < 0 {
			if keyEnd, keyEscaped = s.scanString(i + 1); keyEnd < 0 {
				return -1
			}
		}
		var slot *field
		if top != nil {
			slot = top.lookup(data[i+1:keyEnd], keyEscaped)
		}
		i = skipWS(data, keyEnd+1)
		if i >= len(data) || data[i] != ':' {
			return s.fail(ReasonInvalidJSON)
		}
		i = skipWS(data, i+1)
		start := i
		end, kind := s.scanValue(i, depth)
		if end < 0 {
			return -1
		}
		if slot != nil {
			*slot = valueField(start, end, kind)
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return s.fail(ReasonInvalidJSON)
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
}

// scanMappedObject is scanObject for an object on a mapped path, the trie
// node node (0: the record itself), for any mapping but the default: a key
// matching one of node's children clears the child's whole subtree of slots
// (the last occurrence of a key wins, for what lies below it too), records
// the value in the child's slot and scans an object value with the child as
// its node. Objects off every path go to scanObject and pay nothing for the
// mapping.
func (s *scanner) scanMappedObject(i, depth int, node int32) int {
	if depth > maxDepth {
		return s.fail(ReasonInvalidJSON)
	}
	data := s.data
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return s.fail(ReasonInvalidJSON)
		}
		keyEnd, keyEscaped := shortString(data, i+1), false
		if keyEnd < 0 {
			if keyEnd, keyEscaped = s.scanString(i + 1); keyEnd < 0 {
				return -1
			}
		}
		child := int32(-1)
		if keyEscaped {
			child = s.m.childEscaped(node, data[i+1:keyEnd])
		} else if keyEnd > i+1 && s.m.nodes[node].keys&keyBit(keyEnd-i-1, data[i+1]) != 0 {
			child = s.m.child(node, data[i+1:keyEnd])
		}
		i = skipWS(data, keyEnd+1)
		if i >= len(data) || data[i] != ':' {
			return s.fail(ReasonInvalidJSON)
		}
		i = skipWS(data, i+1)
		var end int
		if child < 0 {
			end, _ = s.scanValue(i, depth)
		} else {
			n := &s.m.nodes[child]
			var kind valueKind
			if n.sub >= 0 {
				for j := n.lo; j < n.hi; j++ {
					s.slots[j].kind = kindAbsent
				}
				if i < len(data) && data[i] == '{' {
					end, kind = s.scanMappedObject(i, depth+1, n.sub), kindOther
				} else {
					end, kind = s.scanValue(i, depth)
				}
			} else {
				end, kind = s.scanValue(i, depth)
			}
			if end >= 0 && n.slot >= 0 {
				s.slots[n.slot] = valueField(i, end, kind)
			}
		}
		if end < 0 {
			return -1
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return s.fail(ReasonInvalidJSON)
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
}

// scanArray scans the array at i (data[i] == '[').
func (s *scanner) scanArray(i, depth int) int {
	if depth > maxDepth {
		return s.fail(ReasonInvalidJSON)
	}
	data := s.data
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1
	}
	for {
		end, _ := s.scanValue(i, depth) // NB: paths never descend into arrays
		if end < 0 {
			return -1
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return s.fail(ReasonInvalidJSON)
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case ']':
			return i + 1
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
}

func (s *scanner) scanLiteral(i int, lit string) int {
	if len(s.data)-i < len(lit) || string(s.data[i:i+len(lit)]) != lit {
		return s.fail(ReasonInvalidJSON)
	}
	return i + len(lit)
}

// scanNumber scans a number per RFC 8259 and reports whether it is an
// integer literal (no fraction, no exponent).
func (s *scanner) scanNumber(i int) (int, valueKind) {
	data := s.data
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return s.fail(ReasonInvalidJSON), 0
	}
	kind := kindInt
	if i < len(data) && data[i] == '.' {
		kind = kindFloat
		j := skipDigits(data, i+1)
		if j == i+1 {
			return s.fail(ReasonInvalidJSON), 0
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		kind = kindFloat
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return s.fail(ReasonInvalidJSON), 0
		}
		i = j
	}
	return i, kind
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}
