#!/bin/sh
# ensure-chromium.sh: make sure a headless-capable Chromium is installed at
# /usr/bin/chromium, for the status page's browser test
# (cmd/clickagg TestStatusPageInBrowser). Idempotent.
#
# When it is missing and we run as root on a system with apt-get, installs
# the Debian "chromium" package (refreshing the package lists only if the
# first attempt fails). Otherwise prints what to install. Exits 0 either
# way: the browser test skips, saying why, when Chromium is missing.
set -eu
. "$(dirname "$0")/apt.sh"

bin=/usr/bin/chromium

if [ -x "$bin" ]; then
	echo "chromium: $bin"
	exit 0
fi

if can_apt; then
	if ! apt_install chromium ensure-chromium; then
		echo "ensure-chromium: could not install chromium; the browser test will be skipped" >&2
		exit 0
	fi
	if [ -x "$bin" ]; then
		echo "chromium: $bin"
		exit 0
	fi
	echo "ensure-chromium: the chromium package is installed but $bin is missing; the browser test will be skipped" >&2
	exit 0
fi

echo "ensure-chromium: $bin not found; the browser test will be skipped (install it: Debian: sudo apt-get install chromium)" >&2
exit 0
