#!/usr/bin/env bash
# Installs everything vmm needs to build, test, and run its nested lab, from Debian's packages only.
set -euo pipefail

packages=(
  # build
  cmake g++ make ninja-build ccache pkg-config acpica-tools
  libfmt-dev libspdlog-dev libcli11-dev libgtest-dev libgmock-dev liburing-dev nlohmann-json3-dev
  libseccomp-dev liblzma-dev libzstd-dev zlib1g-dev
  # tooling: formatting, lint, sanitizer and fuzzer runtimes
  clang clang-format clang-tidy libclang-rt-14-dev
  # the nested lab and the guest payloads it boots
  qemu-system-x86 busybox-static cpio e2fsprogs libc6-dev kmod
  # --share and vmm run: Debian 12's virtiofsd (/usr/lib/qemu/virtiofsd; Debian 13 on: package virtiofsd)
  qemu-system-common
  # scripts/vmm-net.sh --nat (and its test)
  iproute2 nftables
  # extract-vmlinux.sh: the decompressors a Debian kernel may use
  gzip xz-utils zstd lz4
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
