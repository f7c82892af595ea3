// Package kafkatest runs a real single-node Apache Kafka 4.x broker (KRaft
// mode, combined broker and controller) for tests, from the official jars
// that scripts/ensure-kafka.sh fetches into kafka/lib with Maven.
// Test-only: imported by _test.go files, never by the binary.
//
// Most tests share one broker per test binary:
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		b := kafkatest.Shared(t) // started on first use
//		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//		...
//	}
//
// A package that also uses pgtest composes the two:
//
//	func TestMain(m *testing.M) { pgtest.Main(kafkatest.Wrap(m)) }
//
// The broker itself (what Start does, how it is tuned, how its process
// ends with the test) is package kafkalocal's: see its documentation.
// [Shared] and [Require] skip a test when the broker cannot run here
// (java or the jars missing), or fail it when $CLICKAGG_REQUIRE_KAFKA is
// set (CI sets it).
package kafkatest
