#!/bin/sh
# ensure-kafka.sh: fetch the Apache Kafka broker jars (KRaft mode, from the
# official Maven artifacts) into kafka/lib, for the tests that run against a
# real single-node broker (internal/kafkalocal). Idempotent: once the jars
# are complete, a marker file kafka/lib/.complete-<checksum of the pom> makes
# later runs a no-op; editing the pom fetches again.
#
# Needs java (17 or newer) and mvn on PATH. When either is missing it prints
# what to install and exits 0: the real-broker tests are skipped then (or fail
# when CLICKAGG_REQUIRE_KAFKA is set).
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' kafka/pom.xml)
lib=$root/kafka/lib
marker=$lib/.complete-$(cksum <kafka/pom.xml | cut -d' ' -f1)
key=$lib/kafka_2.13-$KAFKA_VERSION.jar

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
	echo "ensure-kafka: java and/or mvn not found; the real-broker tests will be skipped (install them: apt-get install openjdk-17-jre-headless maven)" >&2
	exit 0
fi

if [ -f "$marker" ] && [ -f "$key" ]; then
	echo "Kafka $KAFKA_VERSION broker jars: $lib"
	exit 0
fi

# fetch runs mvn, showing its output only when it fails (Maven prints stray
# terminal escape codes even with -B -q).
fetch() {
	log=$(mktemp)
	if (cd "$root/kafka" && mvn -B -q -Dstyle.color=never -f pom.xml \
		dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime) >"$log" 2>&1; then
		rm -f "$log"
		return 0
	fi
	cat "$log" >&2
	rm -f "$log"
	return 1
}

echo "ensure-kafka: fetching the Kafka $KAFKA_VERSION broker jars into $lib (mvn)..." >&2
# Start from an empty folder, so that no jar of another version (from an
# earlier pom) ends up on the broker's class path.
rm -f "$lib"/*.jar "$lib"/.complete-*
if ! fetch; then
	echo "ensure-kafka: mvn failed; retrying once..." >&2
	sleep 5
	fetch
fi

if [ ! -f "$key" ]; then
	echo "ensure-kafka: mvn finished but $key is missing" >&2
	exit 1
fi
touch "$marker"
echo "Kafka $KAFKA_VERSION broker jars: $lib"
