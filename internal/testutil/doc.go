// Package testutil holds helpers shared by tests of several packages
// (WaitFor, Tmpfs, DeleteRecords); its subpackages pgtest and kafkatest give
// tests a PostgreSQL database and a Kafka broker. Test-only: imported by
// _test.go files, never by the binary (cmd/clickagg's TestNoTestCodeInBinary
// checks).
package testutil
