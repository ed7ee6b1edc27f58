# Shared set-up for ./bin/run and ./bin/test. Source it; do not run it.
# Every step checks first and changes nothing on a machine that is already ready.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="$ROOT/var"
LOG_DIR="$VAR_DIR/log"
VENV="${UV_PROJECT_ENVIRONMENT:-$ROOT/.venv}"
export SHIPSHAPE_DEV="${SHIPSHAPE_DEV:-1}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

# command-or-file to look for, then the Debian package that provides it.
SYSTEM_NEEDS=(
  "cmd:docker docker.io"
  "cmd:dockerd docker.io"
  "cmd:redis-server redis-server"
  "cmd:redis-cli redis-tools"
  "cmd:debootstrap debootstrap"
  # tests/platform/test_compose.py checks docker-compose.yml with it (the compose plugin, where present, too).
  "cmd:docker-compose docker-compose"
  "cmd:chromium chromium"
  "cmd:git git"
  "cmd:curl curl"
  "cmd:python3 python3"
  "pkg:fonts-dejavu-core fonts-dejavu-core"
  "py:venv python3-venv"
  "py:ensurepip python3-venv"
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

_need_present() {
  local kind="${1%%:*}" name="${1#*:}"
  case "$kind" in
    cmd) command -v "$name" >/dev/null 2>&1 ;;
    pkg) dpkg -s "$name" >/dev/null 2>&1 ;;
    py) command -v python3 >/dev/null 2>&1 && python3 -c "import $name" >/dev/null 2>&1 ;;
  esac
}

ensure_system_packages() {
  local entry check package missing=() missing_what=()
  for entry in "${SYSTEM_NEEDS[@]}"; do
    check="${entry% *}"
    package="${entry#* }"
    if ! _need_present "$check"; then
      missing_what+=("${check#*:}")
      [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0

  if [ -f /etc/debian_version ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    return 0
  fi
  printf 'error: missing on this machine: %s\n' "${missing_what[*]}" >&2
  printf 'On Debian 12, as root: apt-get update && apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
  printf 'Elsewhere, install the equivalents of those Debian packages, then run this command again.\n' >&2
  exit 1
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then return 0; fi
  local tools="$VAR_DIR/tools"
  if [ ! -x "$tools/bin/uv" ]; then
    # A private venv: Debian's python3 refuses system-wide pip installs (PEP 668), and this touches nothing else.
    say "installing uv into $tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet uv
  fi
  export PATH="$tools/bin:$PATH"
}

ensure_python_deps() {
  # The postgres extra (the psycopg driver) for both commands: ./bin/test needs it, and an exact sync without it
  # would remove it again whenever ./bin/run syncs.
  say "syncing Python dependencies (uv sync --frozen --extra postgres)"
  (cd "$ROOT" && uv sync --frozen --quiet --extra postgres)
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "a Docker engine is starting; waiting for it"
  else
    [ "$(id -u)" -eq 0 ] || fail "no Docker engine answers and only root can start one. Start Docker, then run this again."
    mkdir -p "$LOG_DIR"
    say "starting a Docker engine (no bridge, no iptables); log: $LOG_DIR/dockerd.log"
    # Detached (subshell + setsid): the engine is a machine service that outlives this script, and it must not
    # be one of this shell's jobs, which ./bin/run waits for and stops.
    (setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &)
  fi
  local waited=0
  until docker info >/dev/null 2>&1; do
    if [ "$waited" -ge 60 ]; then
      tail -20 "$LOG_DIR/dockerd.log" >&2 2>/dev/null || true
      fail "the Docker engine did not answer within 60 s (log: $LOG_DIR/dockerd.log)."
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

ensure_runner_image() {
  say "building the sandbox runner image (cached)"
  "$ROOT/platform/runner-image/build.sh"
}

redis_answers() { redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; }

# host and port of REDIS_URL, e.g. "127.0.0.1 6379"
redis_host_port() {
  python3 - "$REDIS_URL" <<'PY'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or 6379)
PY
}

# Starts a local Redis for REDIS_URL unless one answers. $1: data dir. Sets STARTED_REDIS_PID when it started one.
ensure_redis() {
  local data_dir="$1" host port
  STARTED_REDIS_PID=""
  if redis_answers; then return 0; fi
  read -r host port < <(redis_host_port)
  case "$host" in
    127.0.0.1 | localhost) ;;
    *) fail "Redis at $REDIS_URL does not answer, and only a local one (127.0.0.1) can be started here." ;;
  esac
  mkdir -p "$data_dir" "$LOG_DIR"
  say "starting Redis on 127.0.0.1:$port (append-only file in $data_dir)"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$data_dir" --appendonly yes --appendfsync always \
    --save "" --daemonize no --logfile "$LOG_DIR/redis.log" &
  STARTED_REDIS_PID=$!
  local waited=0
  until redis_answers; do
    if ! kill -0 "$STARTED_REDIS_PID" 2>/dev/null || [ "$waited" -ge 100 ]; then
      tail -20 "$LOG_DIR/redis.log" >&2 2>/dev/null || true
      fail "Redis did not start on 127.0.0.1:$port (log: $LOG_DIR/redis.log). Is the port taken?"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

migrate() {
  say "applying database migrations"
  mkdir -p "$VAR_DIR"
  (cd "$ROOT" && uv run --frozen python manage.py migrate --noinput)
}

# Everything both commands need, in order. $1: Redis data dir.
setup_all() {
  cd "$ROOT"
  ensure_system_packages
  ensure_uv
  ensure_python_deps
  ensure_docker
  ensure_runner_image
  ensure_redis "$1"
  migrate
}
