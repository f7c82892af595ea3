package dev.clickagg.peers.kstreams;

import java.nio.charset.StandardCharsets;

/**
 * Decodes one record value the way clickagg's default input mapping does
 * (stream/decode.go, decode_ts.go): the value must be one JSON object
 * (RFC 8259, nesting at most 512 levels, valid UTF-8 in every string,
 * escapes included); the top-level "url", "ts" and "id" are read, the last
 * occurrence of a duplicate key winning; then, in this order:
 * url (missing_url, invalid_url, empty_url, url_too_long over 2048 bytes),
 * ts (invalid_timestamp: not an integer or an RFC 3339 string, or overflows
 * int64; timestamp_out_of_range: outside [2000-01-01, 2100-01-01)),
 * id (invalid_id: not a string, an integer or null).
 *
 * <p>The checks that need the Kafka record's own timestamp (a record without
 * ts takes it, and it must be in range too; a ts more than an hour ahead of
 * it is rejected, clickagg's default max_future_skew) are made by
 * {@link ClickTimestampExtractor}. Not thread-safe: one per deserializer.
 */
final class ClickDecoder {
    static final long MIN_EVENT_TIME_MS = 946684800000L; // 2000-01-01T00:00:00Z, inclusive
    static final long MAX_EVENT_TIME_MS = 4102444800000L; // 2100-01-01T00:00:00Z, exclusive
    static final int MAX_URL_BYTES = 2048;
    private static final int MAX_DEPTH = 512;

    // Kinds of a top-level field's value.
    private static final int ABSENT = 0, NULL = 1, STRING = 2, ESCAPED = 3, INT = 4, OTHER = 5;

    /** Thrown inside the scanner; carries the rejection reason. */
    private static final class Reject extends Exception {
        final Reason reason;

        Reject(Reason reason) {
            super(null, null, false, false);
            this.reason = reason;
        }
    }

    private static final Reject INVALID_JSON = new Reject(Reason.INVALID_JSON);
    private static final Reject INVALID_UTF8 = new Reject(Reason.INVALID_UTF8);

    private byte[] b;
    private int n;
    // The last url, ts and id seen at the top level: kind and the bounds of
    // the string contents (without quotes) or the number literal.
    private int urlKind, urlOff, urlEnd, tsKind, tsOff, tsEnd, idKind;
    private byte[] scratch = new byte[256];
    private boolean overflow; // set by parseInt64 and Rfc3339.parse

    /** Decodes value into c (reset first). */
    void decode(byte[] value, Click c) {
        c.reset();
        if (value == null) {
            c.reason = Reason.INVALID_JSON;
            return;
        }
        b = value;
        n = value.length;
        urlKind = tsKind = idKind = ABSENT;
        overflow = false;
        try {
            int i = skipWS(0);
            if (i >= n || b[i] != '{') {
                throw INVALID_JSON;
            }
            i = scanObject(i, 1, true);
            if (skipWS(i) != n) {
                throw INVALID_JSON;
            }
            check(c);
        } catch (Reject r) {
            c.reset();
            c.reason = r.reason;
        } finally {
            b = null;
        }
    }

    private void check(Click c) throws Reject {
        // url
        byte[] u;
        int uo, ul;
        switch (urlKind) {
            case ABSENT, NULL -> throw new Reject(Reason.MISSING_URL);
            case STRING -> {
                u = b;
                uo = urlOff;
                ul = urlEnd - urlOff;
            }
            case ESCAPED -> {
                ul = unescape(urlOff, urlEnd);
                u = scratch;
                uo = 0;
                for (int k = 0; k < ul; k++) {
                    if (u[k] == 0) {
                        throw new Reject(Reason.INVALID_URL);
                    }
                }
            }
            default -> throw new Reject(Reason.INVALID_URL);
        }
        if (ul == 0) {
            throw new Reject(Reason.EMPTY_URL);
        }
        if (ul > MAX_URL_BYTES) {
            throw new Reject(Reason.URL_TOO_LONG);
        }
        String url = new String(u, uo, ul, StandardCharsets.UTF_8);

        // ts
        long ts = 0;
        boolean hasTs = true;
        switch (tsKind) {
            case ABSENT, NULL -> hasTs = false;
            case INT -> ts = parseInt64(tsOff, tsEnd);
            case STRING -> ts = rfc3339(b, tsOff, tsEnd);
            case ESCAPED -> {
                int len = unescape(tsOff, tsEnd);
                ts = rfc3339(scratch, 0, len);
            }
            default -> throw new Reject(Reason.INVALID_TIMESTAMP);
        }
        if (overflow) {
            throw new Reject(Reason.INVALID_TIMESTAMP);
        }
        if (hasTs && !validEventTime(ts)) {
            throw new Reject(Reason.TIMESTAMP_OUT_OF_RANGE);
        }

        // id
        if (idKind == OTHER) {
            throw new Reject(Reason.INVALID_ID);
        }
        c.url = url;
        c.hasTs = hasTs;
        c.ts = ts;
    }

