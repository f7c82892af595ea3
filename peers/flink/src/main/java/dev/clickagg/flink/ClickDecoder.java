package dev.clickagg.flink;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.clickagg.flink.UrlClickCounts.Click;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Iterator;
import java.util.Map;

/**
 * Decodes one click record the way clickagg counts it in its default
 * configuration: a JSON object {"url": string, "ts": epoch-ms integer or RFC
 * 3339 string, "id": string or integer}; no "ts" (or null) means the Kafka
 * record's timestamp. Anything else is rejected with clickagg's reason name,
 * checked in clickagg's order (structure, url, ts, id).
 *
 * <p>Known differences, none of which the benchmark's records exercise:
 * RFC 3339 strings are parsed by java.time (which also takes a lowercase 't'
 * or 'z', and no seconds, where Go's time.Parse does not), and Jackson's
 * nesting limit is its own.
 */
final class ClickDecoder {
    /** The accepted event-time range: [2000-01-01, 2100-01-01) UTC, as clickagg. */
    static final long MIN_EVENT_TIME_MS = 946_684_800_000L;
    static final long MAX_EVENT_TIME_MS = 4_102_444_800_000L;
    static final int MAX_URL_BYTES = 2048;

    /** Rejection reasons, named as clickagg's clickagg_invalid_records_total labels. */
    static final String[] REASONS = {
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
     * Decodes value into out (url and event time) and returns null, or
     * returns the reason it is rejected.
     */
    static String decode(byte[] value, long recordTimestampMs, Click out) {
        JsonNode root;
        try {
            root = JSON.readTree(value);
        } catch (JsonProcessingException e) {
            // NB: Jackson rejects invalid UTF-8 bytes as a parse error.
            return e.getMessage() != null && e.getMessage().contains("UTF-8") ? "invalid_utf8" : "invalid_json";
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
            ts = recordTimestampMs; // NB: not range-checked, as in clickagg
        } else {
            if (t.isIntegralNumber() && t.canConvertToLong()) {
                ts = t.longValue();
            } else if (t.isTextual()) {
                try {
                    ts = OffsetDateTime.parse(t.textValue(), DateTimeFormatter.ISO_OFFSET_DATE_TIME)
                            .toInstant().toEpochMilli();
                } catch (DateTimeParseException | ArithmeticException e) {
                    return "invalid_timestamp";
                }
            } else {
                return "invalid_timestamp";
            }
            if (ts < MIN_EVENT_TIME_MS || ts >= MAX_EVENT_TIME_MS) {
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
