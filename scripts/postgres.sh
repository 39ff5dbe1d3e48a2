#!/usr/bin/env bash
# A PostgreSQL database for the Prefect server (the team setup; SQLite stays the zero-setup default).
#
#   scripts/postgres.sh [start] [DIR] [PORT]   # cluster in DIR (default .postgres), port PORT (default 5433);
#                                              # prints PREFECT_API_DATABASE_CONNECTION_URL=... on its last line
#   scripts/postgres.sh stop [DIR]
#
# Uses Debian's `postgresql` package (installed with apt-get when missing and run as root). The cluster listens on
# 127.0.0.1 only, with trust authentication for the `prefect` role: for a server other machines reach, put Prefect
# behind its own authentication and give the role a password (ALTER ROLE prefect PASSWORD '...', then md5/scram in
# DIR/pg_hba.conf). PostgreSQL refuses to run as root: as root, the cluster is owned by and run as `postgres`, so
# DIR's parent folders must be traversable by that user (e.g. a folder under /tmp).
set -euo pipefail

cmd=start
if [[ "${1:-}" == start || "${1:-}" == stop ]]; then cmd=$1; shift; fi
DIR=$(realpath -m "${1:-.postgres}")
PORT=${2:-5433}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN=$(find_bin)
if [[ -z "$BIN" && "$cmd" == start ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian's postgresql (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BIN=$(find_bin)
  fi
  if [[ -z "$BIN" ]]; then
    echo "error: PostgreSQL is not installed (apt-get install postgresql, as root)" >&2; exit 1
  fi
fi

as_owner() {  # run a PostgreSQL program as the cluster's owner
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ "$cmd" == stop ]]; then
  if [[ -f "$DIR/postmaster.pid" ]]; then as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2; fi
  exit 0
fi

if [[ ! -f "$DIR/PG_VERSION" ]]; then
  mkdir -p "$DIR"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$DIR"; fi
  as_owner "$BIN/initdb" -D "$DIR" -U prefect --auth=trust -E UTF8 >/dev/null
fi
if ! as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  as_owner "$BIN/pg_ctl" -D "$DIR" -w -l "$DIR/server.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories='$DIR' -c max_connections=100" \
    start >&2
fi
if ! as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U prefect -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='prefect'" | grep -q 1; then
  as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U prefect prefect
fi
echo "PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://prefect@127.0.0.1:$PORT/prefect"
