#!/usr/bin/env bash
# Builds a small ext4 root filesystem image for an L2 guest, without root privileges or mounts: a
# folder with the static busybox (one symlink per applet), the kernel's modules for a virtio disk and
# pvpanic, and /sbin/init, packed by `mke2fs -d`. /sbin/init mounts proc, sysfs and devtmpfs (unless
# the initramfs that switch_rooted to it left /dev mounted), prints VMM-L2-ROOTFS-UP, loads the
# modules that are not loaded yet, and acts on vmmtest=<scenario> like the L2 initramfs's /init
# (the same code: lib.sh's lab_append_guest_init), e.g. vmmtest=shell for a shell.
#
# Stock Debian kernels have virtio_blk as a module, so they reach this image through an initramfs
# (build-l2-initramfs.sh --with-disk, command line "root=/dev/vda [rw]").
#
# usage: build-rootfs.sh --kernel-dir DIR --out IMAGE [--size 64M]
#   --kernel-dir  a flavour directory from fetch-kernels.sh (has config and modules/)
#   --out         the raw image to write (replaced)
#   --size        the image's size, as mke2fs takes it (default 64M)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=guest-tests/linux/lib.sh
. "$here/lib.sh"

kernel_dir="" out="" size=64M
usage() { sed -n '12,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --kernel-dir) kernel_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "build-rootfs: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -n "$kernel_dir" ] && [ -n "$out" ] || usage
[ -f "$kernel_dir/config" ] && [ -d "$kernel_dir/modules" ] || lab_die "$kernel_dir: no config or modules/ (run fetch-kernels.sh)"
mke2fs=$(command -v mke2fs || echo /sbin/mke2fs)
[ -x "$mke2fs" ] || lab_die "mke2fs not found (apt-get install e2fsprogs)"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
mkdir -p "$root/mnt"
read -r -a modules <<<"$(lab_disk_modules "$kernel_dir")"
pvpanic=none
case $(grep -E '^CONFIG_PVPANIC_MMIO=' "$kernel_dir/config" || true) in
  *=y) pvpanic=builtin ;;
  *=m) pvpanic=module; modules+=(pvpanic_mmio) ;;
esac
lab_add_modules "$root" "$kernel_dir/modules" "${modules[@]}"
echo "$pvpanic" >"$root/etc/pvpanic"
cat "$kernel_dir/version" >"$root/etc/kernel-version" 2>/dev/null || true

cat >"$root/sbin/init" <<'INIT'
#!/bin/sh
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
grep -q '^[^ ]* /dev devtmpfs' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1
echo "VMM-L2-ROOTFS-UP $(awk '$2 == "/" && $1 != "rootfs" { print $1 "," $3 "," substr($4, 1, 2) }' /proc/mounts | tail -n1) uptime=$(cut -d' ' -f1 /proc/uptime)"
# The initramfs that brought us here loaded the disk's modules already; a kernel that reached this
# image by itself may still want the rest (pvpanic).
while read -r m; do
  [ -d "/sys/module/$(echo "${m%.ko}" | tr - _)" ] || insmod "/lib/modules/$m" || echo "init: insmod $m failed"
done </lib/modules/load-order
INIT
lab_append_guest_init "$root/sbin/init"
chmod +x "$root/sbin/init"

mkdir -p "$(dirname "$out")"
rm -f "$out"
truncate -s "$size" "$out"
# root_owner: / belongs to root in the guest whoever built the image (the files keep the builder's ids).
"$mke2fs" -q -t ext4 -L vmm-root -E root_owner=0:0 -d "$root" -F "$out"
echo "build-rootfs: $out ($size ext4; $(du -sh "$root" | cut -f1) of files; modules: $(tr '\n' ' ' <"$root/lib/modules/load-order"))"
