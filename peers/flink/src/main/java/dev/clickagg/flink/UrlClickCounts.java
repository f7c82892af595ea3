package dev.clickagg.flink;

import dev.clickagg.peers.Click;
import dev.clickagg.peers.ClickDecoder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFilterFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.jdbc.JdbcConnectionOptions;
import org.apache.flink.connector.jdbc.JdbcExecutionOptions;
import org.apache.flink.connector.jdbc.core.datastream.sink.JdbcSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Per-URL click counts in tumbling event-time windows, from a Kafka topic to
 * PostgreSQL: the Flink contender of clickagg's peer benchmark (README.md).
 *
 * <p>Reads the topic from the earliest offsets up to the end offsets at
 * start (a bounded source, so the job finishes), counts each URL's clicks
 * per window with an incremental aggregate, and upserts each firing's
 * absolute count into SCHEMA.url_clicks. Late records (up to the allowed
 * lateness) fire the window again with the updated count, which overwrites
 * the row: the table ends exact.
 */
public final class UrlClickCounts {

    /** One window's count: a url_clicks row. A Flink POJO. */
    public static final class WindowCount {
        public String url;
        public long start;
        public long end;
        public long clicks;

        public WindowCount() {}
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parseArgs(argv);
        String brokers = required(args, "brokers");
        String topic = required(args, "topic");
        String group = required(args, "group");
        String jdbcUrl = required(args, "jdbc-url");
        String schema = required(args, "schema");
        long windowMs = Long.parseLong(args.getOrDefault("window-ms", "60000"));
        long outOfOrdernessMs = Long.parseLong(args.getOrDefault("out-of-orderness-ms", "5000"));
        long latenessMs = Long.parseLong(args.getOrDefault("lateness-ms", "1800000"));
        int parallelism = Integer.parseInt(args.getOrDefault("parallelism", "2"));
        long checkpointMs = Long.parseLong(args.getOrDefault("checkpoint-ms", "10000"));
        int batchSize = Integer.parseInt(args.getOrDefault("batch-size", "5000"));
        if (!schema.matches("[a-z_][a-z0-9_]*")) {
            throw new IllegalArgumentException("--schema " + schema + ": want a plain lowercase SQL identifier");
        }
        Path checkpoints = args.containsKey("checkpoint-dir")
                ? Path.of(args.get("checkpoint-dir"))
                : Files.createTempDirectory("clickagg-flink-checkpoints-");

        // The heap (hashmap) state backend: every open window's count is a
        // Java object, checkpointed in full to local files (the in-memory
        // JobManager storage caps a checkpoint at a few MiB).
        Configuration conf = new Configuration();
        conf.set(StateBackendOptions.STATE_BACKEND, "hashmap");
        conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
        conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, checkpoints.toUri().toString());
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
        // Exactly-once state; with the at-least-once JDBC sink below a
        // restart may rewrite rows, but always with absolute counts.
        env.enableCheckpointing(checkpointMs, CheckpointingMode.EXACTLY_ONCE);

        KafkaSource<Click> source = KafkaSource.<Click>builder()
                .setBootstrapServers(brokers)
                .setTopics(topic)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setDeserializer(new ClickDeserializer())
                .build();

        // Watermarks per partition (the source tracks each split's), trailing
        // the highest event time by the out-of-orderness bound. Rejected
        // records carry Click.NO_TIME, which never advances a watermark.
        WatermarkStrategy<Click> watermarks = WatermarkStrategy
                .<Click>forBoundedOutOfOrderness(Duration.ofMillis(outOfOrdernessMs))
                .withTimestampAssigner((click, recordTs) -> click.ts);

