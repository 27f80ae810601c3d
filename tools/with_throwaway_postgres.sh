#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster, then destroys the cluster.
#
#   tools/with_throwaway_postgres.sh python3 -m pytest -m postgres
#
# The cluster lives in a fresh temporary directory, trusts local connections,
# listens only on 127.0.0.1 on a free port, and keeps its unix socket inside the
# temporary directory. The command sees
#   SECRETLEDGER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:<port>/postgres
# The cluster is stopped and its directory removed on exit, whatever the outcome;
# the command's exit status is passed through.
#
# initdb and pg_ctl are taken from PATH, else from the newest
# /usr/lib/postgresql/<version>/bin. As root the server runs as the 'postgres' user.
set -euo pipefail

readonly START_TIMEOUT_SECONDS=60
readonly STOP_TIMEOUT_SECONDS=30

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARGUMENT...]" >&2
  exit 2
fi

find_postgres_bin_dir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  local candidate
  candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$candidate" && -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
    echo "$candidate"
    return 0
  fi
  echo "initdb/pg_ctl not found: install PostgreSQL (apt-get install -y postgresql)" >&2
  return 1
}

pick_free_port() {
  python3 -c 'import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])'
}

postgres_bin_dir=$(find_postgres_bin_dir)
cluster_dir=$(mktemp -d -t secretledger-postgres.XXXXXX)
data_dir="$cluster_dir/data"
log_file="$cluster_dir/server.log"

as_cluster_owner() {
  if [[ $EUID -eq 0 ]]; then
    (cd "$cluster_dir" && runuser -u postgres -- "$@")
  else
    (cd "$cluster_dir" && "$@")
  fi
}

stop_cluster() {
  if [[ -f "$data_dir/postmaster.pid" ]]; then
    as_cluster_owner "$postgres_bin_dir/pg_ctl" -D "$data_dir" -m fast \
      -w -t "$STOP_TIMEOUT_SECONDS" stop >/dev/null 2>&1 || true
  fi
  rm -rf "$cluster_dir"
}
trap stop_cluster EXIT

if [[ $EUID -eq 0 ]]; then
  chown postgres:postgres "$cluster_dir"
fi

as_cluster_owner "$postgres_bin_dir/initdb" -D "$data_dir" -U postgres -A trust \
  --encoding=UTF8 --locale=C --no-sync --no-instructions >/dev/null

port=$(pick_free_port)
if ! as_cluster_owner "$postgres_bin_dir/pg_ctl" -D "$data_dir" -l "$log_file" \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $cluster_dir" \
  -w -t "$START_TIMEOUT_SECONDS" start >/dev/null; then
  echo "PostgreSQL did not start; server log follows:" >&2
  cat "$log_file" >&2 || true
  exit 1
fi

export SECRETLEDGER_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
echo "throwaway PostgreSQL ($("$postgres_bin_dir/pg_ctl" --version)) at $SECRETLEDGER_TEST_POSTGRES_URL" >&2
"$@"
