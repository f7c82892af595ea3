package dev.clickagg.peers.kstreams;

import dev.clickagg.peers.Click;
import dev.clickagg.peers.ClickDecoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The event time: the JSON "ts" (already parsed by the source's deserializer,
 * {@link ClickCounts#clickSerde}, which runs first), else the Kafka record
 * timestamp. Also makes clickagg's two checks that need the record
 * timestamp: without ts, the record timestamp must be in [2000, 2100)
 * (timestamp_out_of_range); with ts, it may be at most an hour ahead of the
 * record timestamp (clickagg's default max_future_skew:
 * timestamp_ahead_of_record).
 */
final class ClickTimestampExtractor implements TimestampExtractor {
    static final long MAX_FUTURE_SKEW_MS = 3_600_000;

    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
        long recordTs = record.timestamp();
        if (record.value() instanceof Click c && c.reason == null) {
            if (c.ts == Click.NO_TIME) {
                if (ClickDecoder.validEventTime(recordTs)) {
                    return recordTs;
                }
                c.reason = "timestamp_out_of_range";
            } else if (c.ts - recordTs > MAX_FUTURE_SKEW_MS) {
                c.reason = "timestamp_ahead_of_record";
            } else {
                return c.ts;
            }
        }
        // A rejected record: dropped right after the source, so its time only
        // has to be non-negative (a negative one would make Kafka Streams drop
        // it itself and count it in dropped-records, which reports late drops).
        return recordTs >= 0 ? recordTs : Math.max(partitionTime, 0);
    }
}
