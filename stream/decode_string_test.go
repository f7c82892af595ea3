package stream

// Tests of JSON string scanning (decode_string.go): the eight-at-a-time
// special-byte detection and the loops using it (skipPlain, shortString)
// checked against the byte-by-byte rule (plainByte).

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

// TestSkipPlain checks skipPlain and shortString against the byte-by-byte
// rule on inputs of every length up to 40 with one special byte (or none)
// at every position, so that every step of their loops meets it.
func TestSkipPlain(t *testing.T) {
	specials := []byte{'"', '\\', 0, 0x1f, 0x7f, 0x80, 0xff}
	for n := 0; n <= 40; n++ {
		for pos := -1; pos < n; pos++ {
			for _, c := range specials {
				data := make([]byte, n)
				for i := range data {
					data[i] = 'a' + byte(i%26)
				}
				if pos >= 0 {
					data[pos] = c
				}
				for i := 0; i <= n; i++ {
					want := i
					for want < n && plainByte[data[want]] {
						want++
					}
					if got := skipPlain(data, i); got != want {
						t.Fatalf("skipPlain(%q, %d) = %d, want %d", data, i, got, want)
					}
					short := -1
					if want < n && want < i+8 && i+8 <= n && data[want] == '"' {
						short = want
					}
					if got := shortString(data, i); got != short {
						t.Fatalf("shortString(%q, %d) = %d, want %d", data, i, got, short)
					}
				}
			}
		}
	}
}
