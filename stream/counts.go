package stream

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"iter"
	"math"
	"slices"
	"strings"
	"unsafe"
)

// Counts maps URLs to click counts. It is an open-addressing hash table
// over an append-only arena of URL bytes, with no pointers in either: the
// garbage collector never scans it, counting a URL already present costs
// one hash and mostly one cache line, and adding one allocates no string.
// The zero value is ready to use.
type Counts struct {
	arena []byte // URLs back to back; bytes once written never change
	slots []slot // len 0 or a power of two
	n     int    // slots in use
}

// slot is one table entry; hash 0 marks it empty.
type slot struct {
	hash uint32 // the URL's hash with the low bit set; the other bits pick the slot
	len  uint32
	off  uint64 // the URL's offset in arena
	val  int64
}

var countsSeed = maphash.MakeSeed()

// NewCounts returns an empty Counts.
func NewCounts() *Counts { return &Counts{} }

// Add adds n to url's count.
func (c *Counts) Add(url []byte, n int64) {
	if len(url) > math.MaxUint32 {
		panic("stream: URL longer than 4 GiB")
	}
	if 4*(c.n+1) > 3*len(c.slots) {
		c.grow()
	}
	s, h := c.find(url)
	if s.hash == 0 {
		*s = slot{hash: h, len: uint32(len(url)), off: uint64(len(c.arena)), val: n}
		c.arena = append(c.arena, url...)
		c.n++
		return
	}
	s.val += n
}

// find returns url's slot, or the empty one where it goes, and its hash.
// The table must have an empty slot.
func (c *Counts) find(url []byte) (*slot, uint32) {
	h := uint32(maphash.Bytes(countsSeed, url)) | 1
	mask := uint32(len(c.slots) - 1)
	for i := (h >> 1) & mask; ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.hash == 0 || s.hash == h && c.url(s) == string(url) {
			return s, h
		}
	}
}

// url returns the URL of a used slot, sharing the arena's memory.
func (c *Counts) url(s *slot) string {
	return unsafe.String(unsafe.SliceData(c.arena[s.off:]), int(s.len))
}

// AddString adds n to url's count.
func (c *Counts) AddString(url string, n int64) {
	c.Add(unsafe.Slice(unsafe.StringData(url), len(url)), n)
}

func (c *Counts) grow() {
	size := max(16, 2*len(c.slots))
	old := c.slots
	c.slots = make([]slot, size)
	mask := uint32(size - 1)
	for _, s := range old {
		if s.hash == 0 {
			continue
		}
		i := (s.hash >> 1) & mask
		for c.slots[i].hash != 0 {
			i = (i + 1) & mask
		}
		c.slots[i] = s
	}
}

// Get returns url's count (0 when absent). Safe on a nil Counts.
func (c *Counts) Get(url string) int64 {
	if c == nil || c.n == 0 {
		return 0
	}
	s, _ := c.find(unsafe.Slice(unsafe.StringData(url), len(url)))
	return s.val // NB: 0 in an empty slot
}

// Len returns the number of URLs. Safe on a nil Counts.
func (c *Counts) Len() int {
	if c == nil {
		return 0
	}
	return c.n
}

// All iterates over the URLs and their counts, in no particular order.
// The URL strings share the Counts' memory (which never changes once
// written), so they stay valid. Safe on a nil Counts.
func (c *Counts) All() iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		if c == nil {
			return
		}
		for _, s := range c.slots {
			if s.hash == 0 {
				continue
			}
			if !yield(c.url(&s), s.val) {
				return
			}
		}
	}
}

// Sorted iterates over the URLs and their counts in URL byte order (it
// sorts, O(n log n)): a state batch written in key order is cheap for
// the store to apply. The URL strings stay valid, as with All. Safe on a
// nil Counts.
func (c *Counts) Sorted() iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		if c == nil || c.n == 0 {
			return
		}
		key := func(i int32) string { return c.url(&c.slots[i]) }
		// NB: URLs mostly share a long prefix (scheme and host). Past the
		// prefix all share, the next eight bytes decide most comparisons
		// without touching the arena.
		es := make([]entry, 0, c.n)
		for i, s := range c.slots {
			if s.hash != 0 {
				es = append(es, entry{i: int32(i)})
			}
		}
		first := key(es[0].i)
		common := len(first)
		for _, e := range es[1:] {
			k := key(e.i)
			n := min(common, len(k))
			j := 0
			for j < n && k[j] == first[j] {
				j++
			}
			common = j
		}
		for j := range es {
			var b [8]byte
			copy(b[:], key(es[j].i)[common:])
			es[j].next8 = binary.BigEndian.Uint64(b[:])
		}
		// NB: a radix sort on those eight bytes (linear, in contiguous
		// memory), then a comparison sort of each run they tie in.
		es = radixSort(es, make([]entry, len(es)))
		for lo := 0; lo < len(es); {
			hi := lo + 1
			for hi < len(es) && es[hi].next8 == es[lo].next8 {
				hi++
			}
			if hi-lo > 1 {
				slices.SortFunc(es[lo:hi], func(a, b entry) int {
					return strings.Compare(key(a.i)[common:], key(b.i)[common:])
				})
			}
			lo = hi
		}
		for _, e := range es {
			if !yield(key(e.i), c.slots[e.i].val) {
				return
			}
		}
	}
}

// entry is one URL of Counts.Sorted: the eight bytes after the prefix all
// URLs share, big-endian, and its slot.
type entry struct {
	next8 uint64
	i     int32
}

// radixSort sorts es by next8, least significant byte first, using tmp
// (as long as es) as scratch; it returns the sorted slice (es or tmp).
func radixSort(es, tmp []entry) []entry {
	for shift := 0; shift < 64; shift += 8 {
		var count [256]int
		for _, e := range es {
			count[byte(e.next8>>shift)]++
		}
		if count[byte(es[0].next8>>shift)] == len(es) {
			continue // every key has this byte: nothing to do
		}
		pos := 0
		for d, n := range count {
			count[d] = pos
			pos += n
		}
		for _, e := range es {
			d := byte(e.next8 >> shift)
			tmp[count[d]] = e
			count[d]++
		}
		es, tmp = tmp, es
	}
	return es
}

// String formats the counts like a map, URLs sorted (tests, logs).
func (c *Counts) String() string {
	m := make(map[string]int64, c.Len())
	for url, n := range c.All() {
		m[url] = n
	}
	return fmt.Sprint(m)
}
