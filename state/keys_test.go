package state

import (
	"bytes"
	"github.com/clickagg/clickagg/base"
	"slices"
	"testing"
)

func TestWindowKeyRoundTripAndOrder(t *testing.T) {
	windows := []base.Window{
		{Size: 60_000, Start: -120_000},
		{Size: 60_000, Start: -60_000},
		{Size: 60_000, Start: 0},
		{Size: 60_000, Start: 1767225600000},
		{Size: 3_600_000, Start: 0},
		{Size: 3_600_000, Start: 1767225600000},
	}
	var keys [][]byte
	for _, w := range windows {
		for _, p := range []int32{0, 7} {
			k := countKey(nil, p, w, "https://x/a")
			gp, gw, rest, err := decodeWindowKey(k)
			if err != nil || gp != p || gw != w || string(rest) != "https://x/a" {
				t.Fatalf("decode(%x) = %d %+v %q %v, want %d %+v", k, gp, gw, rest, err, p, w)
			}
		}
		keys = append(keys, windowKey(nil, kindWindow, 3, w))
	}
	// Keys of one partition sort by size, then by start (negative starts
	// before positive ones), so a window's counts form one contiguous range.
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Fatal("window keys do not sort by (size, start)")
	}
	if _, _, _, err := decodeWindowKey([]byte{kindCount, 1, 2}); err == nil {
		t.Fatal("short key decoded")
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{[]byte{1, 2, 3}, []byte{1, 2, 4}},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, c := range cases {
		if got := prefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("prefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
	}
	// A window's URL range must not include the next window's keys.
	w := base.Window{Size: 60_000, Start: 0}
	p := windowKey(nil, kindCount, 1, w)
	next := countKey(nil, 1, base.Window{Size: 60_000, Start: 60_000}, "")
	if bytes.Compare(next, prefixEnd(p)) < 0 {
		t.Fatal("the next window's keys fall inside the prefix range")
	}
}
