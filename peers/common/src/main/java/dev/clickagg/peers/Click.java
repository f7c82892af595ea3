package dev.clickagg.peers;

/**
 * One decoded record ({@link ClickDecoder}): a click (reason null) with its
 * url and event time, or a rejected record with clickagg's reason for it. A
 * Flink POJO: public fields and a no-argument constructor.
 */
public final class Click {
    /**
     * The ts of a rejected record (it never advances a watermark), and of a
     * click without "ts" decoded without its record timestamp.
     */
    public static final long NO_TIME = Long.MIN_VALUE;

    public String url;
    /** The event time, Unix milliseconds. */
    public long ts;
    /** Why the record is rejected (a clickagg reason name), or null. */
    public String reason;

    public Click() {}
}
