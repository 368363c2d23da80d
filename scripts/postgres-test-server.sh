#!/usr/bin/env bash
# A private, throw-away PostgreSQL server for the HPO storage tests (and .ci/run).
#
#   scripts/postgres-test-server.sh start DIR [PORT]   # prints the storage URL on stdout
#   scripts/postgres-test-server.sh stop DIR
#   scripts/postgres-test-server.sh install          # only install the server package (CI preparation)
#
# Needs root (it installs Debian's postgresql package if missing and runs the server as the
# 'postgres' user). The cluster lives in DIR, listens on 127.0.0.1:PORT only, uses password
# authentication (so URLs carry a password that mlpfctl must mask), and is removed by 'stop'.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || ( -z "$dir" && "$cmd" != install ) ]]; then
  echo "usage: $0 start DIR [PORT] | stop DIR | install" >&2
  exit 2
fi

pg_bin() {
  local bin
  bin=$(find /usr/lib/postgresql -maxdepth 3 -type f -name initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n "$bin" ]] && dirname "$bin"
}

if [[ "$cmd" == stop ]]; then
  bin=$(pg_bin) || true
  if [[ -n "${bin:-}" && -d "$dir/data" ]]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "postgres-test-server: needs root (installs postgresql, runs it as the postgres user)" >&2
  exit 3
fi
if [[ -z "$(pg_bin)" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; } || {
    echo "postgres-test-server: apt-get install postgresql failed" >&2
    exit 4
  }
fi
[[ "$cmd" == install ]] && exit 0
bin=$(pg_bin)
port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')

mkdir -p "$dir"
chmod 755 "$dir"
chown postgres: "$dir"
printf '%s\n' "$password" > "$dir/pwfile"
chown postgres: "$dir/pwfile"
chmod 600 "$dir/pwfile"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" -A scram-sha-256 >"$dir/initdb.log" 2>&1
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres mlpfctl
echo "postgresql+psycopg://postgres:${password}@127.0.0.1:${port}/mlpfctl"
