package dev.clickagg.peers;

import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.YearMonth;
import java.util.Iterator;
import java.util.Map;

/**
 * Decodes one click record the way clickagg's decoder does in its default
 * configuration (stream/decode.go): a JSON object {"url": string, "ts":
 * epoch-ms integer or RFC 3339 string, "id": string or integer}; no "ts" (or
 * null) means the Kafka record's timestamp. Anything else is rejected with
 * clickagg's reason name, checked in clickagg's order (structure, url, ts,
 * id). Shared by the peers (peers/flink, peers/kstreams); thread-safe.
 *
 * <p>clickagg's operator also checks the event time against the record
 * timestamp (a record without "ts" must have one in range, and a "ts" may be
 * at most max_future_skew ahead of it); those checks are not the decoder's.
 *
 * <p>TestPeerDecoderMatchesClickagg (internal/bench) compares it with
 * clickagg's decoder record by record. The one known difference: when a
 * record has both invalid UTF-8 and a syntax error, the reason may be the
 * other one (it is rejected either way).
 */
public final class ClickDecoder {
    /** The accepted event-time range: [2000-01-01, 2100-01-01) UTC, as clickagg. */
    static final long MIN_EVENT_TIME_MS = 946_684_800_000L;
    static final long MAX_EVENT_TIME_MS = 4_102_444_800_000L;
    static final int MAX_URL_BYTES = 2048;

    /** Rejection reasons, named as clickagg's clickagg_invalid_records_total labels. */
    public static final String[] REASONS = {
        "invalid_json", "missing_url", "invalid_url", "empty_url", "url_too_long",
        "invalid_utf8", "invalid_timestamp", "timestamp_out_of_range", "invalid_id",
    };

    private static final ObjectMapper JSON = JsonMapper.builder()
            // NB: by default Jackson ignores what follows the first value.
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    static {
        JSON.getFactory().setStreamReadConstraints(
                StreamReadConstraints.builder().maxNestingDepth(512).build());
    }

    private ClickDecoder() {}

    /**
     * Decodes a record value (null: a tombstone, invalid_json). A record
     * without "ts" gets recordTimestampMs as its event time, unchecked:
     * {@link Click#NO_TIME} when it is not known yet.
     */
    public static Click decode(byte[] value, long recordTimestampMs) {
        Click c = new Click();
        c.reason = value == null ? "invalid_json" : check(value, recordTimestampMs, c);
        if (c.reason != null) {
            c.url = null;
            c.ts = Click.NO_TIME;
        }
        return c;
    }

    /** Reports whether ms is in the accepted event-time range. */
    public static boolean validEventTime(long ms) {
        return ms >= MIN_EVENT_TIME_MS && ms < MAX_EVENT_TIME_MS;
    }

    /** Fills in out's url and ts and returns null, or returns the reason value is rejected. */
    private static String check(byte[] value, long recordTimestampMs, Click out) {
        // NB: Jackson rejects most invalid UTF-8 as a parse error, but takes
        // overlong forms and encoded surrogates.
        if (!validUtf8(value)) {
            return "invalid_utf8";
        }
        JsonNode root;
        try {
            root = JSON.readTree(value);
        } catch (IOException e) {
            return "invalid_json";
        }
        if (root == null || !root.isObject()) {
            return "invalid_json";
        }
        // clickagg also rejects a \\u escape that leaves a lone surrogate,
        // in any string of the record.
        if (!wellFormed(root)) {
            return "invalid_utf8";
        }

        JsonNode url = root.get("url");
        if (url == null || url.isNull()) {
            return "missing_url";
        }
        if (!url.isTextual() || url.textValue().indexOf('\0') >= 0) {
            return "invalid_url";
        }
        String u = url.textValue();
        if (u.isEmpty()) {
            return "empty_url";
        }
        if (u.length() * 3 > MAX_URL_BYTES && u.getBytes(StandardCharsets.UTF_8).length > MAX_URL_BYTES) {
            return "url_too_long";
        }

        long ts;
        JsonNode t = root.get("ts");
        if (t == null || t.isNull()) {
            ts = recordTimestampMs; // NB: range-checked by clickagg's operator, not its decoder
        } else {
            if (t.isIntegralNumber() && t.canConvertToLong()) {
                ts = t.longValue();
            } else if (t.isTextual()) {
                ts = parseRfc3339(t.textValue());
                if (ts == Long.MIN_VALUE) {
                    return "invalid_timestamp";
                }
            } else {
                return "invalid_timestamp";
            }
            if (!validEventTime(ts)) {
                return "timestamp_out_of_range";
            }
        }

        JsonNode id = root.get("id");
        if (id != null && !id.isNull() && !id.isTextual() && !id.isIntegralNumber()) {
            return "invalid_id";
        }
        out.url = u;
        out.ts = ts;
        return null;
    }

