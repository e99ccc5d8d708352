#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, from Debian's packages (`postgresql`, installed by
# scripts/setup.sh):
#
#   scripts/postgres.sh start DIR PORT   # initdb once, start; prints the URL on stdout
#   scripts/postgres.sh stop DIR         # stops it (nothing to do when it is not running)
#
# The cluster lives in DIR (DIR/data; its socket in DIR/run, its log in DIR/server.log),
# listens on 127.0.0.1:PORT only, trusts every local connection, and has a database `flumen`
# owned by a role `flumen`: `postgres://flumen@127.0.0.1:PORT/flumen`. Durability is off
# (fsync, synchronous_commit): the data is for one test run, speed matters more.
#
# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` system user
# (created by the Debian package) and DIR is made its own. When that user cannot reach DIR (a
# checkout under /root), the cluster goes in a directory under ${TMPDIR:-/tmp} instead, named
# by the symbolic link DIR/cluster. Idempotent: starting a running cluster only prints its URL.
# Quiet on success; on failure a message (and the server's log) on stderr, non-zero exit.
set -euo pipefail

die() { printf 'postgres.sh: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: $0 start DIR PORT | $0 stop DIR"; }

[ $# -ge 2 ] || usage
command="$1"
dir_arg="$2"
case "$command" in
    start) [ $# -eq 3 ] || usage; port="$3" ;;
    stop) [ $# -eq 2 ] || usage ;;
    *) usage ;;
esac
if [ "$command" = start ]; then
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "not a port: $port"
fi

# The newest PostgreSQL of Debian's packages.
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
[ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] ||
    die "PostgreSQL not found under /usr/lib/postgresql/*/bin (apt-get install postgresql; see scripts/setup.sh)"

# As whom PostgreSQL's commands run, and a helper to run them so.
if [ "$(id -u)" -eq 0 ]; then
    pg_user=postgres
    id -u "$pg_user" >/dev/null 2>&1 || die "running as root, and there is no '$pg_user' user to run PostgreSQL as"
    as_pg() { runuser -u "$pg_user" -- "$@"; }
else
    pg_user="$(id -un)"
    as_pg() { "$@"; }
fi

if [ "$command" = start ]; then
    mkdir -p "$dir_arg" || die "cannot create $dir_arg"
elif [ ! -d "$dir_arg" ]; then
    exit 0 # no such cluster: nothing runs
fi
dir="$(cd "$dir_arg" && pwd -P)"
# PostgreSQL's tools chdir back to where they were started; where root's cwd is not theirs
# to enter, that is a warning on stderr.
cd /

# Where the cluster really is: DIR itself, or what DIR/cluster points to.
if [ -L "$dir/cluster" ]; then
    base="$(readlink -f "$dir/cluster")"
    if [ ! -d "$base" ]; then
        [ "$command" = start ] || exit 0 # its directory was removed: nothing runs
        rm -f "$dir/cluster"
        base=""
    fi
else
    base="$dir"
fi
if [ "$command" = start ] && [ "$(id -u)" -eq 0 ] && [ "$base" = "$dir" ]; then
    chown "$pg_user:" "$dir"
    if ! as_pg test -w "$dir" -a -x "$dir"; then
        base=""
    fi
fi
if [ -z "$base" ]; then
    base="$(mktemp -d "${TMPDIR:-/tmp}/flumen-postgres.XXXXXX")"
    chown "$pg_user:" "$base"
    as_pg test -w "$base" -a -x "$base" || die "the '$pg_user' user cannot write to $dir nor to $base"
    ln -sfn "$base" "$dir/cluster"
fi

data="$base/data"
run="$base/run"
log="$base/server.log"

running() { [ -f "$data/PG_VERSION" ] && as_pg "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; }

if [ "$command" = stop ]; then
    if running; then
        as_pg "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 -s >/dev/null 2>"$base/stop.err" || {
            cat "$base/stop.err" >&2
            die "could not stop the cluster in $data"
        }
    fi
    exit 0
fi

# --- start -------------------------------------------------------------------------------
if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    if ! as_pg "$bindir/initdb" -D "$data" --username=postgres --auth=trust --encoding=UTF8 \
        --locale=C >"$base/initdb.log" 2>&1; then
        cat "$base/initdb.log" >&2
        die "initdb failed in $data"
    fi
    printf "\ninclude 'flumen.conf'\n" | as_pg tee -a "$data/postgresql.conf" >/dev/null
fi
as_pg mkdir -p "$run"

if running; then
    # Already running: on the port asked for? (The 4th line of postmaster.pid is the port.)
    running_port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
    [ "$running_port" = "$port" ] ||
        die "the cluster in $data is already running on port ${running_port:-?}, not $port (stop it first)"
else
    as_pg tee "$data/flumen.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh at each start.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    if ! as_pg "$bindir/pg_ctl" start -D "$data" -l "$log" -w -t 60 -s >/dev/null 2>"$base/start.err"; then
        cat "$base/start.err" >&2
        tail -n 20 "$log" >&2 2>/dev/null || true
        die "could not start PostgreSQL in $data on 127.0.0.1:$port"
    fi
fi

# The role and the database, once.
psql_admin() {
    as_pg "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$run" -p "$port" -U postgres -d postgres -tA "$@"
}
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'flumen'")" != 1 ]; then
    psql_admin -c "CREATE ROLE flumen LOGIN" >/dev/null || die "could not create the role flumen"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'flumen'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE flumen OWNER flumen" >/dev/null || die "could not create the database flumen"
fi

printf 'postgres://flumen@127.0.0.1:%s/flumen\n' "$port"
