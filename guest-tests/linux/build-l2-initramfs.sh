#!/usr/bin/env bash
# Builds the busybox initramfs for the L2 guest (the Linux guest vmm boots). Its /init reads
# vmmtest=<scenario> from the kernel command line; see lab_append_guest_init in lib.sh for what each does.
#
# With root=/dev/vdX on the kernel command line, /init instead mounts that disk (ext4; read-only
# unless the command line says rw) and switch_roots to its /sbin/init (build-rootfs.sh makes one).
#
# With vmmnet=ADDR/PREFIX (and vmmgw=GW) on the command line, the network scenarios give eth0 that
# address (busybox ip); module parameters there (virtio_net.csum=0) reach the modules' insmod.
#
# With --with-vsock, /init loads the virtio-vsock transport (the vsock scenarios put the static
# vsockio tool in with --file).
#
# usage: build-l2-initramfs.sh --kernel-dir DIR --out FILE [--with-disk] [--with-net] [--with-virtio]
#                              [--with-vsock] [--modules "m1 m2"] [--file SRC:DEST]...
#   --kernel-dir  a flavour directory from fetch-kernels.sh (has config and modules/)
#   --with-disk   also load what a virtio-mmio disk with an ext4 root needs (virtio_mmio, virtio_blk,
#                 and ext4 where it is a module): the disk scenarios' initramfs
#   --with-net    also load what a virtio-mmio network device needs (virtio_mmio, virtio_net and its
#                 dependencies net_failover, failover): the network scenarios' initramfs
#   --with-virtio also load virtio_mmio, virtio_blk, virtio_net
#   --with-vsock  also load what a virtio-mmio vsock device needs (virtio_mmio,
#                 vmw_vsock_virtio_transport and its dependencies vsock, vmw_vsock_virtio_transport_common)
#   --modules     extra modules to load at boot, by name
#   --file        also put the file SRC at DEST (e.g. a static benchmark tool at /bin/blkbench)
# Also writes FILE.pvpanic: "builtin", "module" or "none" (whether the panic scenario can report).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=guest-tests/linux/lib.sh
. "$here/lib.sh"

# The modules /init loads, in this order (their dependencies are added automatically).
virtio_modules=(virtio_mmio virtio_blk virtio_net)
net_modules=(virtio_mmio virtio_net)
vsock_modules=(virtio_mmio vmw_vsock_virtio_transport)

kernel_dir="" out="" modules=() files=() with_disk=0
while [ $# -gt 0 ]; do
  case $1 in
    --kernel-dir) kernel_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --with-virtio) modules+=("${virtio_modules[@]}"); shift ;;
    --with-net) modules+=("${net_modules[@]}"); shift ;;
    --with-vsock) modules+=("${vsock_modules[@]}"); shift ;;
    --with-disk) with_disk=1; shift ;;
    --file) files+=("$2"); shift 2 ;;
    --modules) read -r -a extra <<<"$2"; modules+=("${extra[@]}"); shift 2 ;;
    *) echo "usage: $0 --kernel-dir DIR --out FILE [--with-disk] [--with-net] [--with-virtio] [--with-vsock] [--modules LIST] [--file SRC:DEST]" >&2; exit 2 ;;
  esac
done
[ -n "$kernel_dir" ] && [ -n "$out" ] || { echo "usage: $0 --kernel-dir DIR --out FILE" >&2; exit 2; }
[ -f "$kernel_dir/config" ] && [ -d "$kernel_dir/modules" ] || lab_die "$kernel_dir: no config or modules/ (run fetch-kernels.sh)"

if [ $with_disk -eq 1 ]; then
  read -r -a extra <<<"$(lab_disk_modules "$kernel_dir")"
  modules+=("${extra[@]}")
fi

# pvpanic: the guest's panic notifier writes to the pvpanic device, so the VMM can tell a panic from a
# reboot. Debian has CONFIG_PVPANIC_MMIO=m (the driver that binds to ACPI QEMU0001).
pvpanic=none
case $(grep -E '^CONFIG_PVPANIC_MMIO=' "$kernel_dir/config" || true) in
  *=y) pvpanic=builtin ;;
  *=m) pvpanic=module; modules+=(pvpanic_mmio) ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
lab_add_modules "$root" "$kernel_dir/modules" "${modules[@]}"
echo "$pvpanic" >"$root/etc/pvpanic"
for f in ${files[@]+"${files[@]}"}; do
  [ -f "${f%%:*}" ] || lab_die "--file $f: no such file"
  mkdir -p "$root$(dirname "${f#*:}")"
  cp "${f%%:*}" "$root${f#*:}"
done

cat >"$root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$lab_init_load_modules
INIT
cat >>"$root/init" <<'INIT'
# root=/dev/vdX on the command line: the root filesystem is on a virtio disk (ext4, read-only unless
# rw is given): mount it and hand over to its /sbin/init (the modules above include the disk's).
root_dev="" root_mode=ro
for word in $(cat /proc/cmdline); do
  case $word in
    root=/dev/*) root_dev=${word#root=} ;;
    rw | ro) root_mode=$word ;;
  esac
done
if [ -n "$root_dev" ]; then
  i=0
  while [ ! -b "$root_dev" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  mkdir -p /newroot
  if mount -t ext4 -o "$root_mode" "$root_dev" /newroot; then
    echo "VMM-L2-SWITCH-ROOT $root_dev ($root_mode) uptime=$(cut -d' ' -f1 /proc/uptime)"
    umount /proc /sys
    mount --move /dev /newroot/dev
    exec switch_root /newroot /sbin/init
  fi
  echo "VMM-L2-ERROR: cannot mount root=$root_dev ($root_mode) after $((i / 10)) s"
  poweroff -f
fi
INIT
lab_append_guest_init "$root/init"
chmod +x "$root/init"
mkdir -p "$(dirname "$out")"
lab_pack_cpio "$root" "$out"
echo "$pvpanic" >"$out.pvpanic"
echo "build-l2-initramfs: $out ($(du -h "$out" | cut -f1); modules: $(tr '\n' ' ' <"$root/lib/modules/load-order"); pvpanic: $pvpanic)"
