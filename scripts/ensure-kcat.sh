#!/bin/sh
# ensure-kcat.sh: make sure the kcat command-line Kafka client (formerly
# kafkacat) is installed, for the tests that drive a real broker with it.
# Idempotent.
#
# When neither kcat nor kafkacat is on PATH and we run as root on a system
# with apt-get, installs the Debian/Ubuntu "kcat" package (refreshing the
# package lists only if the first attempt fails). Otherwise prints what to
# install. Exits 0 either way: the kcat tests skip when it is missing.
set -eu
. "$(dirname "$0")/apt.sh"

found() {
	for c in kcat kafkacat; do
		if p=$(command -v "$c" 2>/dev/null) && [ -n "$p" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

apt_ensure kcat kcat ensure-kcat "the kcat tests will be skipped" \
	"Debian/Ubuntu: sudo apt-get install kcat; macOS: brew install kcat"
