# shellcheck shell=bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests/bench/test_postgres.py (sharing a study across machines).
# Source this file, then `start_postgres`: it installs Debian's `postgresql` package if missing (as root), starts
# a server in a temporary directory (trust authentication, listening on 127.0.0.1 only), creates a database,
# exports DESCEND_TEST_POSTGRES_URL, and stops the server and deletes its directory on exit (trap).
# A caller that sets DESCEND_TEST_POSTGRES_URL itself keeps its own server.

_pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_postgres() {
    if [ -n "${_PG_DIR:-}" ] && [ -d "$_PG_DIR" ]; then
        _pg_as "$_PG_BIN/pg_ctl" -D "$_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$_PG_DIR"
    fi
    _PG_DIR=
}

start_postgres() {
    if [ -n "${DESCEND_TEST_POSTGRES_URL:-}" ]; then return 0; fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            echo "warning: PostgreSQL is not installed and we are not root: tests/bench/test_postgres.py is skipped"
            return 0
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    _PG_BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
    _PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/descend-pg.XXXXXX")
    trap stop_postgres EXIT
    if [ "$(id -u)" = 0 ]; then chown postgres "$_PG_DIR"; fi  # initdb refuses to run as root
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    _pg_as "$_PG_BIN/initdb" -D "$_PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$_PG_DIR/initdb.log"
    _pg_as "$_PG_BIN/pg_ctl" -D "$_PG_DIR/data" -l "$_PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $_PG_DIR -c max_connections=200" start >/dev/null
    _pg_as "$_PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres descend_test
    export DESCEND_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/descend_test"
    echo "PostgreSQL for the tests: $DESCEND_TEST_POSTGRES_URL"
}
