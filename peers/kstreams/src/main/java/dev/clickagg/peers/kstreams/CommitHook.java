package dev.clickagg.peers.kstreams;

import java.util.Map;
import org.apache.kafka.streams.processor.StateStore;
import org.apache.kafka.streams.processor.StateStoreContext;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.internals.CacheFlushListener;
import org.apache.kafka.streams.state.internals.CachedStateStore;

/**
 * A state store that holds nothing: it only tells {@link PostgresUpsert}
 * that the task is about to commit, so that the upserts are in PostgreSQL
 * before the input offsets they came from are committed (at-least-once into
 * PostgreSQL; absolute counts make a replayed upsert harmless).
 *
 * <p>Kafka Streams has no public pre-commit hook for a processor: under
 * exactly_once_v2 a running task calls StateStore#commit only on close, and
 * calls flushCache() on every caching store just before each commit, in the
 * order the stores were registered. So this store implements the internal
 * CachedStateStore interface (the one use of an internal API here); it is
 * registered after the count store (it belongs to a later processor), so
 * the count store's cache has already forwarded its dirty windows to the
 * sink when this runs. Logging (changelog) off, not persistent.
 */
final class CommitHook implements StateStore, CachedStateStore<Object, Object> {
    static final String NAME = "postgres-commit-hook";

    private volatile Runnable onCommit;
    private boolean open;

    void onCommit(Runnable r) {
        onCommit = r;
    }

    private void run() {
        Runnable r = onCommit;
        if (r != null) {
            r.run();
        }
    }

    @Override
    public void flushCache() {
        run(); // before every commit
    }

    @Override
    public void commit(Map<org.apache.kafka.common.TopicPartition, Long> changelogOffsets) {
        run(); // on close (and whenever Kafka Streams checkpoints)
    }

    @Override
    public boolean setFlushListener(CacheFlushListener<Object, Object> listener, boolean sendOldValues) {
        return false;
    }

    @Override
    public void clearCache() {
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public void init(StateStoreContext context, StateStore root) {
        context.register(root, (key, value) -> { });
        open = true;
    }

    @Override
    public void close() {
        open = false;
    }

    @Override
    public boolean persistent() {
        return false;
    }

    @Override
    public boolean isOpen() {
        return open;
    }

    /** Builds one hook per task. */
    static final class Builder implements StoreBuilder<CommitHook> {
        @Override
        public StoreBuilder<CommitHook> withCachingEnabled() {
            return this;
        }

        @Override
        public StoreBuilder<CommitHook> withCachingDisabled() {
            return this;
        }

        @Override
        public StoreBuilder<CommitHook> withLoggingEnabled(Map<String, String> config) {
            throw new UnsupportedOperationException("the commit hook has no changelog");
        }

        @Override
        public StoreBuilder<CommitHook> withLoggingDisabled() {
            return this;
        }

        @Override
        public CommitHook build() {
            return new CommitHook();
        }

        @Override
        public Map<String, String> logConfig() {
            return Map.of();
        }

        @Override
        public boolean loggingEnabled() {
            return false;
        }

        @Override
        public String name() {
            return NAME;
        }
    }
}
