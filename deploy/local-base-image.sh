#!/usr/bin/env bash
# Make the container image's base locally, for machines that cannot pull python:3.12-slim
# (this project's CI): Debian bookworm (minbase) with python3 (3.11), python3-venv and
# ca-certificates, made with debootstrap from the machine's own Debian mirror and imported
# into podman (or docker) as localhost/bookworm-python. Needs root, debootstrap and network
# access to the mirror; takes about a minute. Does nothing when the image already exists.
#
#   deploy/local-base-image.sh [IMAGE]        # IMAGE defaults to localhost/bookworm-python
#   podman build --build-arg BASE_IMAGE=localhost/bookworm-python -t webhook-gateway .
#
# Environment: ENGINE (podman or docker; default: podman if installed), MIRROR (default:
# the first URIs: line of /etc/apt/sources.list.d/debian.sources, else deb.debian.org),
# SUITE (default bookworm).
set -euo pipefail

image="${1:-localhost/bookworm-python}"
engine="${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}"
suite="${SUITE:-bookworm}"
say() { printf '[local-base-image] %s\n' "$*" >&2; }

# One builder at a time (two test runs starting together would both debootstrap).
exec 9>"${TMPDIR:-/tmp}/webhook-gateway-base-image.lock"
flock 9

if "$engine" image inspect "$image" >/dev/null 2>&1; then
  say "$image exists already"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { say "debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }

mirror="${MIRROR:-}"
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
  mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/bookworm-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"
# What an image has no use for: package caches and lists, logs, man pages, translations and
# docs (keeping each package's copyright file), as Debian's slim images leave them out.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$rootfs"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs"/usr/share/doc -mindepth 1 -type d -empty -delete
say "importing it as $image"
quiet=()
[ "$(basename "$engine")" != podman ] || quiet=(--quiet)
tar -C "$rootfs" --numeric-owner -c . | "$engine" import "${quiet[@]}" \
  --change 'CMD ["/usr/bin/python3"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
say "done: $("$engine" image inspect --format '{{.Size}}' "$image") bytes"
