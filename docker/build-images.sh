#!/usr/bin/env bash
# `make images`: the three role images (data, train, hil) from docker/role.Dockerfile, with BuildKit.
# Settings (environment or make variables):
#   REGISTRY, TAG     image names REGISTRY/aed-<role>:TAG (params.yaml pipeline.image_registry / image_tag)
#   BASE_IMAGE        auto (default): python:3.11.7-slim-bookworm when it is here or can be pulled, else a base made
#                     from Debian packages (docker/debian-base.sh); debian: always that; any other: that image
#   EXTRA_CA          PEM file of extra CA certificates pip must trust (a TLS-intercepting proxy); default: the
#                     system's local CAs (/usr/local/share/ca-certificates), none: no extra CA. A BuildKit
#                     secret: it is never written into an image.
#   ROLES             the roles to build (default: data hil train)
#   DOCKER            the docker CLI (default: the docker.io package's /usr/bin/docker when present)
# Every failure is one line saying what to do (exit 2); a failed build also names its log.
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo "make images: $*" >&2; exit 2; }

REGISTRY="${REGISTRY:-ghcr.io/aed-mlops}"
TAG="${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}"
BASE_IMAGE="${BASE_IMAGE:-auto}"
ROLES="${ROLES:-data hil train}"
SLIM="python:3.11.7-slim-bookworm"
DEBIAN_BASE="aed-python:3.11-bookworm"
HIL_APT="openocd stlink-tools usbutils"
LOGS="${IMAGES_LOG_DIR:-${TMPDIR:-/tmp}/aed-images}"
export DOCKER_BUILDKIT=1
for role in $ROLES; do
  case "$role" in data | train | hil) ;; *) fail "ROLES: unknown role '$role' (data, train, hil)" ;; esac
done

# The docker.io package's CLI uses its built-in BuildKit (which reads docker/role.Dockerfile.dockerignore); a
# newer CLI first on PATH without buildx would fall back to the legacy builder, which ignores that file.
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
command -v "$DOCKER" >/dev/null \
  || fail "no docker CLI ($DOCKER): install Docker (Debian: apt-get install docker.io) or set DOCKER=/path/to/docker"
"$DOCKER" info >/dev/null 2>&1 \
  || fail "no container engine answers ($DOCKER info failed): start dockerd (or run .ci/run, which installs and starts one)"
if ! "$DOCKER" buildx version >/dev/null 2>&1; then
  major="$("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
  [ -n "$major" ] && [ "$major" -lt 23 ] \
    || fail "$DOCKER has no BuildKit (no buildx plugin): install docker-buildx, or set DOCKER to the docker.io package's CLI (/usr/bin/docker)"
fi

# The base image.
has_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
case "$BASE_IMAGE" in
  auto)
    if has_image "$SLIM" || "$DOCKER" pull --quiet "$SLIM" >/dev/null 2>&1; then
      BASE_IMAGE="$SLIM"
    else
      echo "make images: $SLIM cannot be pulled (no container registry): using a base made from Debian packages"
      BASE_IMAGE=debian
    fi
    ;;
esac
if [ "$BASE_IMAGE" = debian ]; then
  BASE_IMAGE="$DEBIAN_BASE"
  has_image "$BASE_IMAGE" || DOCKER="$DOCKER" docker/debian-base.sh "$BASE_IMAGE" || exit 2
elif ! has_image "$BASE_IMAGE" && ! "$DOCKER" pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
  fail "base image $BASE_IMAGE is not here and cannot be pulled (no registry?): use BASE_IMAGE=debian (a base made from Debian packages) or pull it first"
fi

# Extra CA certificates: a temporary bundle outside the build context, handed over as a BuildKit secret.
secret=()
bundle=""
if [ "${EXTRA_CA:-}" != none ]; then
  if [ -n "${EXTRA_CA:-}" ]; then
    [ -f "$EXTRA_CA" ] && [ -s "$EXTRA_CA" ] || fail "EXTRA_CA=$EXTRA_CA: no such file (a PEM bundle of CA certificates, or none)"
    secret=(--secret "id=extra_ca,src=$EXTRA_CA")
  elif compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    bundle="$(mktemp)"
    cat /usr/local/share/ca-certificates/*.crt >"$bundle"
    secret=(--secret "id=extra_ca,src=$bundle")
  fi
fi
trap '[ -n "$bundle" ] && rm -f "$bundle"' EXIT

mkdir -p "$LOGS"
for role in $ROLES; do
  image="$REGISTRY/aed-$role:$TAG"
  apt=""
  [ "$role" = hil ] && apt="$HIL_APT"
  log="$LOGS/$role.log"
  start=$(date +%s)
  if ! "$DOCKER" build --network host --progress plain -f docker/role.Dockerfile \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "ROLE=$role" --build-arg "APT_PACKAGES=$apt" \
      "${secret[@]}" -t "$image" . >"$log" 2>&1; then
    if grep -qE "CERTIFICATE_VERIFY_FAILED|SSLError" "$log"; then
      fail "$image: pip does not trust the package index's TLS certificate (a proxy?): give its CA with EXTRA_CA=/path/ca.pem; log: $log"
    elif grep -qE "NewConnectionError|Max retries exceeded|Could not fetch URL|Temporary failure in name resolution|Failed to fetch" "$log"; then
      fail "$image: no package registry reachable from the build (PyPI / the Debian archive): check the network or proxy; log: $log"
    fi
    fail "$image: build failed; log: $log (last line: $(grep -v '^\s*$' "$log" | tail -n 1))"
  fi
  size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
  echo "built $image from $BASE_IMAGE in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
done