    /**
     * Parses an RFC 3339 time as Go's time.Parse(time.RFC3339Nano, s) does
     * (clickagg's rule: also a one-digit hour, ',' before the fraction, any
     * number of fraction digits, offsets up to +24:60), returning Unix
     * milliseconds or Long.MIN_VALUE. java.time's ISO parser differs at those
     * edges and takes a lowercase 't' or 'z' and no seconds.
     */
    private static long parseRfc3339(String s) {
        if (s.length() < 11 || s.charAt(4) != '-' || s.charAt(7) != '-' || s.charAt(10) != 'T') {
            return Long.MIN_VALUE;
        }
        int year = digits(s, 0, 4);
        int month = digits(s, 5, 7);
        int day = digits(s, 8, 10);
        if (year < 0 || month < 1 || month > 12 || day < 1 || day > YearMonth.of(year, month).lengthOfMonth()) {
            return Long.MIN_VALUE;
        }
        int i = 11;
        int hourLen = s.length() >= i + 2 && isDigit(s.charAt(i + 1)) ? 2 : 1;
        if (s.length() < i + hourLen + 6 || s.charAt(i + hourLen) != ':' || s.charAt(i + hourLen + 3) != ':') {
            return Long.MIN_VALUE;
        }
        int hour = digits(s, i, i + hourLen);
        int minute = digits(s, i + hourLen + 1, i + hourLen + 3);
        int sec = digits(s, i + hourLen + 4, i + hourLen + 6);
        if (hour < 0 || minute < 0 || sec < 0 || hour > 23 || minute > 59 || sec > 59) {
            return Long.MIN_VALUE;
        }
        i += hourLen + 6;
        long nanos = 0;
        if (s.length() >= i + 2 && (s.charAt(i) == '.' || s.charAt(i) == ',') && isDigit(s.charAt(i + 1))) {
            int n = 1;
            for (; i + n < s.length() && isDigit(s.charAt(i + n)); n++) {
                if (n <= 9) {
                    nanos = nanos * 10 + (s.charAt(i + n) - '0');
                }
            }
            for (int k = n; k <= 9; k++) {
                nanos *= 10;
            }
            i += n;
        }
        long offset = 0;
        String zone = s.substring(i);
        if (zone.length() == 6 && (zone.charAt(0) == '+' || zone.charAt(0) == '-') && zone.charAt(3) == ':') {
            int hh = digits(zone, 1, 3);
            int mm = digits(zone, 4, 6);
            if (hh < 0 || mm < 0 || hh > 24 || mm > 60) {
                return Long.MIN_VALUE;
            }
            offset = (hh * 60L + mm) * 60 * (zone.charAt(0) == '-' ? -1 : 1);
        } else if (!zone.equals("Z")) {
            return Long.MIN_VALUE;
        }
        long secs = LocalDate.of(year, month, day).toEpochDay() * 86400 + hour * 3600L + minute * 60L + sec - offset;
        return secs * 1000 + nanos / 1_000_000;
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    /** Parses s[from, to) as decimal digits, or returns -1. */
    private static int digits(String s, int from, int to) {
        int n = 0;
        for (int i = from; i < to; i++) {
            if (!isDigit(s.charAt(i))) {
                return -1;
            }
            n = n * 10 + (s.charAt(i) - '0');
        }
        return n;
    }

    /** Reports whether b is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
    private static boolean validUtf8(byte[] b) {
        for (int i = 0; i < b.length; ) {
            int c = b[i] & 0xff;
            if (c < 0x80) {
                i++;
                continue;
            }
            int n;
            int min;
            if (c >= 0xc2 && c <= 0xdf) {
                n = 1;
                min = 0x80;
            } else if (c >= 0xe0 && c <= 0xef) {
                n = 2;
                min = 0x800;
            } else if (c >= 0xf0 && c <= 0xf4) {
                n = 3;
                min = 0x10000;
            } else {
                return false;
            }
            if (i + n >= b.length) {
                return false;
            }
            int cp = c & (0x3f >> n);
            for (int k = 1; k <= n; k++) {
                int cc = b[i + k] & 0xff;
                if ((cc & 0xc0) != 0x80) {
                    return false;
                }
                cp = cp << 6 | (cc & 0x3f);
            }
            if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                return false;
            }
            i += n + 1;
        }
        return true;
    }

    /** Reports whether every key and string under node is well-formed UTF-16. */
    private static boolean wellFormed(JsonNode node) {
        if (node.isTextual()) {
            return wellFormed(node.textValue());
        }
        if (node.isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (!wellFormed(e.getKey()) || !wellFormed(e.getValue())) {
                    return false;
                }
            }
        } else if (node.isArray()) {
            for (JsonNode n : node) {
                if (!wellFormed(n)) {
                    return false;
                }
            }
        }
        return true;
    }

    private static boolean wellFormed(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 == s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
                    return false;
                }
                i++;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }
}