    static boolean validEventTime(long ms) {
        return ms >= MIN_EVENT_TIME_MS && ms < MAX_EVENT_TIME_MS;
    }

    /**
     * Parses an integer literal as clickagg's parseInt64 does; sets
     * overflow (invalid_timestamp) when it does not fit an int64.
     */
    private long parseInt64(int off, int end) {
        boolean neg = b[off] == '-';
        if (neg) {
            off++;
        }
        // Accumulate negatively, as Long.parseLong does, so -2^63 fits.
        long limit = neg ? Long.MIN_VALUE : -Long.MAX_VALUE;
        long multmin = limit / 10;
        long v = 0;
        for (int k = off; k < end; k++) {
            int d = b[k] - '0';
            if (v < multmin || v * 10 < limit + d) {
                overflow = true;
                return 0;
            }
            v = v * 10 - d;
        }
        return neg ? v : -v;
    }

    private long rfc3339(byte[] s, int off, int end) {
        long ms = Rfc3339.parse(s, off, end);
        if (ms == Rfc3339.INVALID) {
            overflow = true;
        }
        return ms;
    }

    private int skipWS(int i) {
        while (i < n) {
            byte c = b[i];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                break;
            }
            i++;
        }
        return i;
    }

    /** Scans the object at b[i] == '{' and returns the index after it. */
    private int scanObject(int i, int depth, boolean top) throws Reject {
        if (depth > MAX_DEPTH) {
            throw INVALID_JSON;
        }
        i = skipWS(i + 1);
        if (i < n && b[i] == '}') {
            return i + 1;
        }
        while (true) {
            if (i >= n || b[i] != '"') {
                throw INVALID_JSON;
            }
            int keyOff = i + 1;
            int keyEnd = scanString(i);
            boolean keyEscaped = keyEnd < 0;
            if (keyEscaped) {
                keyEnd = -keyEnd;
            }
            i = skipWS(keyEnd + 1);
            if (i >= n || b[i] != ':') {
                throw INVALID_JSON;
            }
            i = skipWS(i + 1);
            if (i >= n) {
                throw INVALID_JSON;
            }
            int role = top ? role(keyOff, keyEnd, keyEscaped) : 0;
            int valStart = i;
            byte c = b[i];
            int kind;
            int vOff = i, vEnd;
            if (c == '"') {
                int e = scanString(i);
                kind = e < 0 ? ESCAPED : STRING;
                vOff = i + 1;
                vEnd = e < 0 ? -e : e;
                i = vEnd + 1;
            } else if (c == '{') {
                i = scanObject(i, depth + 1, false);
                kind = OTHER;
                vEnd = i;
            } else if (c == '[') {
                i = scanArray(i, depth + 1);
                kind = OTHER;
                vEnd = i;
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                int e = scanNumber(i);
                kind = e < 0 ? OTHER : INT; // negative: has a fraction or an exponent
                vEnd = e < 0 ? -e : e;
                i = vEnd;
            } else {
                i = scanLiteral(i);
                kind = b[valStart] == 'n' ? NULL : OTHER;
                vEnd = i;
            }
            switch (role) {
                case 1 -> {
                    urlKind = kind;
                    urlOff = vOff;
                    urlEnd = vEnd;
                }
                case 2 -> {
                    tsKind = kind;
                    tsOff = vOff;
                    tsEnd = vEnd;
                }
                case 3 -> idKind = kind;
                default -> {
                }
            }
            i = skipWS(i);
            if (i >= n) {
                throw INVALID_JSON;
            }
            if (b[i] == ',') {
                i = skipWS(i + 1);
                continue;
            }
            if (b[i] == '}') {
                return i + 1;
            }
            throw INVALID_JSON;
        }
    }

    /** 1 url, 2 ts, 3 id, 0 other. */
    private int role(int off, int end, boolean escaped) throws Reject {
        byte[] k = b;
        int len = end - off;
        if (escaped) {
            // Rare: unescape into scratch (the url/ts values are unescaped
            // later, after the whole scan, so scratch is free here).
            len = unescape(off, end);
            k = scratch;
            off = 0;
        }
        if (len == 3 && k[off] == 'u' && k[off + 1] == 'r' && k[off + 2] == 'l') {
            return 1;
        }
        if (len == 2 && k[off] == 't' && k[off + 1] == 's') {
            return 2;
        }
        if (len == 2 && k[off] == 'i' && k[off + 1] == 'd') {
            return 3;
        }
        return 0;
    }

    private int scanArray(int i, int depth) throws Reject {
        if (depth > MAX_DEPTH) {
            throw INVALID_JSON;
        }
        i = skipWS(i + 1);
        if (i < n && b[i] == ']') {
            return i + 1;
        }
        while (true) {
            i = scanValue(i, depth);
            i = skipWS(i);
            if (i >= n) {
                throw INVALID_JSON;
            }
            if (b[i] == ',') {
                i = skipWS(i + 1);
                continue;
            }
            if (b[i] == ']') {
                return i + 1;
            }
            throw INVALID_JSON;
        }
    }

    private int scanValue(int i, int depth) throws Reject {
        if (i >= n) {
            throw INVALID_JSON;
        }
        byte c = b[i];
        if (c == '"') {
            int e = scanString(i);
            return (e < 0 ? -e : e) + 1;
        }
        if (c == '{') {
            return scanObject(i, depth, false);
        }
        if (c == '[') {
            return scanArray(i, depth);
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            int e = scanNumber(i);
            return e < 0 ? -e : e;
        }
        return scanLiteral(i);
    }

    private int scanLiteral(int i) throws Reject {
        if (match(i, "true") || match(i, "null")) {
            return i + 4;
        }
        if (match(i, "false")) {
            return i + 5;
        }
        throw INVALID_JSON;
    }

    private boolean match(int i, String lit) {
        if (i + lit.length() > n) {
            return false;
        }
        for (int k = 0; k < lit.length(); k++) {
            if (b[i + k] != lit.charAt(k)) {
                return false;
            }
        }
        return true;
    }

    /**
     * Scans a number at i; returns the index after it, negated when it has a
     * fraction or an exponent (not an integer).
     */
    private int scanNumber(int i) throws Reject {
        boolean integer = true;
        if (b[i] == '-') {
            i++;
        }
        if (i >= n) {
            throw INVALID_JSON;
        }
        if (b[i] == '0') {
            i++;
        } else if (b[i] >= '1' && b[i] <= '9') {
            while (i < n && isDigit(b[i])) {
                i++;
            }
        } else {
            throw INVALID_JSON;
        }
        if (i < n && b[i] == '.') {
            integer = false;
            i++;
            if (i >= n || !isDigit(b[i])) {
                throw INVALID_JSON;
            }
            while (i < n && isDigit(b[i])) {
                i++;
            }
        }
        if (i < n && (b[i] == 'e' || b[i] == 'E')) {
            integer = false;
            i++;
            if (i < n && (b[i] == '+' || b[i] == '-')) {
                i++;
            }
            if (i >= n || !isDigit(b[i])) {
                throw INVALID_JSON;
            }
            while (i < n && isDigit(b[i])) {
                i++;
            }
        }
        return integer ? i : -i;
    }

    private static boolean isDigit(byte c) {
        return c >= '0' && c <= '9';
    }

    /**
     * Scans the string whose opening quote is at i and returns the index of
     * its closing quote, negated when the string holds an escape. Checks the
     * escapes, control characters and UTF-8 (a lone or mismatched surrogate
     * escape is invalid UTF-8, as in clickagg).
     */
    private int scanString(int i) throws Reject {
        boolean escaped = false;
        i++;
        while (true) {
            if (i >= n) {
                throw INVALID_JSON;
            }
            int c = b[i] & 0xff;
            if (c == '"') {
                return escaped ? -i : i;
            }
            if (c < 0x20) {
                throw INVALID_JSON;
            }
            if (c == '\\') {
                escaped = true;
                i++;
                if (i >= n) {
                    throw INVALID_JSON;
                }
                switch (b[i]) {
                    case '"', '\\', '/', 'b', 'f', 'n', 'r', 't' -> i++;
                    case 'u' -> {
                        int cp = hex4(i + 1);
                        i += 5;
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            // must be followed by an escaped low surrogate
                            if (i + 1 < n && b[i] == '\\' && b[i + 1] == 'u') {
                                int lo = hex4(i + 2);
                                if (lo < 0xDC00 || lo > 0xDFFF) {
                                    throw INVALID_UTF8;
                                }
                                i += 6;
                            } else {
                                if (i + 1 < n && b[i] == '\\') {
                                    // another escape follows: check it is a valid one first
                                    byte e = b[i + 1];
                                    if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f'
                                            && e != 'n' && e != 'r' && e != 't') {
                                        throw INVALID_JSON;
                                    }
                                }
                                throw INVALID_UTF8;
                            }
                        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                            throw INVALID_UTF8;
                        }
                    }
                    default -> throw INVALID_JSON;
                }
                continue;
            }
            if (c < 0x80) {
                i++;
                continue;
            }
            i = utf8(i, c);
        }
    }

    private int hex4(int i) throws Reject {
        if (i + 4 > n) {
            throw INVALID_JSON;
        }
        int v = 0;
        for (int k = i; k < i + 4; k++) {
            int c = b[k];
            int d;
            if (c >= '0' && c <= '9') {
                d = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d = c - 'a' + 10;
            } else if (c >= 'A' && c <= 'F') {
                d = c - 'A' + 10;
            } else {
                throw INVALID_JSON;
            }
            v = v << 4 | d;
        }
        return v;
    }

    /** Checks the multi-byte UTF-8 sequence starting with lead byte c at i. */
    private int utf8(int i, int c) throws Reject {
        int len;
        int lo = 0x80, hi = 0xBF; // bounds of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) {
                lo = 0xA0; // no overlong
            } else if (c == 0xED) {
                hi = 0x9F; // no surrogates
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) {
                lo = 0x90;
            } else if (c == 0xF4) {
                hi = 0x8F;
            }
        } else {
            throw INVALID_UTF8;
        }
        if (i + len > n) {
            throw INVALID_UTF8;
        }
        int c1 = b[i + 1] & 0xff;
        if (c1 < lo || c1 > hi) {
            throw INVALID_UTF8;
        }
        for (int k = 2; k < len; k++) {
            int ck = b[i + k] & 0xff;
            if (ck < 0x80 || ck > 0xBF) {
                throw INVALID_UTF8;
            }
        }
        return i + len;
    }

    /** Unescapes the (validated) string contents b[off:end] into scratch; returns the length. */
    private int unescape(int off, int end) throws Reject {
        if (scratch.length < end - off) {
            scratch = new byte[Math.max(end - off, scratch.length * 2)];
        }
        int o = 0;
        int i = off;
        while (i < end) {
            byte c = b[i];
            if (c != '\\') {
                scratch[o++] = c;
                i++;
                continue;
            }
            byte e = b[i + 1];
            i += 2;
            switch (e) {
                case 'b' -> scratch[o++] = '\b';
                case 'f' -> scratch[o++] = '\f';
                case 'n' -> scratch[o++] = '\n';
                case 'r' -> scratch[o++] = '\r';
                case 't' -> scratch[o++] = '\t';
                case 'u' -> {
                    int cp = hex4(i);
                    i += 4;
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        int lo = hex4(i + 2);
                        i += 6;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    // UTF-8 never grows past the escape's own 6 (or 12) bytes.
                    if (cp < 0x80) {
                        scratch[o++] = (byte) cp;
                    } else if (cp < 0x800) {
                        scratch[o++] = (byte) (0xC0 | cp >> 6);
                        scratch[o++] = (byte) (0x80 | cp & 0x3F);
                    } else if (cp < 0x10000) {
                        scratch[o++] = (byte) (0xE0 | cp >> 12);
                        scratch[o++] = (byte) (0x80 | cp >> 6 & 0x3F);
                        scratch[o++] = (byte) (0x80 | cp & 0x3F);
                    } else {
                        scratch[o++] = (byte) (0xF0 | cp >> 18);
                        scratch[o++] = (byte) (0x80 | cp >> 12 & 0x3F);
                        scratch[o++] = (byte) (0x80 | cp >> 6 & 0x3F);
                        scratch[o++] = (byte) (0x80 | cp & 0x3F);
                    }
                }
                default -> scratch[o++] = e; // " \ /
            }
        }
        return o;
    }
}
