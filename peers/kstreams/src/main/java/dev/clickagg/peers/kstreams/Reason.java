package dev.clickagg.peers.kstreams;

/** Why a record is not counted; the names are clickagg's rejection reasons. */
enum Reason {
    INVALID_JSON("invalid_json"),
    MISSING_URL("missing_url"),
    INVALID_URL("invalid_url"),
    EMPTY_URL("empty_url"),
    URL_TOO_LONG("url_too_long"),
    INVALID_UTF8("invalid_utf8"),
    INVALID_TIMESTAMP("invalid_timestamp"),
    TIMESTAMP_OUT_OF_RANGE("timestamp_out_of_range"),
    INVALID_ID("invalid_id"),
    TIMESTAMP_AHEAD("timestamp_ahead_of_record");

    final String label;

    Reason(String label) {
        this.label = label;
    }
}
