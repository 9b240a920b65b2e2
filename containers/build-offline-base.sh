#!/usr/bin/env bash
# Build the base image edge-profiler uses on hosts that cannot pull from a registry.
#
# debootstrap assembles a minimal Debian bookworm root (python3 + venv) from Debian's
# package archive, and `docker import` turns that folder into an image tagged
# edge-profiler/base:offline. The profile images are then built FROM it, with the
# runtime wheels installed offline (--no-index) from the host's own pip download.
#
# Usage: containers/build-offline-base.sh [--force]
#   MIRROR=http://deb.debian.org/debian  Debian mirror to bootstrap from
#   TAG=edge-profiler/base:offline       image tag to produce
set -euo pipefail

TAG="${TAG:-edge-profiler/base:offline}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE="${SUITE:-bookworm}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

if ! command -v docker >/dev/null 2>&1; then
  echo "build-offline-base: the docker client is not installed" >&2; exit 1
fi
if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "build-offline-base: $TAG already exists (use --force to rebuild)"; exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-offline-base: debootstrap is not installed (apt-get install -y debootstrap)" >&2; exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "build-offline-base: debootstrap needs root" >&2; exit 1
fi

root="$(mktemp -d /tmp/edge-profiler-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT

echo "build-offline-base: debootstrap $SUITE (minbase + python3) into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 || {
  tail -n 20 "$root.log" >&2; rm -f "$root.log"
  echo "build-offline-base: debootstrap failed" >&2; exit 1; }
rm -f "$root.log"

# Trim what a measurement image never needs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

echo "build-offline-base: importing as $TAG"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
echo "build-offline-base: done: $(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}') $TAG"
