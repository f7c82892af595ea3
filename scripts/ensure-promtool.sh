#!/bin/sh
# ensure-promtool.sh: make sure promtool (Prometheus' rule checker) is
# installed, for the test that checks and unit-tests the alerting rules in
# configs/prometheus (configs/alerts_test.go). Idempotent.
#
# When promtool is neither on PATH nor at /usr/bin/promtool and we run as
# root on a system with apt-get, installs the Debian/Ubuntu "prometheus"
# package (which ships it; the package's own server is not used). Otherwise
# prints what to install. Exits 0 either way: the rules test skips when
# promtool is missing, or fails when CLICKAGG_REQUIRE_KAFKA is set (CI).
set -eu
. "$(dirname "$0")/apt.sh"

found() {
	if p=$(command -v promtool 2>/dev/null) && [ -n "$p" ]; then
		echo "$p"
		return 0
	fi
	if [ -x /usr/bin/promtool ]; then
		echo /usr/bin/promtool
		return 0
	fi
	return 1
}

apt_ensure promtool prometheus ensure-promtool "the alerting rules test will be skipped" \
	"Debian/Ubuntu: sudo apt-get install prometheus; or put a Prometheus release's promtool on PATH"
