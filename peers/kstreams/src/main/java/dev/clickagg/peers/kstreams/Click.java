package dev.clickagg.peers.kstreams;

/**
 * One decoded record: a click (reason == null) with its url and, when the
 * JSON had one, its event time; or a rejected record and why.
 */
final class Click {
    String url;
    long ts; // Unix ms; meaningful when hasTs
    boolean hasTs;
    Reason reason;

    void reset() {
        url = null;
        ts = 0;
        hasTs = false;
        reason = null;
    }
}
