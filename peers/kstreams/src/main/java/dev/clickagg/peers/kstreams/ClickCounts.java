package dev.clickagg.peers.kstreams;

import dev.clickagg.peers.Click;
import dev.clickagg.peers.ClickDecoder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * clickagg's job in Kafka Streams: per-URL click counts in event-time
 * tumbling windows, upserted into PostgreSQL; exits by itself once every
 * record up to the input's end offsets at start is counted and written.
 * See README.md.
 */
public final class ClickCounts {
    /** The repartition topic is named application.id + "-" + this + "-repartition". */
    static final String REPARTITION = "clicks-by-url";
    static final String COUNT_STORE = "url-window-counts";
    private static final Pattern SCHEMA = Pattern.compile("[a-z_][a-z0-9_]*");
    private static final byte[] NO_VALUE = new byte[0];

    private ClickCounts() {
    }

    /** The command line. */
    static final class Args {
        String brokers, topic, group, jdbcUrl, schema;
        long windowMs = 60_000, outOfOrdernessMs = 5_000, latenessMs = 1_800_000;
        int parallelism = 2;

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String flag = argv[i];
                String value;
                int eq = flag.indexOf('=');
                if (flag.startsWith("--") && eq > 0) {
                    value = flag.substring(eq + 1);
                    flag = flag.substring(0, eq);
                } else {
                    if (i + 1 >= argv.length) {
                        throw new IllegalArgumentException(flag + ": missing value");
                    }
                    value = argv[++i];
                }
                switch (flag) {
                    case "--brokers" -> a.brokers = value;
                    case "--topic" -> a.topic = value;
                    case "--group" -> a.group = value;
                    case "--jdbc-url" -> a.jdbcUrl = value;
                    case "--schema" -> a.schema = value;
                    case "--window-ms" -> a.windowMs = positive(flag, value);
                    case "--out-of-orderness-ms" -> a.outOfOrdernessMs = nonNegative(flag, value);
                    case "--lateness-ms" -> a.latenessMs = nonNegative(flag, value);
                    case "--parallelism" -> a.parallelism = (int) positive(flag, value);
                    default -> throw new IllegalArgumentException("unknown flag " + flag);
                }
            }
            for (String[] req : new String[][] {{"--brokers", a.brokers}, {"--topic", a.topic}, {"--group", a.group},
                    {"--jdbc-url", a.jdbcUrl}, {"--schema", a.schema}}) {
                if (req[1] == null || req[1].isEmpty()) {
                    throw new IllegalArgumentException(req[0] + ": required");
                }
            }
            if (!SCHEMA.matcher(a.schema).matches()) {
                throw new IllegalArgumentException("--schema " + a.schema + ": must match " + SCHEMA);
            }
            if (!a.jdbcUrl.startsWith("jdbc:postgresql:")) {
                throw new IllegalArgumentException("--jdbc-url: must start with jdbc:postgresql:");
            }
            return a;
        }

        private static long nonNegative(String flag, String v) {
            long n;
            try {
                n = Long.parseLong(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(flag + " " + v + ": not an integer");
            }
            if (n < 0) {
                throw new IllegalArgumentException(flag + " " + v + ": must not be negative");
            }
            return n;
        }

        private static long positive(String flag, String v) {
            long n = nonNegative(flag, v);
            if (n == 0 || n > Integer.MAX_VALUE && flag.equals("--parallelism")) {
                throw new IllegalArgumentException(flag + " " + v + ": must be positive");
            }
            return n;
        }

        /** The JDBC URL with reWriteBatchedInserts=true (one multi-row INSERT per batch). */
        String batchedJdbcUrl() {
            if (jdbcUrl.contains("reWriteBatchedInserts=")) {
                return jdbcUrl;
            }
            return jdbcUrl + (jdbcUrl.contains("?") ? "&" : "?") + "reWriteBatchedInserts=true";
        }
    }

    static Topology topology(Args a) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(new CommitHook.Builder());
        builder.stream(a.topic, Consumed.with(Serdes.ByteArray(), clickSerde())
                        .withTimestampExtractor(new ClickTimestampExtractor())
                        .withName("clicks"))
                .filter((key, click) -> {
                    Stats.records.increment();
                    if (click.reason != null) {
                        Stats.invalid(click.reason).increment();
                        return false;
                    }
                    return true;
                }, Named.as("valid-clicks"))
                // selectKey(url) and drop the value (count() needs none) in one step.
                .map((key, click) -> KeyValue.pair(click.url, NO_VALUE), Named.as("key-by-url"))
                .groupByKey(Grouped.with(REPARTITION, Serdes.String(), Serdes.ByteArray()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(a.windowMs), Duration.ofMillis(a.latenessMs)))
                .count(Named.as("count"), Materialized.<String, Long, WindowStore<Bytes, byte[]>>as(COUNT_STORE)
                        .withKeySerde(Serdes.String()))
                .toStream(Named.as("window-counts"))
                .process(() -> new PostgresUpsert(a.batchedJdbcUrl(), a.schema), Named.as("postgres-upsert"),
                        CommitHook.NAME);
        return builder.build();
    }

    /**
     * Record values decoded by the shared decoder, which never throws: a bad
     * record becomes a Click with a reason, which the topology counts and
     * drops. A click without "ts" gets its event time from
     * ClickTimestampExtractor. For the source only: clicks are never written.
     */
    static Serde<Click> clickSerde() {
        return Serdes.<Click>serdeFrom((topic, click) -> {
            throw new UnsupportedOperationException("clicks are only read");
        }, (topic, value) -> ClickDecoder.decode(value, Click.NO_TIME));
    }

    static Properties config(Args a) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.group);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.brokers);
        // The job's guarantee: state, repartition topic and offsets commit atomically.
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // --parallelism: one stream thread per unit of parallelism.
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.parallelism);
        // 10 s like Flink's checkpoints (the EOS default is 100 ms): the same
        // durability cadence for both, and far fewer transactions and cache
        // flushes (so far fewer upserts). See README.md.
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 10_000);
        // A transaction now stays open up to ~10 s: give it more than that
        // (Streams' EOS default is 10 s, equal to the commit interval).
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 60_000);
        // A record that cannot be deserialized is logged and skipped, never fatal
        // (the decoder never throws; this is the backstop).
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        return p;
    }

    public static void main(String[] argv) {
        Args a;
        try {
            a = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("clickcounts: " + e.getMessage());
            System.err.println("usage: ClickCounts --brokers HOST:PORT --topic T --group G --jdbc-url URL --schema S"
                    + " [--window-ms 60000] [--out-of-orderness-ms 5000] [--lateness-ms 1800000] [--parallelism 2]");
            System.exit(2);
            return;
        }
        try {
            System.exit(run(a));
        } catch (Throwable t) {
            System.err.println("clickcounts: fatal: " + t);
            t.printStackTrace();
            System.exit(1);
        }
    }

    static int run(Args a) throws Exception {
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.brokers);
        try (Admin admin = Admin.create(adminProps)) {
            Map<TopicPartition, Long> inputEnd = endOffsets(admin, a.topic);
            if (inputEnd == null) {
                System.err.println("clickcounts: topic " + a.topic + " does not exist");
                return 1;
            }
            String repartition = a.group + "-" + REPARTITION + "-repartition";

            KafkaStreams streams = new KafkaStreams(topology(a), config(a));
            final Throwable[] fatal = new Throwable[1];
            streams.setUncaughtExceptionHandler(e -> {
                synchronized (fatal) {
                    if (fatal[0] == null) {
                        fatal[0] = e;
                    }
                }
                return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            streams.start();

            int donePolls = 0;
            while (donePolls < 2) {
                TimeUnit.SECONDS.sleep(1);
                Throwable f;
                synchronized (fatal) {
                    f = fatal[0];
                }
                KafkaStreams.State st = streams.state();
                if (f != null || st == KafkaStreams.State.ERROR || st == KafkaStreams.State.PENDING_ERROR
                        || st == KafkaStreams.State.NOT_RUNNING || st == KafkaStreams.State.PENDING_SHUTDOWN) {
                    streams.close(Duration.ofSeconds(30));
                    System.err.println("clickcounts: fatal: stream state " + st
                            + (f != null ? ": " + rootMessage(f) : ""));
                    if (f != null) {
                        f.printStackTrace();
                    }
                    return 1;
                }
                donePolls = caughtUp(admin, a.group, inputEnd, repartition) ? donePolls + 1 : 0;
            }

            long droppedLate = droppedRecords(streams);
            boolean closed = streams.close(CloseOptions
                    .groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                    .withTimeout(Duration.ofSeconds(60)));
            if (!closed) {
                System.err.println("clickcounts: fatal: Kafka Streams did not close within 60 s");
                return 1;
            }
            if (Stats.sinkFailure != null) {
                System.err.println("clickcounts: fatal: " + Stats.sinkFailure.getMessage());
                return 1;
            }
            streams.cleanUp(); // the local state is not needed any more (the changelogs hold it)
            System.out.println(summary(droppedLate));
            return 0;
        }
    }

    /** End offsets (read_committed) of the topic's partitions; null when the topic does not exist. */
    static Map<TopicPartition, Long> endOffsets(Admin admin, String topic) throws Exception {
        TopicDescription d;
        try {
            d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof UnknownTopicOrPartitionException) {
                return null;
            }
            throw e;
        }
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        d.partitions().forEach(p -> req.put(new TopicPartition(topic, p.partition()), OffsetSpec.latest()));
        Map<TopicPartition, Long> end = new HashMap<>();
        admin.listOffsets(req, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED)).all().get()
                .forEach((tp, info) -> end.put(tp, info.offset()));
        return end;
    }

    /**
     * Whether the group's committed offsets reached the input's end offsets
     * taken at start and, read after them, the repartition topic's current
     * end offsets. Under exactly_once_v2 an input offset is committed in the
     * transaction that wrote its repartition records, so once the input is
     * caught up the repartition topic's end offsets are final.
     */
    static boolean caughtUp(Admin admin, String group, Map<TopicPartition, Long> inputEnd, String repartition)
            throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        if (!reached(committed, inputEnd)) {
            return false;
        }
        Map<TopicPartition, Long> repEnd = endOffsets(admin, repartition);
        return repEnd != null && reached(committed, repEnd);
    }

    private static boolean reached(Map<TopicPartition, OffsetAndMetadata> committed, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (e.getValue() == 0) {
                continue;
            }
            OffsetAndMetadata c = committed.get(e.getKey());
            if (c == null || c.offset() < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    /** The tasks' dropped-records-total: records too late for their window (nothing else drops here). */
    static long droppedRecords(KafkaStreams streams) {
        double sum = 0;
        for (Map.Entry<MetricName, ? extends Metric> e : streams.metrics().entrySet()) {
            MetricName n = e.getKey();
            if (n.name().equals("dropped-records-total") && n.group().equals("stream-task-metrics")) {
                Object v = e.getValue().metricValue();
                if (v instanceof Number num) {
                    sum += num.doubleValue();
                }
            }
        }
        return (long) sum;
    }

    static String summary(long droppedLate) {
        StringBuilder reasons = new StringBuilder();
        new TreeMap<>(Stats.invalidByReason).forEach((reason, n) ->
                reasons.append(reasons.length() == 0 ? "" : ",").append('"').append(reason).append("\":").append(n.sum()));
        long records = Stats.records.sum();
        long invalid = Stats.invalidTotal();
        return "{\"records\":" + records + ",\"invalid\":" + invalid + ",\"dropped_late\":" + droppedLate
                + ",\"rows_upserted\":" + Stats.rowsUpserted.sum()
                + ",\"valid\":" + (records - invalid)
                + ",\"invalid_reasons\":{" + reasons + "}"
                + ",\"batches\":" + Stats.batches.sum()
                + ",\"rows_by_trigger\":{\"commit\":" + Stats.rowsAtCommit.sum()
                + ",\"punctuate\":" + Stats.rowsAtPunctuate.sum()
                + ",\"full_batch\":" + Stats.rowsAtFullBatch.sum()
                + ",\"close\":" + Stats.rowsAtClose.sum() + "}}";
    }

    private static String rootMessage(Throwable t) {
        List<String> msgs = new ArrayList<>();
        for (Throwable c = t; c != null && msgs.size() < 5; c = c.getCause()) {
            msgs.add(String.valueOf(c.getMessage()));
        }
        return String.join(": ", msgs);
    }
}
