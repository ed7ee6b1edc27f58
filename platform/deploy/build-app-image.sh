#!/usr/bin/env bash
# Builds the production app image shipshape-app:latest without any Docker registry: the runner image's cached
# debootstrapped Debian bookworm base (platform/runner-image/base-rootfs.sh), a venv at /opt/venv installed with
# `pip --no-index --require-hashes` from a wheelhouse of exactly uv.lock's pinned versions, the code at /app,
# imported with `docker import`. The layout is platform/deploy/Dockerfile's (see its header); that Dockerfile is
# the build for engines that can pull. An image whose inputs are unchanged is not rebuilt.
#
# Usage: platform/deploy/build-app-image.sh     (as root, with a running Docker engine and uv on the PATH)
# Env:   SHIPSHAPE_CACHE_DIR        cache shared with the runner image (default /var/cache/shipshape)
#        SHIPSHAPE_APP_IMAGE_REPO   image repository name (default shipshape-app)
# Prints the tag and then the image id on its last two lines.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE_DIR="${SHIPSHAPE_CACHE_DIR:-/var/cache/shipshape}"
REPO="${SHIPSHAPE_APP_IMAGE_REPO:-shipshape-app}"
SUITE=bookworm
# The runner image's package list, so both share one cached base (psycopg, pyzmq and the rest ship their
# C libraries in their wheels; the app needs nothing more from Debian).
INCLUDE=python3,python3-venv,tini,ca-certificates
# What the image holds of the repository; platform/deploy/Dockerfile COPYs the same.
APP_PATHS=(manage.py config core courses labs notifications kernels platform)
APP_UID=10001

# Started from inside a venv (`uv run pytest` runs the tests so), python3 would be the venv's, without pip: the
# wheelhouse download and the marker evaluation below need the host's.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -x -F "$VIRTUAL_ENV/bin" | paste -sd:)"
  unset VIRTUAL_ENV
fi

log() { printf 'app-image: %s\n' "$*" >&2; }
die() {
  printf 'app-image: error: %s\n' "$*" >&2
  exit 1
}

# shellcheck source=../runner-image/base-rootfs.sh
source "$ROOT/platform/runner-image/base-rootfs.sh"

# Everything the image is made from; change any of these and the tag changes. The code is hashed by path and
# content (this script, the entrypoint and the shared helper are under platform/), bytecode caches left out.
source_listing() {
  (cd "$ROOT" && find "${APP_PATHS[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum)
}
INPUTS_HASH="$(source_listing | cat "$ROOT/pyproject.toml" "$ROOT/uv.lock" - | sha256sum | cut -c1-16)"
TAG="$REPO:$INPUTS_HASH"

command -v docker >/dev/null || die "docker is not installed. Run ./bin/test or ./bin/run, which install it."
docker info >/dev/null 2>&1 || die "no Docker engine answers. Run ./bin/test or ./bin/run, which start one."

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }
up_to_date() {
  docker tag "$TAG" "$REPO:latest"
  echo "app image up to date: $TAG$1"
  echo "$TAG"
  image_id "$TAG"
  exit 0
}

if image_id "$TAG" >/dev/null; then up_to_date ""; fi

[ "$(id -u)" -eq 0 ] || die "building the app image needs root (debootstrap and chroot). Run as root."
for tool in debootstrap chroot python3 tar; do
  command -v "$tool" >/dev/null || die "$tool is missing. On Debian: apt-get install debootstrap."
done
command -v uv >/dev/null || die "uv is missing (it exports uv.lock's pins). Run ./bin/test or ./bin/run once, or put var/tools/bin on the PATH."

mkdir -p "$CACHE_DIR"
# The runner image's lock: one build at a time per cache, whichever image it is.
exec 9>"$CACHE_DIR/build.lock"
flock 9
if image_id "$TAG" >/dev/null; then up_to_date " (built by a concurrent run)"; fi

BASE_TAR="$(base_rootfs_tar "$CACHE_DIR" "$SUITE" "$INCLUDE")"

WORK="$(mktemp -d "$CACHE_DIR/app-build.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
  # Unmount before removing anything, so rm can never reach the host's /proc.
  if mountpoint -q "$ROOTFS/proc" 2>/dev/null; then umount "$ROOTFS/proc" || umount -l "$ROOTFS/proc"; fi
  if ! mountpoint -q "$ROOTFS/proc" 2>/dev/null; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$ROOTFS"
