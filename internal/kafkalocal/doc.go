// Package kafkalocal runs a real single-node Apache Kafka 4.x broker (KRaft
// mode, combined broker and controller) on loopback, from the official jars
// that scripts/ensure-kafka.sh fetches into kafka/lib with Maven. Product
// runtime: `clickagg bench` starts one directly, so it is part of the
// binary; the tests use it through package kafkatest (a broker shared per
// test binary).
//
// # Contract
//
//   - [LibDir] is $CLICKAGG_KAFKA_LIB if set, else <repo root>/kafka/lib.
//     [Available] is true when java 17+ is on PATH and LibDir holds the
//     kafka_2.13 jar and the .complete-* marker that scripts/ensure-kafka.sh
//     writes last. When it is false, callers say why (what to install or run).
//
//   - [Start] creates a fresh folder clickagg-kafka-* under Options.Dir
//     (default os.TempDir()), formats KRaft storage in it (node.id 1, a
//     random cluster id, static quorum on the controller listener), picks
//     two free ports of 127.0.0.1 (client and controller listeners, nothing
//     listens elsewhere) and starts `java -cp LibDir/* kafka.Kafka` with a
//     small heap and the serial collector. It returns once a kadm client can
//     list the broker and create and delete a probe topic (polling, at most
//     ~90 s). If a chosen port is taken before the JVM binds it, Start tries
//     again with other ports. A failed Start leaves no process and no folder
//     behind; its error includes the tail of the broker log.
//
//   - The broker is tuned for tests: replication factor 1 and min ISR 1 for
//     every internal topic, 4 partitions for __consumer_offsets and
//     __transaction_state (50 by default), num.partitions=1,
//     auto.create.topics.enable=false (tests create their topics),
//     group.initial.rebalance.delay.ms=0, group.min.session.timeout.ms=1000
//     (short session timeouts allowed), few threads. Options.Config adds or
//     overrides server.properties entries. Flush settings are Kafka's
//     defaults (the page cache, no fsync per message). Share groups and the
//     other 4.x features keep their default levels.
//
//   - Logging goes through log4j2 to broker.log in the folder (INFO, without
//     the configuration dumps); anything the JVM prints itself goes to
//     jvm.out. [Broker.LogTail] returns the end of both, for failing tests.
//
//   - [Broker.Restart] stops the JVM gracefully (SIGTERM) keeping the data,
//     starts it again on the same ports (waiting for them to be free and
//     retrying briefly if the bind fails) and waits until it is ready.
//     [Broker.Kill] SIGKILLs the JVM (a crash), keeping the data; Restart
//     brings it back. [Broker.Stop] sends SIGTERM, then SIGKILL after 30 s,
//     and removes the folder; it is safe to call more than once.
//     [Broker.Pid] is the JVM's process id (benchmarks read its CPU).
//
// # Process lifetime
//
// The JVM runs in its own process group, so a Ctrl-C in a terminal reaches
// only the Go process, and it is started with a parent-death signal
// (SIGKILL) from a dedicated OS thread that never exits, so it dies whenever
// the Go test process ends without calling Stop (Linux). The folder is left
// behind then; a later Start under the same parent folder removes such
// leftovers once their Go process and JVM are gone.
package kafkalocal
