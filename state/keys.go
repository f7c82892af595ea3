package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/clickagg/clickagg/base"
)

// Key kinds; the first byte of every key.
const (
	kindIdentity byte = 0x00
	kindMeta     byte = 0x01
	kindWindow   byte = 0x02
	kindCount    byte = 0x03
	kindSeen     byte = 0x04 // partition|slot|id → latest event time (dedup)
	kindDedup    byte = 0x06 // partition → dedup clock and its history
)

// kinds are every per-partition key kind.
var kinds = []byte{kindMeta, kindWindow, kindCount, kindSeen, kindDedup}

var identityKey = []byte{kindIdentity, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y'}

// partitionKey returns kind|partition.
func partitionKey(dst []byte, kind byte, p int32) []byte {
	dst = append(dst, kind)
	return binary.BigEndian.AppendUint32(dst, uint32(p))
}

// windowKey returns kind|partition|size|start.
func windowKey(dst []byte, kind byte, p int32, w base.Window) []byte {
	dst = partitionKey(dst, kind, p)
	dst = binary.BigEndian.AppendUint64(dst, uint64(w.Size))
	return binary.BigEndian.AppendUint64(dst, uint64(w.Start)^(1<<63))
}

// countKey returns the key of one URL's count in window w.
func countKey(dst []byte, p int32, w base.Window, url string) []byte {
	dst = windowKey(dst, kindCount, p, w)
	return append(dst, url...)
}

// seenKey returns the key of dedup sighting id in slot (of event time)
// slot: sightings expire a slot at a time.
func seenKey[ID string | []byte](dst []byte, p int32, slot int64, id ID) []byte {
	dst = partitionKey(dst, kindSeen, p)
	dst = binary.BigEndian.AppendUint64(dst, uint64(slot)^(1<<63))
	return append(dst, id...)
}

// decodeSeenKey parses a dedup sighting key: the slot and the id.
func decodeSeenKey(k []byte) (slot int64, id []byte, err error) {
	if len(k) < partitionKeyLen+8 {
		return 0, nil, fmt.Errorf("%w: %x", errBadKey, k)
	}
	return int64(binary.BigEndian.Uint64(k[partitionKeyLen:]) ^ (1 << 63)), k[partitionKeyLen+8:], nil
}

const (
	partitionKeyLen = 1 + 4
	windowKeyLen    = partitionKeyLen + 8 + 8
)

var errBadKey = errors.New("state: malformed key")

// decodeWindowKey parses a registry or count key and returns the window and
// the rest of the key (the URL of a count key).
func decodeWindowKey(k []byte) (p int32, w base.Window, rest []byte, err error) {
	if len(k) < windowKeyLen {
		return 0, base.Window{}, nil, fmt.Errorf("%w: %x", errBadKey, k)
	}
	p = int32(binary.BigEndian.Uint32(k[1:5]))
	w.Size = int64(binary.BigEndian.Uint64(k[5:13]))
	w.Start = int64(binary.BigEndian.Uint64(k[13:21]) ^ (1 << 63))
	return p, w, k[windowKeyLen:], nil
}

// prefixEnd returns the smallest key greater than every key with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // prefix is all 0xff: no upper bound
}

func encodeInt64(dst []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(v))
}

func decodeInt64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("state: value of %d bytes, want 8", len(b))
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}
