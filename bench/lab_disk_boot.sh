#!/bin/sh
# The disk boot benchmark's side inside the nested lab's L1 (busybox sh, run by the /init
# disk_boot.sh writes). For each of BENCH_RUNS rounds and each kernel of BENCH_KERNELS (cloud,
# generic), boots a fresh copy of that kernel's root image three ways, their order rotated by one
# from round to round:
#   built    vmm --kernel K --disk IMG --modules PKG: the one-line boot, vmm builds the initramfs
#   busybox  vmm --kernel K --initrd I --disk IMG --cmdline C: the lab's busybox disk initramfs
#   qemu     QEMU -M microvm with the same kernel, initramfs, disk and command line
# each under stamp (lab_stamp.sh), timed to the first line of the disk's /sbin/init
# (VMM-L2-ROOTFS-UP), which, given no vmmtest=, writes a file, syncs and powers off. Prints one line
# per boot:
#   BENCH-RESULT <kernel>-<way> run=<i> <stamp's fields> l2_uptime_s=.. [vcpu_start_ms=..]
# (l2_uptime_s: the guest's /proc/uptime when /sbin/init ran; vcpu_start_ms, vmm only: see
# lab_stamp.sh), the built initramfs as vmm's -v log describes it on its first boot
# (BENCH-INITRAMFS), the tails of a failed boot's console and stderr, and BENCH-END at the end.
#
# Environment: BENCH_RUNS (default 3), BENCH_KERNELS (comma-separated, default cloud). Paths are
# where disk_boot.sh puts things in the L1 initramfs: /bench/l2/<kernel>/ holds vmlinuz,
# initrd-disk.cpio.gz, root.img.gz and package/ (the kernel package's modules, cut down).

# shellcheck source=bench/lab_stamp.sh
. /bench/lab_stamp.sh
# shellcheck disable=SC1091 # bench_lib.sh's bench_l1_each_boot writes it: each_rotate
. /bench/each_boot.sh
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_KERNELS=${BENCH_KERNELS:-cloud}
VMM=/usr/local/bin/vmm
QEMU=/usr/bin/qemu-system-x86_64
L2=/bench/l2
DISK=/tmp/root.img
MARKER="VMM-L2-ROOTFS-UP"
MEM_MIB=512                                       # vmm's default, which the one-line boot takes
CMDLINE="console=ttyS0 panic=-1 root=/dev/vda rw" # what vmm composes for the one-line boot

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# run_one KERNEL WAY RUN: one boot of a fresh root image under stamp.
run_one() {
  kernel=$1 way=$2 run=$3
  image=$L2/$kernel/vmlinuz initrd=$L2/$kernel/initrd-disk.cpio.gz
  if ! gunzip -c "$L2/$kernel/root.img.gz" >"$DISK"; then
    echo "BENCH-RESULT $kernel-$way run=$run no-disk"
    return
  fi
  case $way in
    built)
      set -- "$VMM" --kernel "$image" --disk "$DISK" --modules "$L2/$kernel/package" \
        --timeout "$L2_TIMEOUT" -vv ;;
    busybox)
      set -- "$VMM" --kernel "$image" --initrd "$initrd" --disk "$DISK" --cmdline "$CMDLINE" \
        --timeout "$L2_TIMEOUT" -vv ;;
    qemu) # the lab's reference line (scenarios.sh's l2_run), with vmm's memory
      set -- "$QEMU" -M microvm,rtc=on -accel kvm -cpu host -smp 1 -m "$MEM_MIB" -nodefaults \
        -no-user-config -display none -serial stdio -no-reboot -device pvpanic \
        -action panic=exit-failure -drive id=d0,file="$DISK",format=raw,if=none \
        -device virtio-blk-device,drive=d0 -kernel "$image" -initrd "$initrd" -append "$CMDLINE" ;;
  esac
  stamp_boot "$kernel-$way" "$run" "$MARKER" "$MEM_MIB" "$@"
  # The guest kernel's own clock when /sbin/init ran: tells guest-side boot time from the VMM's share.
  up=$(sed -n "s/.*$MARKER .*uptime=\([0-9.]*\).*/\1/p" "$console" | head -n1)
  extra=" l2_uptime_s=${up:--1}"
  [ "$way" = qemu ] || extra="$extra vcpu_start_ms=$(vmm_vcpu_start_ms)"
  if [ "$way" = built ] && [ "$run" = 1 ]; then
    echo "BENCH-INITRAMFS $kernel: $(sed -n 's/^vmm: info: initramfs: //p' "$errlog" | head -n1)"
  fi
  stamp_report "$extra"
  rm -f "$DISK"
}

echo "BENCH-START runs=$BENCH_RUNS kernels=$BENCH_KERNELS l1-uptime=$(uptime_s) kernel=$(uname -r) cpus=$(grep -c '^processor' /proc/cpuinfo)"
if [ ! -c /dev/kvm ]; then
  echo "BENCH-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
  echo "BENCH-END"
  exit 1
fi
ways="built busybox qemu" run=1
while [ $run -le "$BENCH_RUNS" ]; do
  for kernel in $(echo "$BENCH_KERNELS" | tr , ' '); do
    for way in $ways; do run_one "$kernel" "$way" "$run"; done
  done
  # shellcheck disable=SC2086 # a word per way
  ways=$(each_rotate $ways)
  run=$((run + 1))
done
echo "BENCH-END l1-uptime=$(uptime_s)"
