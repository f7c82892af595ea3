# apt.sh: sourced by the ensure-*.sh scripts.

# can_apt succeeds when we run as root on a system with apt-get.
can_apt() {
	[ "$(id -u 2>/dev/null || echo unknown)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

# apt_install PACKAGE WHO installs a Debian package, refreshing the package
# lists and retrying once when the first attempt fails (stale lists). WHO
# names the caller in messages. Another apt-get holding the dpkg lock is
# waited for (up to 10 minutes), not taken for a failure.
apt_install() {
	echo "$2: installing $1 (apt-get install $1)..." >&2
	export DEBIAN_FRONTEND=noninteractive
	lock='-o DPkg::Lock::Timeout=600'
	apt-get $lock install -y --no-install-recommends "$1" && return 0
	echo "$2: install failed; refreshing the package lists and retrying..." >&2
	apt-get $lock update && apt-get $lock install -y --no-install-recommends "$1"
}

# apt_ensure NAME PACKAGE WHO SKIPPED HINT makes sure the command NAME is
# there, as the caller's found function (which prints its path) sees it:
# when it is missing and apt can be used, installs the Debian package
# PACKAGE. SKIPPED says what happens without it, HINT how to install it by
# hand. Always succeeds: the tests that need NAME skip without it.
apt_ensure() {
	if p=$(found); then
		echo "$1: $p"
		return 0
	fi
	if can_apt; then
		if ! apt_install "$2" "$3"; then
			echo "$3: could not install $2; $4" >&2
			return 0
		fi
		if p=$(found); then
			echo "$1: $p"
			return 0
		fi
		echo "$3: the $2 package is installed but $1 is not on PATH; $4" >&2
		return 0
	fi
	echo "$3: $1 not found; $4 (install it: $5)" >&2
}