tar --numeric-owner -C "$ROOTFS" -xpf "$BASE_TAR"

in_root() {
  # A clean environment: the host's pip settings (index, find-links, certs) must not leak into the image.
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 "$@"
}

# 1. Requirements: uv.lock's pins with their hashes, markers decided for the image's Python (Debian's 3.11.2,
# which still needs async-timeout), not the host's: pip evaluates a requirements file's markers for the
# interpreter it runs on even with --python-version.
target_python="$(in_root python3 -c 'import platform; print(platform.python_version())')"
(cd "$ROOT" && uv export --quiet --frozen --no-dev --extra postgres --no-emit-project --format requirements-txt \
  -o "$WORK/uv-export.txt") || die "uv export failed: is uv.lock in step with pyproject.toml (uv lock)?"
python3 - "$target_python" "$WORK/uv-export.txt" >"$WORK/requirements.txt" <<'PY'
import sys

from pip._vendor.packaging.markers import Marker, default_environment

full_version = sys.argv[1]
environment = default_environment()
environment.update(python_full_version=full_version, python_version=".".join(full_version.split(".")[:2]))
text = open(sys.argv[2]).read().replace("\\\n", " ")
for line in text.splitlines():
    requirement = line.strip()
    if not requirement or requirement.startswith("#"):
        continue
    spec, _, hashes = requirement.partition(" --hash")
    name, _, marker = spec.partition(";")
    if marker.strip() and not Marker(marker.strip()).evaluate(environment):
        continue
    print(name.strip() + (" --hash" + hashes if hashes else ""))
PY

# 2. Wheelhouse, shared with the runner's cache and keyed by that file.
WHEELHOUSE="$(wheelhouse_dir "$CACHE_DIR" "$WORK/requirements.txt")"

# 3. The venv, offline and hash-checked; the wheels do not stay in the image.
mkdir -p "$ROOTFS/tmp/wheelhouse"
cp "$WHEELHOUSE"/*.whl "$ROOTFS/tmp/wheelhouse/"
cp "$WORK/requirements.txt" "$ROOTFS/tmp/wheelhouse/requirements.txt"
mount -t proc proc "$ROOTFS/proc"
log "installing the wheelhouse into /opt/venv (python $target_python)"
in_root python3 -m venv /opt/venv
in_root /opt/venv/bin/pip install --quiet --no-index --require-hashes --find-links /tmp/wheelhouse \
  -r /tmp/wheelhouse/requirements.txt
in_root /opt/venv/bin/pip check
in_root useradd --uid "$APP_UID" --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin shipshape
umount "$ROOTFS/proc"

# 4. The code, the entrypoint and the data directory: the Dockerfile's layout.
mkdir -p "$ROOTFS/app" "$ROOTFS/srv/shipshape"
(cd "$ROOT" && tar --exclude=__pycache__ --exclude='*.pyc' --owner=0 --group=0 -cf - "${APP_PATHS[@]}") |
  tar -C "$ROOTFS/app" -xf -
install -m 0755 "$HERE/entrypoint.sh" "$ROOTFS/usr/local/bin/shipshape-entrypoint"
chown "$APP_UID:$APP_UID" "$ROOTFS/srv/shipshape"

rootfs_strip "$ROOTFS"

log "importing $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'USER shipshape' \
  --change 'WORKDIR /app' \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV PYTHONUNBUFFERED=1' \
  --change 'ENV PYTHONPATH=/app' \
  --change 'ENV SHIPSHAPE_DATA_DIR=/srv/shipshape' \
  --change 'EXPOSE 8000' \
  --change 'ENTRYPOINT ["/usr/local/bin/shipshape-entrypoint"]' \
  --change 'CMD ["web"]' \
  --change "LABEL org.shipshape.inputs=$INPUTS_HASH" \
  - "$TAG" >/dev/null
docker tag "$TAG" "$REPO:latest"

# Images from earlier inputs only take disk; one still used by a container stays (no --force).
docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -v -x -e "$TAG" -e "$REPO:latest" |
  xargs -r docker rmi >/dev/null 2>&1 || true

echo "app image built: $TAG"
echo "$TAG"
image_id "$TAG"
