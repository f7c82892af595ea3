package dev.clickagg.peers.kstreams;

import java.util.concurrent.atomic.LongAdder;

/** Process-wide counters for the exit summary (all stream threads add to them). */
final class Stats {
    static final LongAdder records = new LongAdder(); // read from the input topic
    static final LongAdder[] invalid = new LongAdder[Reason.values().length];
    static final LongAdder rowsUpserted = new LongAdder();
    static final LongAdder batches = new LongAdder();
    // Rows written by each flush trigger: commit (before the Kafka commit),
    // the 1 s punctuator, a full batch, close.
    static final LongAdder rowsAtCommit = new LongAdder();
    static final LongAdder rowsAtPunctuate = new LongAdder();
    static final LongAdder rowsAtFullBatch = new LongAdder();
    static final LongAdder rowsAtClose = new LongAdder();
    /** The first failure of a JDBC flush (also those during close, which Kafka Streams only logs). */
    static volatile Throwable sinkFailure;

    static {
        for (int i = 0; i < invalid.length; i++) {
            invalid[i] = new LongAdder();
        }
    }

    private Stats() {
    }

    static long invalidTotal() {
        long n = 0;
        for (LongAdder a : invalid) {
            n += a.sum();
        }
        return n;
    }
}
