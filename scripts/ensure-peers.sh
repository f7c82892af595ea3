#!/bin/sh
# ensure-peers.sh: build the contenders of `clickagg bench --peers` (the
# Flink job in peers/flink, the Kafka Streams app in peers/kstreams: every
# peers/*/pom.xml present) with Maven, each into peers/NAME/target: its jar
# and, in target/lib, the jars it needs at run time. Both also compile the
# sources they share, peers/common/src (no pom: not built by itself).
# Idempotent: a marker target/.complete-<checksum of the pom, the sources and
# the shared sources> makes later runs a no-op until one of them changes.
#
# Needs java (17 or newer) and mvn on PATH. When either is missing it prints
# what to install and exits 0: the peer benchmark and test are skipped then
# (the test fails when CLICKAGG_REQUIRE_PEERS is set).
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
	echo "ensure-peers: java and/or mvn not found; the peer benchmark will be skipped (install them: apt-get install openjdk-17-jdk-headless maven)" >&2
	exit 0
fi

# build runs mvn in $1, showing its output only when it fails (Maven prints
# stray terminal escape codes even with -B -q).
build() {
	log=$(mktemp)
	if (cd "$1" && mvn -B -q -Dstyle.color=never -f pom.xml \
		package dependency:copy-dependencies -DoutputDirectory=target/lib -DincludeScope=runtime) >"$log" 2>&1; then
		rm -f "$log"
		return 0
	fi
	cat "$log" >&2
	rm -f "$log"
	return 1
}

found=0
for pom in peers/*/pom.xml; do
	[ -f "$pom" ] || continue
	found=1
	dir=$root/$(dirname "$pom")
	name=$(basename "$dir")
	# NB: the checksum covers the file names too, so a renamed or deleted
	# source builds again; and the shared sources (../common/src), so a
	# change there rebuilds every peer.
	sum=$(cd "$dir" && find pom.xml src ../common/src -type f 2>/dev/null | LC_ALL=C sort | while read -r f; do
		echo "$f"; cat "$f"; done | cksum | cut -d' ' -f1)
	marker=$dir/target/.complete-$sum
	if [ ! -f "$marker" ]; then
		echo "ensure-peers: building $name (mvn)..." >&2
		# Start from an empty target/lib, so that no jar of another version
		# (from an earlier pom) ends up on the class path.
		rm -rf "$dir/target/lib" "$dir"/target/.complete-*
		if ! build "$dir"; then
			echo "ensure-peers: mvn failed for $name; retrying once..." >&2
			sleep 5
			build "$dir"
		fi
		touch "$marker"
	fi
	echo "peer $name: $dir/target (jar and lib/)"
done
if [ "$found" = 0 ]; then
	echo "ensure-peers: no peers/*/pom.xml found" >&2
fi
