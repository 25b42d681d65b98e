#!/usr/bin/env bash
# A Python 3.11 base image made from Debian packages, for machines that reach the Debian archive but no container
# registry (nothing to pull). Needs root and debootstrap (`apt-get install debootstrap`); about 1.5 min.
#   docker/debian-base.sh IMAGE_NAME [DEBIAN_MIRROR]
# The image has a venv at /opt/venv, first on PATH: `python` is Debian's 3.11, and pip installs into the venv, not
# into Debian's externally managed system Python. The role images (docker/role.Dockerfile) build FROM it exactly
# as they build FROM the official python:3.11-slim image.
set -euo pipefail
name="${1:?usage: docker/debian-base.sh IMAGE_NAME [DEBIAN_MIRROR]}"
mirror="${2:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

fail() { echo "make images: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || fail "the Debian base needs root (debootstrap): run it as root, or use BASE_IMAGE=python:3.11.7-slim-bookworm where a registry is reachable"
command -v debootstrap >/dev/null || fail "debootstrap not found: apt-get install -y debootstrap"

rootfs="$(mktemp -d /var/tmp/aed-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm into $rootfs (about 1.5 min)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 || fail "debootstrap failed (no Debian archive at $mirror?); its log: $rootfs.log"
rm -f "$rootfs.log"
chroot "$rootfs" python3 -m venv /opt/venv
# apt lists and caches, docs and locales are not needed in an image (about 100 MB).
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | "$docker" import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python"]' - "$name" >/dev/null
echo "built $name from Debian bookworm ($mirror)"
