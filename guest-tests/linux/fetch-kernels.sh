#!/usr/bin/env bash
# Fetches Debian 12's cloud and generic kernels as packages (apt-get download, no install) and unpacks
# them with dpkg-deb -x into stable paths:
#   OUTDIR/<flavour>/vmlinuz   OUTDIR/<flavour>/modules/ (-> lib/modules/<ver>, with modules.dep)
#   OUTDIR/<flavour>/config    OUTDIR/<flavour>/version  OUTDIR/<flavour>/package
# for <flavour> in cloud, generic. The .debs are cached in OUTDIR/debs, so reruns download nothing.
# Prints the kernel config options vmm cares about once, on unpacking (also kept in OUTDIR/config-summary.txt).
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
out=$1
mkdir -p "$out/debs"
out=$(cd "$out" && pwd)

# The options whose value decides what vmm must provide (or what the lab must load as modules).
config_keys=(
  CONFIG_VIRTIO_MMIO CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES CONFIG_VIRTIO_PCI CONFIG_VIRTIO_BLK CONFIG_VIRTIO_NET
  CONFIG_VIRTIO_CONSOLE CONFIG_HW_RANDOM_VIRTIO CONFIG_PVPANIC CONFIG_PVPANIC_MMIO CONFIG_PVPANIC_PCI
  CONFIG_SERIAL_8250 CONFIG_SERIAL_8250_CONSOLE CONFIG_SERIAL_8250_NR_UARTS CONFIG_SERIAL_8250_RUNTIME_UARTS
  CONFIG_RTC_DRV_CMOS CONFIG_SERIO_I8042 CONFIG_KEYBOARD_ATKBD CONFIG_KVM_GUEST CONFIG_PARAVIRT
  CONFIG_PVH CONFIG_X86_MPPARSE CONFIG_ACPI CONFIG_MAGIC_SYSRQ CONFIG_DEVTMPFS CONFIG_BLK_DEV_INITRD
  CONFIG_RD_GZIP CONFIG_EXT4_FS CONFIG_KVM CONFIG_KVM_AMD CONFIG_KVM_INTEL CONFIG_MODULE_COMPRESS_NONE
  CONFIG_MODULE_COMPRESS_XZ CONFIG_MODULE_COMPRESS_ZSTD
)

apt_updated=0
# Runs an apt command; if it fails (typically: no package lists on a fresh machine), runs
# apt-get update once and tries again.
with_apt_lists() {
  if "$@"; then return 0; fi
  if [ $apt_updated -eq 0 ]; then
    echo "fetch-kernels: '$*' failed; running apt-get update once" >&2
    apt_updated=1
    apt-get update -qq >&2
    "$@"
    return
  fi
  return 1
}

# The versioned kernel package a meta package (linux-image-cloud-amd64) depends on.
resolve_kernel_package() {
  local meta=$1 name
  name=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$name" ] || return 1
  echo "$name"
}

summarize_config() {
  local flavour=$1 config=$2 key line
  for key in "${config_keys[@]}"; do
    line=$(grep -E "^(# )?${key}[= ]" "$config" || true)
    case $line in
      "") printf '  %-8s %-40s (absent)\n' "$flavour" "$key" ;;
      "# "*) printf '  %-8s %-40s not set\n' "$flavour" "$key" ;;
      *) printf '  %-8s %-40s %s\n' "$flavour" "$key" "${line#*=}" ;;
    esac
  done
}

fetch_flavour() {
  local flavour=$1 meta=$2 dest="$out/$1" pkg deb tmp ver
  if [ -f "$dest/package" ] && [ -f "$dest/vmlinuz" ] && [ -d "$dest/modules" ]; then
    echo "fetch-kernels: $flavour kernel $(cat "$dest/package") already unpacked in $dest"
    return 0
  fi
  pkg=$(with_apt_lists resolve_kernel_package "$meta") ||
    { echo "fetch-kernels: cannot resolve the kernel package $meta depends on" >&2; exit 1; }
  deb=$(ls "$out/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    echo "fetch-kernels: downloading $pkg"
    (cd "$out/debs" && with_apt_lists apt-get download -q "$pkg") ||
      { echo "fetch-kernels: apt-get download $pkg failed" >&2; exit 1; }
    deb=$(ls "$out/debs/${pkg}_"*.deb | head -n1)
  else
    echo "fetch-kernels: using cached $(basename "$deb")"
  fi

  tmp=$(mktemp -d "$out/.unpack-$flavour.XXXXXX")
  dpkg-deb -x "$deb" "$tmp"
  ver=${pkg#linux-image-}
  [ -f "$tmp/boot/vmlinuz-$ver" ] && [ -d "$tmp/lib/modules/$ver" ] ||
    { echo "fetch-kernels: $deb lacks boot/vmlinuz-$ver or lib/modules/$ver" >&2; exit 1; }
  rm -rf "$dest"
  mkdir -p "$dest"
  mv "$tmp/boot/vmlinuz-$ver" "$dest/vmlinuz"
  mv "$tmp/boot/config-$ver" "$dest/config"
  # depmod wants BASE/lib/modules/<ver>; the package ships no modules.dep (its postinst makes it).
  mkdir -p "$dest/lib/modules"
  mv "$tmp/lib/modules/$ver" "$dest/lib/modules/$ver"
  ln -s "lib/modules/$ver" "$dest/modules"
  rm -rf "$tmp"
  depmod -b "$dest" "$ver" || { echo "fetch-kernels: depmod failed (apt-get install kmod)" >&2; exit 1; }
  echo "$ver" >"$dest/version"
  echo "$pkg" >"$dest/package"
  echo "fetch-kernels: $flavour kernel $pkg unpacked in $dest"
  summarize_config "$flavour" "$dest/config" | tee -a "$out/config-summary.txt.new"
}

rm -f "$out/config-summary.txt.new"
fetch_flavour cloud linux-image-cloud-amd64
fetch_flavour generic linux-image-amd64
if [ -f "$out/config-summary.txt.new" ]; then
  mv "$out/config-summary.txt.new" "$out/config-summary.txt"
fi
