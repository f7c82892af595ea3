package dev.clickagg.peers.kstreams;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.streams.errors.StreamsException;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;

/**
 * Upserts each window's absolute count into S.url_clicks, in JDBC batches
 * on its own connection (one per task; the tasks' URLs are disjoint, so the
 * connections never touch the same row). Within a batch the last count of a
 * (url, window) wins. A batch is written when it is full, every second of
 * wall-clock time, before each Kafka commit ({@link CommitHook}) and on close.
 * A failed write fails the stream thread (the app then exits 1).
 */
final class PostgresUpsert implements Processor<Windowed<String>, Long, Void, Void> {
    static final int MAX_BATCH = 5000;

    private final String jdbcUrl;
    private final String sql;
    private final Map<Windowed<String>, Long> pending = new HashMap<>();
    private Connection conn;
    private PreparedStatement stmt;

    PostgresUpsert(String jdbcUrl, String schema) {
        this.jdbcUrl = jdbcUrl;
        this.sql = "INSERT INTO " + schema + ".url_clicks (url, window_start, window_end, clicks) VALUES (?,?,?,?) "
                + "ON CONFLICT (url, window_start) DO UPDATE SET clicks = EXCLUDED.clicks, window_end = EXCLUDED.window_end";
    }

    @Override
    public void init(ProcessorContext<Void, Void> context) {
        try {
            conn = DriverManager.getConnection(jdbcUrl);
            conn.setAutoCommit(false);
            stmt = conn.prepareStatement(sql);
        } catch (SQLException e) {
            throw new StreamsException("connect to PostgreSQL: " + e.getMessage(), e);
        }
        CommitHook hook = context.getStateStore(CommitHook.NAME);
        hook.onCommit(() -> flush(Stats.rowsAtCommit));
        context.schedule(Duration.ofSeconds(1), PunctuationType.WALL_CLOCK_TIME, now -> flush(Stats.rowsAtPunctuate));
    }

    @Override
    public void process(Record<Windowed<String>, Long> record) {
        if (record.key() == null || record.value() == null) {
            return;
        }
        pending.put(record.key(), record.value());
        if (pending.size() >= MAX_BATCH) {
            flush(Stats.rowsAtFullBatch);
        }
    }

    private void flush(LongAdder trigger) {
        if (pending.isEmpty()) {
            return;
        }
        try {
            for (Map.Entry<Windowed<String>, Long> e : pending.entrySet()) {
                Windowed<String> w = e.getKey();
                stmt.setString(1, w.key());
                stmt.setObject(2, utc(w.window().start()));
                stmt.setObject(3, utc(w.window().end()));
                stmt.setLong(4, e.getValue());
                stmt.addBatch();
            }
            stmt.executeBatch();
            conn.commit();
        } catch (SQLException e) {
            try {
                conn.rollback();
            } catch (SQLException ignored) {
                // the connection is broken; the thread dies anyway
            }
            SQLException next = e.getNextException();
            String msg = "upsert " + pending.size() + " rows into PostgreSQL: " + e.getMessage()
                    + (next != null ? " (" + next.getMessage() + ")" : "");
            StreamsException failure = new StreamsException(msg, e);
            if (Stats.sinkFailure == null) {
                Stats.sinkFailure = failure;
            }
            throw failure;
        }
        Stats.rowsUpserted.add(pending.size());
        Stats.batches.increment();
        trigger.add(pending.size());
        pending.clear();
    }

    private static OffsetDateTime utc(long ms) {
        return OffsetDateTime.ofInstant(Instant.ofEpochMilli(ms), ZoneOffset.UTC);
    }

    @Override
    public void close() {
        if (conn == null) {
            return;
        }
        try {
            flush(Stats.rowsAtClose);
        } finally {
            try {
                conn.close();
            } catch (SQLException ignored) {
                // closing
            }
        }
    }
}