        env.fromSource(source, watermarks, "kafka: " + topic)
                .filter(new CountAndDropInvalid()).name("drop invalid")
                .keyBy(click -> click.url)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(windowMs)))
                // Keep each window's state for this long after it closes, so
                // that a late record fires it again with the updated count
                // instead of being dropped.
                .allowedLateness(Duration.ofMillis(latenessMs))
                .aggregate(new Count(), new ToWindowCount()).name("count per url and window")
                .sinkTo(JdbcSink.<WindowCount>builder()
                        .withQueryStatement(
                                "INSERT INTO " + schema + ".url_clicks (url, window_start, window_end, clicks)"
                                        + " VALUES (?, ?, ?, ?) ON CONFLICT (url, window_start) DO UPDATE"
                                        + " SET clicks = EXCLUDED.clicks, window_end = EXCLUDED.window_end",
                                (ps, w) -> {
                                    ps.setString(1, w.url);
                                    ps.setObject(2, utc(w.start));
                                    ps.setObject(3, utc(w.end));
                                    ps.setLong(4, w.clicks);
                                })
                        // Batches go out when full and at every checkpoint and
                        // the end of input (the writer's flush).
                        .withExecutionOptions(JdbcExecutionOptions.builder()
                                .withBatchSize(batchSize)
                                .withBatchIntervalMs(0)
                                .withMaxRetries(3)
                                .build())
                        .buildAtLeastOnce(new JdbcConnectionOptions.JdbcConnectionOptionsBuilder()
                                .withUrl(jdbcUrl)
                                .withDriverName("org.postgresql.Driver")
                                .build()))
                .name("upsert into " + schema + ".url_clicks");

        long t0 = System.nanoTime();
        JobExecutionResult result;
        try {
            result = env.execute("clickagg peer: url click counts");
        } finally {
            deleteTree(checkpoints);
        }
        Map<String, Object> acc = result.getAllAccumulatorResults();
        long records = (Long) acc.getOrDefault("records", 0L);
        TreeMap<String, Long> invalid = new TreeMap<>();
        long invalidTotal = 0;
        for (String reason : ClickDecoder.REASONS) {
            long n = (Long) acc.getOrDefault("invalid_" + reason, 0L);
            if (n > 0) {
                invalid.put(reason, n);
                invalidTotal += n;
            }
        }
        StringBuilder reasons = new StringBuilder();
        invalid.forEach((k, v) -> reasons.append(reasons.length() == 0 ? "" : ",").append('"').append(k).append("\":").append(v));
        System.err.printf("skipped %d invalid records: %s%n", invalidTotal, invalid);
        System.out.printf("{\"peer\":\"flink\",\"records\":%d,\"valid\":%d,\"invalid\":%d,\"invalid_by_reason\":{%s},\"seconds\":%.3f}%n",
                records, records - invalidTotal, invalidTotal, reasons, (System.nanoTime() - t0) / 1e9);
        System.out.flush();
        // NB: the MiniCluster can leave non-daemon threads behind.
        System.exit(0);
    }

    /** Decodes each Kafka record into a Click (a rejected one keeps its reason). */
    static final class ClickDeserializer implements KafkaRecordDeserializationSchema<Click> {
        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Click> out) throws IOException {
            out.collect(ClickDecoder.decode(record.value(), record.timestamp()));
        }

        @Override
        public TypeInformation<Click> getProducedType() {
            return TypeInformation.of(Click.class);
        }
    }

    /** Drops rejected records, counting every record and each reason in accumulators. */
    static final class CountAndDropInvalid extends RichFilterFunction<Click> {
        private transient LongCounter records;
        private transient Map<String, LongCounter> invalid;

        @Override
        public void open(OpenContext ctx) {
            records = getRuntimeContext().getLongCounter("records");
            invalid = new HashMap<>();
            for (String reason : ClickDecoder.REASONS) {
                invalid.put(reason, getRuntimeContext().getLongCounter("invalid_" + reason));
            }
        }

        @Override
        public boolean filter(Click c) {
            records.add(1);
            if (c.reason == null) {
                return true;
            }
            invalid.get(c.reason).add(1);
            return false;
        }
    }

    /** Counts a window's clicks incrementally: the state is one Long per URL and window. */
    static final class Count implements AggregateFunction<Click, Long, Long> {
        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(Click c, Long n) {
            return n + 1;
        }

        @Override
        public Long getResult(Long n) {
            return n;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    /** Attaches the window's bounds to its count. */
    static final class ToWindowCount extends ProcessWindowFunction<Long, WindowCount, String, TimeWindow> {
        @Override
        public void process(String url, Context ctx, Iterable<Long> counts, Collector<WindowCount> out) {
            WindowCount w = new WindowCount();
            w.url = url;
            w.start = ctx.window().getStart();
            w.end = ctx.window().getEnd();
            w.clicks = counts.iterator().next();
            out.collect(w);
        }
    }

    private static OffsetDateTime utc(long ms) {
        return OffsetDateTime.ofInstant(Instant.ofEpochMilli(ms), ZoneOffset.UTC);
    }

    private static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 == argv.length) {
                throw new IllegalArgumentException("want --name value pairs, got " + String.join(" ", argv));
            }
            m.put(argv[i].substring(2), argv[i + 1]);
        }
        return m;
    }

    private static String required(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) paths.sorted(Comparator.reverseOrder())::iterator) {
                Files.deleteIfExists(p);
            }
        }
    }
}
