#!/usr/bin/env bash
# Builds the sandbox runner image shipshape-runner:latest without any Docker registry:
# a debootstrapped Debian bookworm base, a venv at /opt/venv installed offline from a pinned wheelhouse,
# imported with `docker import`. Cached twice: the base rootfs and the wheelhouse live under
# $SHIPSHAPE_CACHE_DIR, and an image whose inputs are unchanged is not rebuilt at all.
#
# Usage: platform/runner-image/build.sh        (as root, with a running Docker engine)
# Env:   SHIPSHAPE_CACHE_DIR   cache for the base rootfs and wheelhouse (default /var/cache/shipshape)
#        SHIPSHAPE_RUNNER_IMAGE_REPO  image repository name (default shipshape-runner)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${SHIPSHAPE_CACHE_DIR:-/var/cache/shipshape}"
REPO="${SHIPSHAPE_RUNNER_IMAGE_REPO:-shipshape-runner}"
SUITE=bookworm
INCLUDE=python3,python3-venv,tini,ca-certificates
REQUIREMENTS="$HERE/requirements.txt"
# Image paths the trusted programs and the grading run mount over; they must exist in a read-only root.
MOUNT_POINTS=(/work /submission /grader /results /opt/shipshape)

log() { printf 'runner-image: %s\n' "$*" >&2; }
die() {
  printf 'runner-image: error: %s\n' "$*" >&2
  exit 1
}

# apt_mirror, wheelhouse_dir, base_rootfs_tar and sha256_of: shared with the app image's build.
source "$HERE/base-rootfs.sh"

# Everything the image is made from; change any of these and the tag changes.
INPUTS_HASH="$(sha256_of "$HERE/build.sh" "$HERE/base-rootfs.sh" "$REQUIREMENTS")"
TAG="$REPO:$INPUTS_HASH"

command -v docker >/dev/null || die "docker is not installed. Run ./bin/test or ./bin/run, which install it."
docker info >/dev/null 2>&1 || die "no Docker engine answers. Run ./bin/test or ./bin/run, which start one."

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

if image="$(image_id "$TAG")"; then
  docker tag "$TAG" "$REPO:latest"
  echo "runner image up to date: $TAG"
  echo "$image"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the runner image needs root (debootstrap and chroot). Run as root."
for tool in debootstrap chroot python3 tar; do
  command -v "$tool" >/dev/null || die "$tool is missing. On Debian: apt-get install debootstrap."
done

mkdir -p "$CACHE_DIR"
# One build at a time per cache: parallel test runs would otherwise race on the same files.
exec 9>"$CACHE_DIR/build.lock"
flock 9
if image="$(image_id "$TAG")"; then
  docker tag "$TAG" "$REPO:latest"
  echo "runner image up to date: $TAG (built by a concurrent run)"
  echo "$image"
  exit 0
fi

# 1. Wheelhouse: exactly the pinned wheels, downloaded once per requirements file.
WHEELHOUSE="$(wheelhouse_dir "$CACHE_DIR" "$REQUIREMENTS")"

# 2. Base: a minimal bookworm with Python and tini, kept as a tarball.
BASE_TAR="$(base_rootfs_tar "$CACHE_DIR" "$SUITE" "$INCLUDE")"

# 3. Image rootfs: a fresh copy of the base, then the venv, users and mount points.
WORK="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
  # Unmount before removing anything, so rm can never reach the host's /proc.
  if mountpoint -q "$ROOTFS/proc" 2>/dev/null; then umount "$ROOTFS/proc" || umount -l "$ROOTFS/proc"; fi
  if ! mountpoint -q "$ROOTFS/proc" 2>/dev/null; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$ROOTFS"
tar --numeric-owner -C "$ROOTFS" -xpf "$BASE_TAR"

mkdir -p "$ROOTFS/opt/wheelhouse"
cp "$WHEELHOUSE"/*.whl "$ROOTFS/opt/wheelhouse/"
cp "$REQUIREMENTS" "$ROOTFS/opt/wheelhouse/requirements.txt"

in_root() {
  # A clean environment: the host's pip settings (index, find-links, certs) must not leak into the image.
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 "$@"
}

mount -t proc proc "$ROOTFS/proc"
log "installing the wheelhouse into /opt/venv"
in_root python3 -m venv /opt/venv
in_root /opt/venv/bin/pip install --quiet --no-index --find-links /opt/wheelhouse -r /opt/wheelhouse/requirements.txt
in_root /opt/venv/bin/pip check
in_root groupadd --gid 1000 learner
in_root useradd --uid 1000 --gid 1000 --no-create-home --home-dir /work --shell /usr/sbin/nologin learner
in_root groupadd --gid 1001 grader
in_root useradd --uid 1001 --gid 1001 --no-create-home --home-dir /results --shell /usr/sbin/nologin grader
umount "$ROOTFS/proc"

for dir in "${MOUNT_POINTS[@]}"; do
  mkdir -p "$ROOTFS$dir"
  chmod 0755 "$ROOTFS$dir"
done
chown 1000:1000 "$ROOTFS/work"
chown 1001:1001 "$ROOTFS/results"

rootfs_strip "$ROOTFS"

log "importing $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'USER 1000:1000' \
  --change 'WORKDIR /work' \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENTRYPOINT ["/usr/bin/tini","--"]' \
  --change "LABEL org.shipshape.inputs=$INPUTS_HASH" \
  - "$TAG" >/dev/null
docker tag "$TAG" "$REPO:latest"

# Images from earlier inputs only take disk; one still used by a container stays (no --force).
docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -v -x -e "$TAG" -e "$REPO:latest" |
  xargs -r docker rmi >/dev/null 2>&1 || true

echo "runner image built: $TAG"
image_id "$TAG"
