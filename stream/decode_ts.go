package stream

// Event times for Decode: the accepted range (MinEventTimeMs,
// MaxEventTimeMs, ValidEventTime) and the forms "ts" may take, an integer
// (parseInt64) of Unix milliseconds or, with a unix_* ts format, of another
// unit (scaleToMs), a string holding such an integer (parseDecimal), or an
// RFC 3339 string (parseRFC3339, which matches time.Parse without
// allocating), with the calendar helpers the latter needs.

import "math"

// The accepted event-time range.
const (
	// MinEventTimeMs is the earliest accepted event time, 2000-01-01T00:00:00Z (inclusive).
	MinEventTimeMs int64 = 946684800000
	// MaxEventTimeMs is the end of the accepted event-time range, 2100-01-01T00:00:00Z (exclusive).
	MaxEventTimeMs int64 = 4102444800000
)

// ValidEventTime reports whether ms is within [MinEventTimeMs, MaxEventTimeMs).
func ValidEventTime(ms int64) bool {
	return ms >= MinEventTimeMs && ms < MaxEventTimeMs
}

// parseInt64 parses an integer literal (as validated by scanNumber),
// reporting false on int64 overflow.
func parseInt64(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		n = n*10 + uint64(c-'0') // at most 19 digits: cannot wrap uint64
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// tsFormat says how a ts value is read (InputOptions.TSFormat).
type tsFormat uint8

const (
	tsAuto tsFormat = iota
	tsRFC3339
	tsUnixS
	tsUnixMs
	tsUnixUs
	tsUnixNs
)

// parseTimeString parses a ts string (unescaped) in the given format:
// RFC 3339 for auto and rfc3339, an integer of the format's unit for unix_*.
func parseTimeString(b []byte, format tsFormat) (int64, bool) {
	if format == tsAuto || format == tsRFC3339 {
		return parseRFC3339(b)
	}
	n, ok := parseDecimal(b)
	if !ok {
		return 0, false
	}
	return scaleToMs(n, format)
}

// parseDecimal parses ASCII digits with an optional leading '-' (leading
// zeros allowed), reporting false for anything else and on int64 overflow.
func parseDecimal(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	for _, c := range digits {
		if !isDigit(c) {
			return 0, false
		}
	}
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:]
	}
	n, ok := parseInt64(digits)
	if !ok {
		// NB: -2^63 overflows as a positive number but not negated.
		if neg && string(digits) == "9223372036854775808" {
			return -1 << 63, true
		}
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// scaleToMs converts n, in the unit of a unix_* format (milliseconds for
// auto), to Unix milliseconds: seconds multiply, reporting false on
// overflow; microseconds and nanoseconds divide rounding toward negative
// infinity, so that a negative time falls in the window it lies in.
func scaleToMs(n int64, format tsFormat) (int64, bool) {
	switch format {
	case tsUnixS:
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, false
		}
		return n * 1000, true
	case tsUnixUs:
		return floorDiv(n, 1000), true
	case tsUnixNs:
		return floorDiv(n, 1_000_000), true
	}
	return n, true
}

func floorDiv(n, d int64) int64 {
	q := n / d
	if n%d < 0 {
		q--
	}
	return q
}

// parseRFC3339 parses s exactly as time.Parse(time.RFC3339Nano, s) does and
// returns the result's UnixMilli, without allocating. Like time.Parse it
// accepts a few things stricter RFC 3339 readers reject: a one-digit hour,
// ',' as the fraction separator, any number of fraction digits (beyond the
// ninth ignored), and zone offsets up to +24:60.
func parseRFC3339(s []byte) (int64, bool) {
	// date: 2006-01-02T
	if len(s) < len("2006-01-02T") || s[4] != '-' || s[7] != '-' || s[10] != 'T' {
		return 0, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 {
		return 0, false
	}
	if day < 1 || day > daysIn(month, year) {
		return 0, false
	}
	s = s[11:]

	// time: 15:04:05, hour may have one digit
	hourLen := 1
	if len(s) >= 2 && isDigit(s[1]) {
		hourLen = 2
	}
	if len(s) < hourLen+len(":04:05") || s[hourLen] != ':' || s[hourLen+3] != ':' {
		return 0, false
	}
	hour, ok1 := digits(s[:hourLen])
	minute, ok2 := digits(s[hourLen+1 : hourLen+3])
	sec, ok3 := digits(s[hourLen+4 : hourLen+6])
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	s = s[hourLen+6:]

	// optional fraction: [.,] followed by one or more digits
	var nsec int64
	if len(s) >= 2 && (s[0] == '.' || s[0] == ',') && isDigit(s[1]) {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			if n <= 9 {
				nsec = nsec*10 + int64(s[n]-'0')
			}
			n++
		}
		for k := n; k <= 9; k++ {
			nsec *= 10
		}
		s = s[n:]
	}

	// zone: Z or ±hh:mm
	var offset int64
	switch {
	case len(s) == 1 && s[0] == 'Z':
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		hh, ok1 := digits(s[1:3])
		mm, ok2 := digits(s[4:6])
		if !ok1 || !ok2 || hh > 24 || mm > 60 {
			return 0, false
		}
		offset = (hh*60 + mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}

	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	return secs*1000 + nsec/1e6, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits parses a short all-digit field.
func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400                     // [0, 399]
	doy := (153*((m+9)%12)+2)/5 + d - 1    // [0, 365], March-based
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146097 + doe - 719468
}
