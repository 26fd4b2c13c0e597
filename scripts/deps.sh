#!/usr/bin/env bash
# Installs the Debian packages refpoint needs to build, test and demo.
# Idempotent: quiet and fast when nothing is missing. Needs root (or sudo) only
# when something is missing.
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build
  qemu-utils qemu-system-x86 libnbd-dev libnbd-bin
  libsqlite3-dev libjansson-dev libcmocka-dev libxxhash-dev libxml2-dev
  libmicrohttpd-dev sblim-wbemcli curl libpam0g-dev libcrypt-dev openssl
  util-linux bsdutils procps e2fsprogs bc coreutils valgrind
  libvirt-dev libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  libvirt-clients-qemu python3-libvirt virtnbdbackup
  debhelper dpkg-dev lintian fakeroot
)
case "${1:-}" in
  --bench) PKGS+=(time wrk) ;;
  --fuzz) PKGS+=(clang libclang-rt-14-dev) ;;
esac

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
