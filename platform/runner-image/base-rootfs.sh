# Shared by platform/runner-image/build.sh and platform/deploy/build-app-image.sh, so both images start from the
# same debootstrapped Debian base and fill their venvs from wheelhouses made the same way. Both artifacts are
# cached under the caller's cache directory and keyed by what they are made from (suite and package list; the
# requirements file), so one image's build reuses what the other's already made.
#
# Source it (bash); the caller defines log and die. Each function prints one path on stdout and logs on stderr.
# shellcheck shell=bash

sha256_of() { cat "$@" | sha256sum | cut -c1-16; }

# The Debian mirror this machine already uses for SUITE; never a hard-coded host.
apt_mirror() {
  local suite="$1" file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # deb822: take the URIs of the first stanza that lists the plain suite (not -security/-updates).
    uri="$(awk -v suite="$suite" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; ok=0; deb=0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris=u[1] }
          if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb=1
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok=1 }
        }
        if (ok && deb && uris != "") { print uris; exit }
      }' "$file")"
    if [ -n "$uri" ]; then
      echo "$uri"
      return 0
    fi
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    uri="$(awk -v suite="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$file")"
    if [ -n "$uri" ]; then
      echo "$uri"
      return 0
    fi
  done
  return 1
}

# wheelhouse_dir CACHE_DIR REQUIREMENTS: exactly the pinned wheels, downloaded once per requirements file.
wheelhouse_dir() {
  local cache_dir="$1" requirements="$2" wheelhouse
  wheelhouse="$cache_dir/wheelhouse/$(sha256_of "$requirements")"
  if [ ! -f "$wheelhouse/.complete" ]; then
    log "downloading wheels into $wheelhouse"
    rm -rf "$wheelhouse.partial"
    mkdir -p "$wheelhouse.partial"
    # --no-deps: the file pins the whole closure; `pip check` in the image proves nothing is missing.
    if ! python3 -m pip download --only-binary=:all: --no-deps --python-version 3.11 \
      -d "$wheelhouse.partial" -r "$requirements" >"$wheelhouse.log" 2>&1; then
      grep -v '^WARNING: Location' "$wheelhouse.log" | tail -20 >&2
      die "downloading the wheelhouse failed (full log: $wheelhouse.log). Check pip's index configuration."
    fi
    touch "$wheelhouse.partial/.complete"
    rm -rf "$wheelhouse"
    mv "$wheelhouse.partial" "$wheelhouse"
  fi
  echo "$wheelhouse"
}

# base_rootfs_tar CACHE_DIR SUITE INCLUDE: a minimal SUITE with the INCLUDE packages, kept as a tarball.
base_rootfs_tar() {
  local cache_dir="$1" suite="$2" include="$3" base_tar mirror base_dir
  base_tar="$cache_dir/base/$suite-minbase-$(echo "$include" | sha256sum | cut -c1-12).tar"
  if [ ! -f "$base_tar" ]; then
    mirror="$(apt_mirror "$suite")" ||
      die "no Debian $suite mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list."
    log "debootstrapping $suite (minbase + $include) from the host's configured mirror"
    mkdir -p "$cache_dir/base"
    base_dir="$(mktemp -d "$cache_dir/base/rootfs.XXXXXX")"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$base_dir" "$mirror" >"$base_dir.log" 2>&1; then
      tail -20 "$base_dir.log" >&2
      rm -rf "$base_dir"
      die "debootstrap failed (full log: $base_dir.log)."
    fi
    tar --numeric-owner -C "$base_dir" -cf "$base_tar.partial" .
    mv "$base_tar.partial" "$base_tar"
    rm -rf "$base_dir" "$base_dir.log"
  fi
  echo "$base_tar"
}

# rootfs_strip ROOTFS: what has no place in an image (caches, logs, docs, the host's resolver, hostname and apt
# sources), removed before `docker import`.
rootfs_strip() {
  local rootfs="$1"
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/root/.cache \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  rm -f "$rootfs"/etc/apt/sources.list "$rootfs"/etc/apt/sources.list.d/*
}
