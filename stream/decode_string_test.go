package stream

// Tests of JSON string scanning (decode_string.go): the eight-at-a-time
// special-byte detection checked against the byte-by-byte rule (plainByte).

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestSpecialBytes checks the eight-at-a-time string scan: the lowest
// flagged byte is always the first byte plainByte rejects, and a word of
// plain bytes flags nothing. Words mix plain bytes with every other byte
// value at every position.
func TestSpecialBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	plain := make([]byte, 0, 256)
	for c := range 256 {
		if plainByte[c] {
			plain = append(plain, byte(c))
		}
	}
	check := func(w [8]byte) {
		m := specialBytes(binary.LittleEndian.Uint64(w[:]))
		want := 8
		for i, c := range w {
			if !plainByte[c] {
				want = i
				break
			}
		}
		got := 8
		if m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != want {
			t.Fatalf("specialBytes(%q): first special byte at %d, want %d", w[:], got, want)
		}
	}
	for range 200_000 {
		var w [8]byte
		for i := range w {
			w[i] = plain[rng.IntN(len(plain))]
		}
		check(w)
		// one or two arbitrary bytes anywhere
		w[rng.IntN(8)] = byte(rng.IntN(256))
		check(w)
		w[rng.IntN(8)] = byte(rng.IntN(256))
		check(w)
	}
	for c := range 256 {
		for pos := range 8 {
			w := [8]byte{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}
			w[pos] = byte(c)
			check(w)
		}
	}
}
