package dev.clickagg.peers.kstreams;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/** Process-wide counters for the exit summary (all stream threads add to them). */
final class Stats {
    static final LongAdder records = new LongAdder(); // read from the input topic
    /** Invalid records by reason (clickagg's reason names). */
    static final Map<String, LongAdder> invalidByReason = new ConcurrentHashMap<>();
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

    private Stats() {
    }

    static LongAdder invalid(String reason) {
        return invalidByReason.computeIfAbsent(reason, r -> new LongAdder());
    }

    static long invalidTotal() {
        return invalidByReason.values().stream().mapToLong(LongAdder::sum).sum();
    }
}
