# The PostgreSQL that ./bin/test runs the suite against. Source it after bin/lib.sh; do not run it.
# A private cluster under var/, on 127.0.0.1 only, trust auth on loopback: for tests, never for real data.
# shellcheck shell=bash

export SHIPSHAPE_TEST_DATABASE_URL="${SHIPSHAPE_TEST_DATABASE_URL:-postgres://shipshape@127.0.0.1:6391/shipshape}"
# The cluster's files belong to this system user when the script runs as root (PostgreSQL refuses to run as root).
PG_SYSTEM_USER="shipshape-pg"
# Where Debian puts each server version's programs. The next three are seams for tests/platform/
# test_postgres_script.py, which must reach every branch without the real tree, Debian or root; leave them unset.
POSTGRES_LIB_DIR="${POSTGRES_LIB_DIR:-/usr/lib/postgresql}"
POSTGRES_DEBIAN_VERSION_FILE="${POSTGRES_DEBIAN_VERSION_FILE:-/etc/debian_version}"
POSTGRES_AS_UID="${POSTGRES_AS_UID:-}" # the user id ensure_postgres_package believes it runs as

# The directory of the newest installed server's programs (Debian: /usr/lib/postgresql/<version>/bin), or nothing.
postgres_bindir() {
  local dir
  dir="$(find "$POSTGRES_LIB_DIR" -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -1)"
  if [ -n "$dir" ]; then
    dirname "$dir"
  elif command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v postgres)"
  fi
}

ensure_postgres_package() {
  [ -n "$(postgres_bindir)" ] && return 0
  if [ -f "$POSTGRES_DEBIAN_VERSION_FILE" ] && [ "${POSTGRES_AS_UID:-$(id -u)}" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing the PostgreSQL server (Debian package postgresql)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    [ -n "$(postgres_bindir)" ] || fail "apt-get installed postgresql but no server program is in $POSTGRES_LIB_DIR/*/bin."
    return 0
  fi
  printf 'error: missing on this machine: the PostgreSQL server (postgres, initdb, pg_ctl)\n' >&2
  printf 'On Debian 12, as root: apt-get update && apt-get install -y --no-install-recommends postgresql\n' >&2
  printf 'Elsewhere, install PostgreSQL 13 or later with its server programs on the PATH, or point\n' >&2
  printf 'SHIPSHAPE_TEST_DATABASE_URL at a running server, or run only SQLite: SHIPSHAPE_TEST_DATABASES=sqlite\n' >&2
  exit 1
}

# user host port dbname of SHIPSHAPE_TEST_DATABASE_URL
postgres_url_parts() {
  python3 - "$SHIPSHAPE_TEST_DATABASE_URL" <<'PY'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
if url.scheme not in ("postgres", "postgresql", "pgsql"):
    sys.exit(f"error: SHIPSHAPE_TEST_DATABASE_URL must be a postgres:// URL, not {sys.argv[1]!r}")
try:
    port = url.port or 5432
except ValueError:  # a port that is not a number from 0 to 65535
    sys.exit(f"error: SHIPSHAPE_TEST_DATABASE_URL={sys.argv[1]!r} has no valid port: use e.g. postgres://shipshape@127.0.0.1:6391/shipshape")
print(url.username or "shipshape", url.hostname or "127.0.0.1", port, url.path.lstrip("/") or "shipshape")
PY
}

# Runs a command as the cluster's owner: the system user when root, oneself otherwise.
_as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_SYSTEM_USER" -- "$@"
  else
    "$@"
  fi
}

_ensure_pg_system_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$PG_SYSTEM_USER" >/dev/null 2>&1 && return 0
  say "creating the system user $PG_SYSTEM_USER (owner of the test PostgreSQL cluster)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_SYSTEM_USER"
}

# Starts a private cluster for SHIPSHAPE_TEST_DATABASE_URL unless a server answers there, then makes sure its user
# and database exist. $1: cluster dir. Sets STARTED_POSTGRES_DIR when it started one.
ensure_postgres() {
  local cluster="$1" bindir user host port dbname data
  STARTED_POSTGRES_DIR=""
  read -r user host port dbname < <(postgres_url_parts) || exit 1
  bindir="$(postgres_bindir)"
  [ -n "$bindir" ] || ensure_postgres_package
  bindir="$(postgres_bindir)"
  if ! "$bindir/pg_isready" -q -h "$host" -p "$port"; then
    case "$host" in
      127.0.0.1 | localhost) ;;
      *) fail "PostgreSQL at $host:$port does not answer, and only a local one (127.0.0.1) can be started here." ;;
    esac
    _ensure_pg_system_user
    data="$cluster/data"
    mkdir -p "$cluster"
    [ "$(id -u)" -ne 0 ] || chown "$PG_SYSTEM_USER:$PG_SYSTEM_USER" "$cluster"
    chmod 700 "$cluster"
    _as_pg_owner test -w "$cluster" || fail "$PG_SYSTEM_USER cannot write $cluster: every directory above it must be searchable (chmod o+x)."
    if [ ! -f "$data/PG_VERSION" ]; then
      say "creating a test PostgreSQL cluster in $data"
      # Superuser "postgres"; trust for local sockets and loopback only (initdb's pg_hba.conf lists 127.0.0.1/32
      # and ::1/128 for host connections, and the server listens on 127.0.0.1 alone).
      _as_pg_owner "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust -E UTF8 \
        --locale=C.UTF-8 >"$cluster/initdb.log" 2>&1 || {
        tail -20 "$cluster/initdb.log" >&2
        fail "initdb failed (log: $cluster/initdb.log)."
      }
    fi
    say "starting PostgreSQL on 127.0.0.1:$port (cluster $data; log: $cluster/postgres.log)"
    # Durability is switched off: a test cluster that loses its data on a crash is simply recreated by the suite.
    _as_pg_owner "$bindir/pg_ctl" -D "$data" -l "$cluster/postgres.log" -w -t 60 -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || {
      tail -20 "$cluster/postgres.log" >&2 2>/dev/null || true
      fail "PostgreSQL did not start on 127.0.0.1:$port (log: $cluster/postgres.log). Is the port taken?"
    }
    STARTED_POSTGRES_DIR="$data"
  fi
  if ! "$bindir/psql" -X -q -h "$host" -p "$port" -U "$user" -d "$dbname" -c "select 1" >/dev/null 2>&1; then
    say "creating the PostgreSQL user $user and database $dbname"
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U postgres -d postgres >/dev/null <<SQL ||
SELECT 'CREATE ROLE "$user" LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user')\gexec
SELECT 'CREATE DATABASE "$dbname" OWNER "$user"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$dbname')\gexec
SQL
      fail "could not create the user $user and database $dbname on $host:$port as the superuser postgres."
  fi
}

stop_postgres() {
  [ -n "${STARTED_POSTGRES_DIR:-}" ] || return 0
  _as_pg_owner "$(postgres_bindir)/pg_ctl" -D "$STARTED_POSTGRES_DIR" -m fast -w stop >/dev/null 2>&1 || true
  STARTED_POSTGRES_DIR=""
}
