# Sourced by .ci/run: a throwaway PostgreSQL server on loopback for the tests marked `postgres`.
#
# start_postgres: installs Debian's postgresql when root and apt-get are there and no server binaries are found,
# initialises a cluster in a temporary directory (trust authentication, listening on 127.0.0.1 only, a free port),
# creates the database `directconv_test` and exports DIRECTCONV_TEST_POSTGRES_URL. On any failure it says why and
# returns 0: the postgres tests then skip with a reason and the rest still run.
# stop_postgres: stops that server and deletes the cluster (called from an EXIT trap).

PG_TMP=""
PG_BIN=""

_pg_as_owner() {
    # initdb and postgres refuse to run as root: run them as the `postgres` system user then.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_pg_find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            PG_BIN=$dir
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        PG_BIN=$(dirname "$(command -v initdb)")
        return 0
    fi
    return 1
}

start_postgres() {
    if [ -n "${DIRECTCONV_TEST_POSTGRES_URL:-}" ]; then
        echo "postgres: using the server given in DIRECTCONV_TEST_POSTGRES_URL"
        return 0
    fi
    if ! _pg_find_bin; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "postgres: installing Debian's postgresql package"
            if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
                echo "postgres: installation failed; the postgres tests will skip"
                return 0
            fi
        fi
        if ! _pg_find_bin; then
            echo "postgres: no server binaries (initdb, pg_ctl) and no way to install them; the postgres tests will skip"
            return 0
        fi
    fi
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PG_TMP=$(mktemp -d /tmp/directconv-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_TMP"
    fi
    if ! _pg_as_owner "$PG_BIN/initdb" --pgdata="$PG_TMP/data" --username=postgres --auth=trust \
            --encoding=UTF8 --no-instructions >"$PG_TMP/initdb.log" 2>&1; then
        echo "postgres: initdb failed; the postgres tests will skip"
        cat "$PG_TMP/initdb.log"
        return 0
    fi
    # Loopback only, socket in the cluster's own directory, enough connections for 8 workers of the load check.
    if ! _pg_as_owner "$PG_BIN/pg_ctl" --pgdata="$PG_TMP/data" --log="$PG_TMP/server.log" --wait --silent \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TMP -c max_connections=200" start; then
        echo "postgres: the server did not start; the postgres tests will skip"
        cat "$PG_TMP/server.log"
        return 0
    fi
    if ! _pg_as_owner "$PG_BIN/createdb" --host=127.0.0.1 --port="$port" --username=postgres directconv_test; then
        echo "postgres: could not create the test database; the postgres tests will skip"
        return 0
    fi
    export DIRECTCONV_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/directconv_test"
    echo "postgres: PostgreSQL $("$PG_BIN/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port"
}

stop_postgres() {
    if [ -n "$PG_TMP" ] && [ -d "$PG_TMP" ]; then
        if [ -f "$PG_TMP/data/postmaster.pid" ]; then
            _pg_as_owner "$PG_BIN/pg_ctl" --pgdata="$PG_TMP/data" --mode=fast --wait --silent stop || true
        fi
        rm -rf "$PG_TMP"
    fi
}
