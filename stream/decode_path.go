package stream

// The compiled input mapping Decode works with: the mapped paths as a small
// trie of object keys (pathNode) that the scanner walks while it validates
// the record, the slots the values at those paths land in, which slot is the
// url, ts and id, the ts format, and the filter conditions (filterCond) with
// their comparison against a JSON value. compileMapping builds it from
// parsed paths; input.go parses and validates the configuration.

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// maxSlots is the most distinct paths a mapping tracks: url, ts and id plus
// MaxInputFilters filter paths.
const maxSlots = 3 + MaxInputFilters

// mapping is a compiled InputOptions. It is immutable once built and may be
// shared by any number of Decoders.
type mapping struct {
	// nodes[0] is the record object; the children of a node are
	// nodes[first:end], so a node's keys are checked in one short loop.
	nodes  []pathNode
	nslots int
	// The slots of the url, ts and id paths; ts is -1 when the payload's
	// time is ignored (ts_source record).
	url, ts, id int8
	tsFormat    tsFormat
	filters     []filterCond
}

// pathNode is one key of the path trie.
type pathNode struct {
	key        string // the object key, unescaped
	word       uint64 // the key's first (up to) 8 bytes, little-endian, zero-padded
	first, end int32  // children: nodes[first:end]
	// keys has bit keyBit(k) set for each child's key k, so that most keys
	// matching no child are dismissed without a call.
	keys uint64
	// sub is what an object value under this key is scanned with: the
	// node's own index when it has children, else -1 (nothing to track).
	sub  int32
	slot int8 // where the value at this path goes; -1 when only an ancestor
	// lo and hi bound the slots of this node and everything below it
	// (slots are numbered in depth-first order): a repeated key clears
	// them all, since the last occurrence of a key wins, ancestors included.
	lo, hi int8
}

// filterCond is one compiled input.filter condition.
type filterCond struct {
	slot  int8
	neg   bool // "!=": holds when the value at the path is not value
	value string
}

// keyBit hashes a key's length and first byte to one of 64 bits.
func keyBit(length int, first byte) uint64 {
	return 1 << ((uint(length)*7 + uint(first)) & 63)
}

// child returns the child of node whose key is raw, or -1. raw's capacity
// must reach past its end as far as the input does.
func (m *mapping) child(node int32, raw []byte) int32 {
	n := &m.nodes[node]
	w := keyWord(raw)
	for c := n.first; c < n.end; c++ {
		k := &m.nodes[c]
		if k.word == w && len(k.key) == len(raw) && (len(raw) <= 8 || string(raw[8:]) == k.key[8:]) {
			return c
		}
	}
	return -1
}

// childEscaped is child for a key holding escapes.
func (m *mapping) childEscaped(node int32, raw []byte) int32 {
	n := &m.nodes[node]
	for c := n.first; c < n.end; c++ {
		if unescapedEqual(raw, m.nodes[c].key) {
			return c
		}
	}
	return -1
}

// keyWord returns the first (up to) 8 bytes of b as a little-endian word,
// zero-padded, reading one word at once when b's capacity allows.
func keyWord(b []byte) uint64 {
	if cap(b) >= 8 {
		w := binary.LittleEndian.Uint64(b[:8:8])
		if len(b) < 8 {
			w &= 1<<(8*len(b)) - 1
		}
		return w
	}
	var w uint64
	for i := min(len(b), 8) - 1; i >= 0; i-- {
		w = w<<8 | uint64(b[i])
	}
	return w
}

// pass reports whether every filter condition holds for the scanned slots.
func (m *mapping) pass(data []byte, slots *[maxSlots]field) bool {
	for _, c := range m.filters {
		if valueEqual(data, slots[c.slot], c.value) == c.neg {
			return false
		}
	}
	return true
}

// valueEqual compares the JSON value f with a filter value: a string by its
// unescaped text, a number, true, false or null by its literal text. An
// absent value, an object or an array equals nothing.
func valueEqual(data []byte, f field, v string) bool {
	switch f.kind {
	case kindAbsent, kindOther:
		return false
	case kindEscapedString:
		return unescapedEqual(f.bytes(data), v)
	}
	return string(f.bytes(data)) == v
}

// unescapedEqual reports whether the contents of a JSON string that
// scanString has validated decode to s, without decoding them anywhere.
func unescapedEqual(raw []byte, s string) bool {
	for {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return string(raw) == s
		}
		if len(s) < i || string(raw[:i]) != s[:i] {
			return false
		}
		var buf [utf8.UTFMax]byte
		var dec []byte
		dec, raw = appendEscape(buf[:0], raw[i:])
		if !strings.HasPrefix(s[i:], string(dec)) {
			return false
		}
		s = s[i+len(dec):]
	}
}

// trieNode is a pathNode while the trie is being built.
type trieNode struct {
	key    string
	kids   []*trieNode
	target bool // some role or filter reads the value here
	index  int32
	slot   int8
	lo, hi int8
}

func (t *trieNode) insert(keys []string) *trieNode {
	for _, k := range keys {
		var next *trieNode
		for _, c := range t.kids {
			if c.key == k {
				next = c
				break
			}
		}
		if next == nil {
			next = &trieNode{key: k}
			t.kids = append(t.kids, next)
		}
		t = next
	}
	t.target = true
	return t
}

// compileMapping builds the mapping from parsed paths. ts is nil when the
// payload's time is ignored. The caller has validated everything: at most
// maxSlots distinct paths, none empty.
func compileMapping(url, ts, id []string, format tsFormat, filters []parsedCond) *mapping {
	root := &trieNode{}
	urlN, idN := root.insert(url), root.insert(id)
	var tsN *trieNode
	if ts != nil {
		tsN = root.insert(ts)
	}
	condN := make([]*trieNode, len(filters))
	for i, c := range filters {
		condN[i] = root.insert(c.path)
	}

	// Slots in depth-first order, so that each subtree's are contiguous.
	var nslots int8
	var number func(t *trieNode)
	number = func(t *trieNode) {
		t.lo, t.slot = nslots, -1
		if t.target {
			t.slot = nslots
			nslots++
		}
		for _, c := range t.kids {
			number(c)
		}
		t.hi = nslots
	}
	number(root)

	// Nodes in breadth-first order, so that each node's children are
	// contiguous.
	order := []*trieNode{root}
	for i := 0; i < len(order); i++ {
		for _, c := range order[i].kids {
			c.index = int32(len(order))
			order = append(order, c)
		}
	}
	m := &mapping{
		nodes:    make([]pathNode, len(order)),
		nslots:   int(nslots),
		url:      urlN.slot,
		id:       idN.slot,
		ts:       -1,
		tsFormat: format,
	}
	if tsN != nil {
		m.ts = tsN.slot
	}
	for i, t := range order {
		n := pathNode{key: t.key, word: keyWord([]byte(t.key)), sub: -1, slot: t.slot, lo: t.lo, hi: t.hi}
		if len(t.kids) > 0 {
			n.first = t.kids[0].index
			n.end = n.first + int32(len(t.kids))
			n.sub = int32(i)
		}
		for _, c := range t.kids {
			n.keys |= keyBit(len(c.key), c.key[0])
		}
		m.nodes[i] = n
	}
	for i, c := range filters {
		m.filters = append(m.filters, filterCond{slot: condN[i].slot, neg: c.neg, value: c.value})
	}
	return m
}
