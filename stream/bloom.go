package stream

import (
	"cmp"
	"hash/maphash"
	"math/bits"
	"slices"
)

// seenFilter answers "might this id have a live sighting in the state
// store?" without reading the store: a Bloom filter per slot of event
// time, dropped as the dedup clock passes the slot. A false positive costs
// one store read; there are no false negatives for ids added, which is
// every sighting the store holds for a live slot (see dedup.filterLoad).
type seenFilter struct {
	seed  maphash.Seed
	slots map[int64]*slotFilter
	// busiest is the most ids one slot took so far: a new slot's filter
	// starts that big, so that a slot mostly has one part (every part a
	// lookup probes adds its false positives).
	busiest int
}

type slotFilter struct {
	parts []bloom // each full part is followed by one twice as large
	n     int
}

// bloom is a blocked Bloom filter: each key sets bloomK bits in one
// 512-bit block (one cache line).
type bloom struct {
	blocks []uint64 // len is a multiple of 8
	n, cap int
}

const (
	bloomBitsPerKey = 20 // ≈ 0.03% false positives per part, blocked
	bloomK          = 7
	bloomFirstCap   = 1 << 12
)

func newSeenFilter() *seenFilter {
	return &seenFilter{seed: maphash.MakeSeed(), slots: make(map[int64]*slotFilter)}
}

func (f *seenFilter) hash(id []byte) uint64 { return maphash.Bytes(f.seed, id) }

// add records id (hash h) in slot s.
func (f *seenFilter) add(s int64, h uint64) {
	sf := f.slots[s]
	if sf == nil {
		sf = &slotFilter{}
		f.slots[s] = sf
	}
	if len(sf.parts) == 0 || sf.parts[len(sf.parts)-1].n >= sf.parts[len(sf.parts)-1].cap {
		c := max(bloomFirstCap, f.busiest+f.busiest/4)
		if len(sf.parts) > 0 {
			c = 2 * sf.parts[len(sf.parts)-1].cap
		}
		nb := (c*bloomBitsPerKey + 511) / 512
		sf.parts = append(sf.parts, bloom{blocks: make([]uint64, 8*nb), cap: c})
	}
	sf.parts[len(sf.parts)-1].add(h)
	sf.n++
	f.busiest = max(f.busiest, sf.n)
}

// candidates appends to dst, newest first, the slots from lo on that may
// hold id (hash h).
func (f *seenFilter) candidates(lo int64, h uint64, dst []int64) []int64 {
	n := len(dst)
	for s, sf := range f.slots {
		if s < lo {
			continue
		}
		for i := range sf.parts {
			if sf.parts[i].has(h) {
				dst = append(dst, s)
				break
			}
		}
	}
	if len(dst)-n > 1 {
		slices.SortFunc(dst[n:], func(a, b int64) int { return cmp.Compare(b, a) })
	}
	return dst
}

// expire drops the slots before lo.
func (f *seenFilter) expire(lo int64) {
	for s := range f.slots {
		if s < lo {
			delete(f.slots, s)
		}
	}
}

func (b *bloom) block(h uint64) []uint64 {
	nb := uint64(len(b.blocks) / 8)
	i, _ := bits.Mul64(h, nb)
	return b.blocks[i*8 : i*8+8 : i*8+8]
}

func (b *bloom) add(h uint64) {
	blk := b.block(h)
	h2 := h*0x9e3779b97f4a7c15 | 1
	for range bloomK {
		blk[(h2>>58)&7] |= 1 << ((h2 >> 52) & 63)
		h2 = bits.RotateLeft64(h2, 12) * 0xff51afd7ed558ccd
	}
	b.n++
}

func (b *bloom) has(h uint64) bool {
	blk := b.block(h)
	h2 := h*0x9e3779b97f4a7c15 | 1
	for range bloomK {
		if blk[(h2>>58)&7]&(1<<((h2>>52)&63)) == 0 {
			return false
		}
		h2 = bits.RotateLeft64(h2, 12) * 0xff51afd7ed558ccd
	}
	return true
}
