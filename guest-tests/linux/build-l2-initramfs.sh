#!/usr/bin/env bash
# Builds the busybox initramfs for the L2 guest (the Linux guest vmm boots). Its /init reads
# vmmtest=<scenario> from the kernel command line; see the case statement below for what each does.
#
# usage: build-l2-initramfs.sh --kernel-dir DIR --out FILE [--with-virtio] [--modules "m1 m2"]
#   --kernel-dir  a flavour directory from fetch-kernels.sh (has config and modules/)
#   --with-virtio also load virtio_mmio, virtio_blk, virtio_net
#   --modules     extra modules to load at boot, by name
# Also writes FILE.pvpanic: "builtin", "module" or "none" (whether the panic scenario can report).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=guest-tests/linux/lib.sh
. "$here/lib.sh"

# The modules /init loads, in this order (their dependencies are added automatically).
virtio_modules=(virtio_mmio virtio_blk virtio_net)

kernel_dir="" out="" modules=()
while [ $# -gt 0 ]; do
  case $1 in
    --kernel-dir) kernel_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --with-virtio) modules+=("${virtio_modules[@]}"); shift ;;
    --modules) read -r -a extra <<<"$2"; modules+=("${extra[@]}"); shift 2 ;;
    *) echo "usage: $0 --kernel-dir DIR --out FILE [--with-virtio] [--modules LIST]" >&2; exit 2 ;;
  esac
done
[ -n "$kernel_dir" ] && [ -n "$out" ] || { echo "usage: $0 --kernel-dir DIR --out FILE" >&2; exit 2; }
[ -f "$kernel_dir/config" ] && [ -d "$kernel_dir/modules" ] || lab_die "$kernel_dir: no config or modules/ (run fetch-kernels.sh)"

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

cat >"$root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$lab_init_load_modules
INIT
cat >>"$root/init" <<'INIT'
halt_with() { # poweroff -f or reboot -f; if it returns, the VMM missed the request: say so, then wait
  "$@"
  echo "VMM-L2-ERROR: '$*' returned"
  while :; do sleep 3600; done
}
scenario=$(sed -n 's/.*vmmtest=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "VMM-L2-UP scenario=${scenario:-none} kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
case $scenario in
  marker)
    echo VMM-L2-MARKER
    halt_with poweroff -f ;;
  cpus)
    echo "VMM-L2-CPUS=$(grep -c '^processor' /proc/cpuinfo)"
    halt_with poweroff -f ;;
  poweroff)
    halt_with poweroff -f ;;
  reboot)
    halt_with reboot -f ;;
  panic)
    if ls /sys/bus/platform/drivers/pvpanic-mmio/ 2>/dev/null | grep -q ':'; then
      echo "VMM-L2-PVPANIC=bound"
    else
      echo "VMM-L2-PVPANIC=unbound ($(cat /etc/pvpanic))"
    fi
    echo 1 >/proc/sys/kernel/sysrq
    echo c >/proc/sysrq-trigger
    halt_with false ;;
  echo)
    stty -echo 2>/dev/null
    echo VMM-L2-ECHO-READY
    read -r line
    echo "VMM-L2-ECHO:$line"
    halt_with poweroff -f ;;
  rtc)
    echo "VMM-L2-RTC=$(cat /sys/class/rtc/rtc0/since_epoch 2>/dev/null)"
    halt_with poweroff -f ;;
  shell)
    echo
    echo "  vmm: Debian $(uname -r) is up ($(grep -c '^processor' /proc/cpuinfo) vCPU, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB)."
    echo "  This is a busybox shell on the serial console. 'poweroff -f' (or Ctrl-D) powers the guest off."
    echo
    setsid cttyhack sh -l
    halt_with poweroff -f ;;
  *)
    echo "VMM-L2-ERROR: unknown vmmtest='$scenario'"
    halt_with poweroff -f ;;
esac
INIT
chmod +x "$root/init"
mkdir -p "$(dirname "$out")"
lab_pack_cpio "$root" "$out"
echo "$pvpanic" >"$out.pvpanic"
echo "build-l2-initramfs: $out ($(du -h "$out" | cut -f1); modules: $(tr '\n' ' ' <"$root/lib/modules/load-order"); pvpanic: $pvpanic)"
