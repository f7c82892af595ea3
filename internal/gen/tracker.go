package gen

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The tracker shape: events as a Segment-style analytics library sends
// them, about 600 bytes each, the click's URL at context.page.url, its time
// at timestamp (RFC 3339 with milliseconds) and its id at messageId. A
// share of them (TrackerNonClickFraction) are page views and identify
// calls, which the filter type==track drops. Read them with
//
//	--input-url context.page.url --input-ts timestamp --input-id messageId --input-filter type==track
//
// (TrackerInputFlags).

// TrackerNonClickFraction of a tracker-shaped stream are not click events
// ("type":"page" or "identify"): Kind "filtered".
const TrackerNonClickFraction = 0.05

// TrackerInputFlags are the `clickagg run` flags that read the tracker shape.
var TrackerInputFlags = []string{"--input-url", "context.page.url", "--input-ts", "timestamp",
	"--input-id", "messageId", "--input-filter", "type==track"}

var (
	trackerZone   = time.FixedZone("", 2*3600)
	trackerAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
		"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
	}
	trackerReferrers = []string{"https://www.google.com/", "https://news.ycombinator.com/", "", "https://example.com/"}
)

// uuid returns a random version-4-looking UUID.
func (g *Generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, 0x8000|b>>48&0x3fff, b&0xffffffffffff)
}

// trackerTime formats t as the tracker does: RFC 3339 with milliseconds,
// mostly UTC, sometimes with a +02:00 offset.
func (g *Generator) trackerTime(t time.Time) string {
	if g.rng.IntN(10) == 0 {
		t = t.In(trackerZone)
	} else {
		t = t.UTC()
	}
	return t.Format("2006-01-02T15:04:05.000Z07:00")
}

// urlPath returns the path of u (after scheme and host).
func urlPath(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[i+3+j:]
		}
		return "/"
	}
	return u
}

// trackerEvent holds the parts of one tracker event that vary.
type trackerEvent struct {
	typ       string // track, page, identify
	url       string // raw JSON of context.page.url's value, or "" for no url key
	timestamp string // raw JSON of timestamp's value
	path      string
}

// trackerJSON writes one event. Key order and content follow a
// Segment-style library; the parts that matter are e's.
func (g *Generator) trackerJSON(e trackerEvent, t time.Time, i int64) []byte {
	var b strings.Builder
	b.Grow(700)
	b.WriteString(`{"type":"`)
	b.WriteString(e.typ)
	b.WriteString(`",`)
	switch e.typ {
	case "track":
		b.WriteString(`"event":"Link Clicked",`)
	case "page":
		b.WriteString(`"name":"Docs",`)
	}
	b.WriteString(`"messageId":"`)
	b.WriteString(g.uuid())
	b.WriteString(`","timestamp":`)
	b.WriteString(e.timestamp)
	b.WriteString(`,"sentAt":"`)
	b.WriteString(t.Add(time.Duration(g.rng.IntN(2000)) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString(`","context":{`)
	if e.typ != "identify" {
		b.WriteString(`"page":{`)
		if e.url != "" {
			b.WriteString(`"url":`)
			b.WriteString(e.url)
			b.WriteString(`,`)
		}
		b.WriteString(`"path":`)
		b.WriteString(strconv.Quote(e.path))
		b.WriteString(`,"title":"Page \u2014 \"`)
		b.WriteString(strconv.FormatInt(i%1000, 10))
		b.WriteString(`\"","referrer":`)
		b.WriteString(strconv.Quote(trackerReferrers[g.rng.IntN(len(trackerReferrers))]))
		b.WriteString(`},`)
	}
	b.WriteString(`"userAgent":`)
	b.WriteString(strconv.Quote(trackerAgents[g.rng.IntN(len(trackerAgents))]))
	fmt.Fprintf(&b, `,"ip":"203.0.113.%d","library":{"name":"analytics.js","version":"4.1.0"}},`, g.rng.IntN(256))
	switch e.typ {
	case "track":
		b.WriteString(`"properties":{"href":`)
		if e.url != "" {
			b.WriteString(e.url)
		} else {
			b.WriteString(`null`)
		}
		fmt.Fprintf(&b, `,"text":"Read more","classes":["nav","cta"],"position":%d},`, g.rng.IntN(12))
	case "page":
		b.WriteString(`"properties":{"path":`)
		b.WriteString(strconv.Quote(e.path))
		b.WriteString(`,"url":`)
		b.WriteString(e.url)
		b.WriteString(`},`)
	case "identify":
		b.WriteString(`"traits":{"plan":"pro","logins":7,"email":null},`)
	}
	fmt.Fprintf(&b, `"anonymousId":"%s","userId":"user-%d","version":2}`, g.uuid(), g.rng.IntN(100_000))
	return []byte(b.String())
}

// trackerURL is the JSON of u, its slashes sometimes escaped as \/.
func (g *Generator) trackerURL(u string) string {
	q := strconv.Quote(u)
	if g.rng.IntN(20) == 0 {
		q = strings.ReplaceAll(q, "/", `\/`)
	}
	return q
}

// trackerValid is a valid click.
func (g *Generator) trackerValid(u string, t time.Time, i int64) []byte {
	return g.trackerJSON(trackerEvent{typ: "track", url: g.trackerURL(u), timestamp: `"` + g.trackerTime(t) + `"`, path: urlPath(u)}, t, i)
}

// trackerNonClick is a page view or an identify call (no page URL): the
// filter type==track drops both, before any URL check.
func (g *Generator) trackerNonClick(u string, t time.Time, i int64) []byte {
	e := trackerEvent{typ: "page", url: g.trackerURL(u), timestamp: `"` + g.trackerTime(t) + `"`, path: urlPath(u)}
	if g.rng.IntN(2) == 0 {
		e.typ, e.url = "identify", ""
	}
	return g.trackerJSON(e, t, i)
}

// trackerInvalid is a click event that must be rejected for kind.
func (g *Generator) trackerInvalid(kind, u string, t time.Time, i int64) []byte {
	e := trackerEvent{typ: "track", url: strconv.Quote(u), timestamp: `"` + t.UTC().Format("2006-01-02T15:04:05.000Z07:00") + `"`, path: urlPath(u)}
	switch kind {
	case "invalid_json":
		v := g.trackerJSON(e, t, i)
		return v[:len(v)/2]
	case "missing_url":
		e.url = ""
	case "empty_url":
		e.url = `""`
	case "url_too_long":
		e.url = strconv.Quote(u + "/" + strings.Repeat("x", 5000))
	case "invalid_timestamp":
		e.timestamp = `"yesterday"`
	case "timestamp_out_of_range":
		e.timestamp = `"1970-01-01T00:00:12.345Z"`
	case "invalid_utf8":
		e.url = `"` + u + "\xff\xfe" + `"`
	default:
		panic("gen: unknown invalid kind " + kind)
	}
	return g.trackerJSON(e, t, i)
}
