package bench

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/stream"
)

// decodeEdgeCases are records at the edges of clickagg's decoding rules.
var decodeEdgeCases = []string{
	`{"url":"https://example.com/a","ts":1767225600000,"id":"e-1"}`,
	`{"url":"u","ts":"2026-01-01T00:00:00.123Z"}`,
	`{"url":"u","ts":"2026-01-01T00:00:00.123456789+02:00"}`,
	`{"url":"u","ts":"2026-01-01T00:00:00-07:30"}`,
	`{"url":"u"}`, `{"url":"u","ts":null,"id":null}`, `{"url":"u","id":""}`,
	`{"url":"u","id":12345}`, `{"url":"u","id":-7}`, `{"url":"u","id":123456789012345678901234567890}`,
	`{"url":"u","id":1.5}`, `{"url":"u","id":true}`, `{"url":"u","id":{}}`, `{"url":"u","id":[]}`,
	`{"url":"u","ts":1.5e12}`, `{"url":"u","ts":1e12}`, `{"url":"u","ts":1767225600000.0}`,
	`{"url":"u","ts":-5}`, `{"url":"u","ts":0}`, `{"url":"u","ts":99999999999999999999}`,
	`{"url":"u","ts":"2026-01-01 00:00:00Z"}`, `{"url":"u","ts":"1767225600000"}`, `{"url":"u","ts":true}`,
	`{"url":"u","ts":{}}`, `{"url":"u","ts":"yesterday"}`, `{"url":"u","ts":""}`,
	`{"url":"u","ts":946684800000}`, `{"url":"u","ts":946684799999}`,
	`{"url":"u","ts":4102444799999}`, `{"url":"u","ts":4102444800000}`,
	`{"url":"u","ts":"1999-12-31T23:59:59.999Z"}`, `{"url":"u","ts":"2100-01-01T00:00:00Z"}`,
	`{"url":"u","ts":"2099-12-31T23:59:59.999Z"}`, `{"url":"u","ts":"2026-02-30T00:00:00Z"}`,
	`{"url":"u","ts":"2026-01-01T24:00:00Z"}`, `{"url":"u","ts":"2026-01-01t00:00:00z"}`,
	`{"url":"u","ts":"2026-01-01T00:00Z"}`, `{"url":"u","ts":"2026-01-01T00:00:00,5Z"}`, `{"url":"u","ts":"2026-01-01T0:00:00Z"}`,
	`{"url":"u","ts":"2026-01-01T00:00:00.1234567891Z"}`, `{"url":"u","ts":"2026-01-01T00:00:00+24:00"}`,
	`{"url":"u","ts":"+2026-01-01T00:00:00Z"}`, `{"url":"u","ts":"2026-01-01T00:00:00+0100"}`, `{"url":"u","ts":"2026-01-01T00:00:60Z"}`,
	`{"ts":1767225600000}`, `{"url":null}`, `{"url":123}`, `{"url":""}`, `{"url":["u"]}`, `{"url":{}}`,
	`{"url":"a\u0000b"}`, `{"url":"caf\u00e9 \ud83c\udf89"}`, `{"url":"https:\/\/x\/y"}`,
	`{"url":"` + strings.Repeat("x", 2048) + `"}`, `{"url":"` + strings.Repeat("x", 2049) + `"}`,
	`{"url":"` + strings.Repeat("é", 1024) + `"}`, `{"url":"` + strings.Repeat("é", 1024) + `x"}`,
	`{"url":"` + strings.Repeat(`\u00e9`, 1025) + `"}`,
	`[]`, `"u"`, `1`, `null`, ``, ` `, `{`, `{"url":"u"} x`, `{"url":"u"}{}`, `{"url":"u",}`,
	`{'url':'u'}`, `{"url":"u","ts":01767225600000}`, `{"url":"u","ts":NaN}`, `{"url":"u","x":[1,2,}`,
	`{"url":"a","url":"b"}`, `{"url":"a","url":null}`, `{"ts":1,"ts":1767225600000,"url":"u"}`,
	" \t\r\n{ \"url\" : \"u\" } \n", `{"URL":"u"}`, `{"url":"u","nested":{"url":"v","ts":1}}`,
	"{\"url\":\"a\xffb\"}", "{\"url\":\"a\xed\xa0\x80\"}", "{\"url\":\"a\xf4\x90\x80\x80\"}", "{\"url\":\"a\xe2\x82\"}",
	"{\"url\":\"a\xf0\x9f\x8e\x89\"}", "{\"url\":\"a\xe0\x80\xaf\"}", "{\"url\":\"u\"}\xc3", "{\"\xff\":1,\"url\":\"u\"}", "{\"url\":\"u\",\"x\":\"\xc0\xaf\"}",
	`{"url":"a\ud800b"}`, `{"url":"u","x":"\udc00"}`, `{"\ud800":1,"url":"u"}`, `{"url":"\ud83c\u0041"}`,
	`{"url":"u","x":` + strings.Repeat("[", 511) + strings.Repeat("]", 511) + `}`,
	`{"url":"u","x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`,
	`{"url":"u\t"}`, "{\"url\":\"u\tv\"}", `{"url":"\x"}`, `{"url":"\u12"}`,
}

