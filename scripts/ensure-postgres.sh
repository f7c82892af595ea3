#!/bin/sh
# ensure-postgres.sh: make sure the PostgreSQL server binaries (initdb,
# pg_ctl, postgres) are installed, so that `clickagg demo` and the tests can
# start throwaway servers (internal/pglocal). Idempotent.
#
# The search is the same as pglocal.FindBinDir: $PG_BIN if set (and then
# only there), else the directory of initdb on PATH, else the highest-version
# /usr/lib/postgresql/*/bin, else /usr/local/pgsql/bin.
#
# When nothing is found and we run as root on a system with apt-get, installs
# the Debian/Ubuntu "postgresql" package. It starts no server itself (if the
# package starts its own system cluster, that is harmless and left alone).
# Exit status: 0 when the binaries are available, 1 otherwise.
set -eu
. "$(dirname "$0")/apt.sh"

has_binaries() {
	[ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]
}

# find_bin_dir prints the directory holding the binaries, or fails.
find_bin_dir() {
	if [ -n "${PG_BIN:-}" ]; then
		has_binaries "$PG_BIN" || return 1
		echo "$PG_BIN"
		return 0
	fi
	if p=$(command -v initdb 2>/dev/null) && [ -n "$p" ]; then
		p=$(readlink -f "$p" 2>/dev/null || echo "$p")
		d=${p%/*}
		if has_binaries "$d"; then
			echo "$d"
			return 0
		fi
	fi
	best= best_major=-1 best_minor=-1
	for d in /usr/lib/postgresql/*/bin; do
		has_binaries "$d" || continue
		v=${d%/bin}
		v=${v##*/}
		major=${v%%.*}
		minor=0
		case $v in *.*) minor=${v#*.} ;; esac
		case $major$minor in *[!0-9]*) continue ;; esac
		if [ "$major" -gt "$best_major" ] ||
			{ [ "$major" -eq "$best_major" ] && [ "$minor" -gt "$best_minor" ]; }; then
			best=$d best_major=$major best_minor=$minor
		fi
	done
	if [ -n "$best" ]; then
		echo "$best"
		return 0
	fi
	if has_binaries /usr/local/pgsql/bin; then
		echo /usr/local/pgsql/bin
		return 0
	fi
	return 1
}

if dir=$(find_bin_dir); then
	echo "PostgreSQL server binaries: $dir"
	exit 0
fi

if [ -n "${PG_BIN:-}" ]; then
	echo "ensure-postgres: PG_BIN=$PG_BIN does not contain initdb, pg_ctl and postgres; point it at the PostgreSQL bin directory or unset it" >&2
	exit 1
fi

if can_apt; then
	apt_install postgresql ensure-postgres || exit 1
	if dir=$(find_bin_dir); then
		echo "PostgreSQL server binaries: $dir"
		exit 0
	fi
	echo "ensure-postgres: the postgresql package is installed but initdb, pg_ctl and postgres were not found under /usr/lib/postgresql/*/bin; set PG_BIN to their directory" >&2
	exit 1
fi

echo "ensure-postgres: PostgreSQL server binaries not found: install the PostgreSQL server (Debian/Ubuntu: sudo apt-get install postgresql; Fedora: sudo dnf install postgresql-server; macOS: brew install postgresql) or set PG_BIN to the directory holding initdb" >&2
exit 1
