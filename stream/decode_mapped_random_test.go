package stream

// TestDecodeMappedRandom: Decode under random mappings compared with the
// reference of decode_mapped_fuzz_test.go on random records, which are
// drawn from small vocabularies of keys and values so that paths hit, keys
// repeat (duplicates, also of ancestors), keys come escaped, arrays and
// scalars stand on paths, and the mapping's own paths get values planted at
// random places among the other members.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// Vocabularies for TestDecodeMappedRandom: few keys, so that paths hit and
// keys repeat.
var (
	randKeys   = []string{"a", "b", "url", "ts", "id", "page", "a.b", `a\b`, "é", "", "type", "averylongkeyname", "averylongkeynamf"}
	randPaths  = []string{"a", "b", "url", "ts", "id", "page", `a\.b`, `a\\b`, "é", "type", "averylongkeyname", "a", "b", "url"}
	randScalar = []string{
		`"u"`, `"track"`, `""`, `"2026-01-01T00:00:00Z"`, `"2026-01-01T00:00:00\u005a"`, `"1767225600"`,
		`"\u0031767225600000"`, `"-1"`, `"a\u0000b"`, `"tr\u0061ck"`, `"é"`, `"\u00e9"`, `"1"`, `"null"`,
		`1`, `-1`, `1.0`, `1e3`, `0`, `1767225600`, `1767225600000`, `1767225600000000`, `1767225600000000000`,
		`-9223372036854775808`, `9223372036854775808`, `99999999999999999999`, `true`, `false`, `null`,
	}
	randValues = []string{"1", "track", "true", "null", "", "1.0", "u", "é", "false"}
)

// randRecord writes a random JSON object of depth at most depth. Members
// planted (each "key":value) go among the top-level ones at random places.
func randRecord(rng *rand.Rand, b *strings.Builder, depth int, planted ...string) {
	b.WriteByte('{')
	n := rng.IntN(5)
	for i := 0; i < n+len(planted); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(planted) > 0 && rng.IntN(n+len(planted)-i) < len(planted) {
			b.WriteString(planted[0])
			planted = planted[1:]
			continue
		}
		randKey(rng, b, randKeys[rng.IntN(len(randKeys))])
		b.WriteByte(':')
		switch x := rng.IntN(10); {
		case x < 3 && depth > 1:
			randRecord(rng, b, depth-1)
		case x == 3 && depth > 1:
			b.WriteByte('[')
			randRecord(rng, b, depth-1)
			b.WriteString(`,1]`)
		default:
			b.WriteString(randScalar[rng.IntN(len(randScalar))])
		}
	}
	b.WriteByte('}')
}

// randPlant returns a member holding value at the path p (with its escapes
// as in the configuration), through nested objects.
func randPlant(rng *rand.Rand, p, value string) string {
	keys, ok := refPath(p, "")
	if !ok {
		panic(p)
	}
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('{')
		}
		randKey(rng, &b, k)
		b.WriteByte(':')
	}
	b.WriteString(value)
	b.WriteString(strings.Repeat("}", len(keys)-1))
	return b.String()
}

// randFilterValue renders a filter value as some JSON value that may equal it.
func randFilterValue(rng *rand.Rand, v string) string {
	if rng.IntN(2) == 0 && json.Valid([]byte(v)) {
		return v // a literal: 1, true, null, 1.0
	}
	var b strings.Builder
	randKey(rng, &b, v) // NB: a string, some characters escaped
	return b.String()
}

// randKey writes k as a JSON string, escaping some of its characters.
func randKey(rng *rand.Rand, b *strings.Builder, k string) {
	b.WriteByte('"')
	for _, r := range k {
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case rng.IntN(4) == 0:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

func randPath(rng *rand.Rand) string {
	keys := make([]string, 1+rng.IntN(3)*rng.IntN(2))
	for i := range keys {
		keys[i] = randPaths[rng.IntN(len(randPaths))]
	}
	return strings.Join(keys, ".")
}

// randCase returns a random mapping, a record with values planted at some
// of its paths, and a URL limit.
func randCase(rng *rand.Rand) (InputOptions, []byte, int) {
	in := InputOptions{URL: randPath(rng), TS: randPath(rng), ID: randPath(rng)}
	in.TSFormat = refFormats[rng.IntN(len(refFormats)-1)]
	in.TSSource = refSources[rng.IntN(len(refSources)-1)]
	var planted []string
	if rng.IntN(4) > 0 {
		planted = append(planted, randPlant(rng, in.URL, randScalar[rng.IntN(3)]))
	}
	if rng.IntN(2) > 0 {
		planted = append(planted, randPlant(rng, in.TS, randScalar[rng.IntN(len(randScalar))]))
	}
	if rng.IntN(2) > 0 {
		planted = append(planted, randPlant(rng, in.ID, randScalar[rng.IntN(len(randScalar))]))
	}
	for range rng.IntN(3) {
		op := "=="
		if rng.IntN(2) == 0 {
			op = "!="
		}
		path, value := randPath(rng), randValues[rng.IntN(len(randValues))]
		in.Filter = append(in.Filter, path+op+value)
		if rng.IntN(2) > 0 {
			planted = append(planted, randPlant(rng, path, randFilterValue(rng, value)))
		}
	}
	var b strings.Builder
	randRecord(rng, &b, 4, planted...)
	return in, []byte(b.String()), rng.IntN(8) * 8
}

// TestDecodeMappedRandom compares Decode with the reference on random
// records and mappings drawn from small vocabularies (duplicate and escaped
// keys, arrays on paths, nested objects), so it runs in every go test.
func TestDecodeMappedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		in, rec, maxURL := randCase(rng)
		checkMapped(t, rec, in, maxURL)
		if t.Failed() {
			return
		}
	}
}