// TestPeerDecoderMatchesClickagg runs the peers' shared ClickDecoder
// (peers/common, through testdata/DecodeCheck.java) over edge cases and
// generated records, valid and invalid, and compares each outcome with
// clickagg's decoder: the same records accepted, with the same URL and event
// time, and rejected for the same reason (invalid JSON and invalid UTF-8 may
// swap: which one comes first is not the same scan). It runs the decoder as
// built into each peer, with that peer's Jackson.
func TestPeerDecoderMatchesClickagg(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JVM")
	}
	records := append([]string(nil), decodeEdgeCases...)
	g, err := gen.New(gen.Options{Count: 3000, URLs: 100, Seed: 7, StartTime: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
		EventRate: 100, OutOfOrderFraction: 0.05, LateFraction: 0.01, InvalidFraction: 0.3, Unkeyed: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		records = append(records, string(g.Next().Value))
	}
	for _, peer := range []string{"flink", "kstreams"} {
		t.Run(peer, func(t *testing.T) {
			cp, _, err := PeerClassPath(filepath.Join(peersDir(t), peer))
			if err != nil {
				skipUnless(t, requirePeersEnv, err.Error())
			}
			checkDecoder(t, cp, records)
		})
	}
}

// checkDecoder runs DecodeCheck.java with class path cp over records and
// compares its output with clickagg's decoder.
func checkDecoder(t *testing.T, cp string, records []string) {
	t.Helper()
	var in bytes.Buffer
	for _, r := range records {
		in.WriteString(base64.StdEncoding.EncodeToString([]byte(r)) + "\n")
	}
	cmd := exec.Command("java", "-cp", cp, filepath.Join("testdata", "DecodeCheck.java"))
	cmd.Stdin, cmd.Stderr = &in, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("DecodeCheck: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	structural := map[string]bool{"invalid_json": true, "invalid_utf8": true}
	var dec stream.Decoder
	for i, r := range records {
		if !sc.Scan() {
			t.Fatalf("DecodeCheck printed %d lines for %d records", i, len(records))
		}
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("DecodeCheck line %q", sc.Text())
		}
		c, reason := dec.Decode([]byte(r))
		want := reason.String()
		wantURL, wantTS := "-", int64(0)
		if reason == stream.ReasonNone {
			wantURL, wantTS = base64.StdEncoding.EncodeToString(c.URL), 1 // NB: the record timestamp
			if c.HasTime {
				wantTS = c.TimeMs
			}
		}
		ts, _ := strconv.ParseInt(f[2], 10, 64)
		if f[0] == want && f[1] == wantURL && ts == wantTS {
			continue
		}
		if structural[f[0]] && structural[want] {
			t.Logf("record %.80q: peer %s, clickagg %s (both structural)", r, f[0], want)
			continue
		}
		t.Errorf("record %.120q: peer %s %s %d, clickagg %s %s %d", r, f[0], f[1], ts, want, wantURL, wantTS)
	}
}
