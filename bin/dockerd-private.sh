#!/usr/bin/env bash
# A private Docker engine, as a second host's worker would have: its own socket, data-root, exec-root, pidfile
# and containerd namespace, no bridge and no iptables (sandboxes only ever get loopback). Used by the second-host
# test and by bench/chaos.py, which restarts it without disturbing the machine's main engine.
#
# Usage (as root):
#   bin/dockerd-private.sh start NAME [IMAGE...]   start unless running; copy each IMAGE from the main engine
#                                                  (docker save | docker load); prints the DOCKER_HOST to use
#   bin/dockerd-private.sh stop NAME               stop it (SIGTERM, then SIGKILL after 30 s)
#   bin/dockerd-private.sh restart NAME            stop, then start again (images are kept in its data-root)
#   bin/dockerd-private.sh host NAME               print its DOCKER_HOST
# Files: var/dockerd/NAME/{docker.sock,dockerd.pid,dockerd.log,daemon.json,key.json,data/}; exec-root /run/shipshape-dockerd-NAME
# (short: containerd's socket paths have a length limit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  printf 'dockerd-private: error: %s\n' "$*" >&2
  exit 1
}

[ $# -ge 2 ] || die "usage: $0 start|stop|restart|host NAME [IMAGE...]"
action="$1" name="$2"
shift 2
[[ "$name" =~ ^[a-z0-9][a-z0-9-]{0,20}$ ]] || die "NAME must be 1-21 lowercase letters, digits or dashes: $name"

home="$ROOT/var/dockerd/$name"
sock="$home/docker.sock"
pidfile="$home/dockerd.pid"
exec_root="/run/shipshape-dockerd-$name"
host="unix://$sock"

running_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() { DOCKER_HOST="$host" docker info >/dev/null 2>&1; }

start() {
  [ "$(id -u)" -eq 0 ] || die "starting a Docker engine needs root."
  command -v dockerd >/dev/null || die "dockerd is missing. On Debian: apt-get install docker.io (./bin/test does)."
  if ! answers; then
    mkdir -p "$home/data" "$exec_root"
    if ! running_pid >/dev/null; then
      rm -f "$pidfile" "$sock"
      # Its own engine ID (`docker info`), as another host's would be: before Docker 23 the ID comes from a key
      # file shared by every engine of the machine (/etc/docker/key.json) unless the configuration names another;
      # from 23 on it lives in the data-root, already its own, and that configuration key is refused.
      local major
      major="$(dockerd --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')"
      if [ -n "$major" ] && [ "$major" -lt 23 ]; then
        printf '{"deprecated-key-path": "%s"}\n' "$home/key.json" >"$home/daemon.json"
      else
        echo '{}' >"$home/daemon.json"
      fi
      (setsid nohup dockerd --host "$host" --data-root "$home/data" --exec-root "$exec_root" --pidfile "$pidfile" \
        --containerd-namespace "shipshape-$name" --containerd-plugins-namespace "shipshape-$name-plugins" \
        --config-file "$home/daemon.json" \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        >>"$home/dockerd.log" 2>&1 </dev/null &)
    fi
    local waited=0
    until answers; do
      if [ "$waited" -ge 600 ]; then
        tail -20 "$home/dockerd.log" >&2 || true
        die "the private engine $name did not answer within 60 s (log: $home/dockerd.log)"
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  local image
  for image in "$@"; do
    local wanted
    wanted="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ||
      die "image $image is not on the main engine; build it first (platform/runner-image/build.sh)"
    if [ "$(DOCKER_HOST="$host" docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" != "$wanted" ]; then
      docker save "$image" | DOCKER_HOST="$host" docker load >/dev/null ||
        die "could not copy $image into the private engine $name"
    fi
  done
  echo "$host"
}

stop() {
  local pid waited=0
  pid="$(running_pid)" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 300 ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$pidfile"
}

case "$action" in
  start) start "$@" ;;
  stop) stop ;;
  restart)
    stop
    start "$@"
    ;;
  host) echo "$host" ;;
  *) die "unknown action $action: use start, stop, restart or host" ;;
esac
