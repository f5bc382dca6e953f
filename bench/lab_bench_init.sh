#!/bin/sh
# The boot benchmark's side inside the nested lab's L1 (busybox sh, run by the /init boot_time.sh
# writes). Boots the same L2 guest (Debian's cloud kernel, the lab's L2 initramfs, 1 vCPU, 256 MiB,
# the same command line) with QEMU -M microvm and with vmm, alternately, BENCH_RUNS times each, each
# under bench/tools/stamp, and prints one line per boot:
#   BENCH-RESULT <qemu|vmm> run=<i> first_output_ms=.. marker_ms=.. exit_ms=.. status=.. rss_kib=..
#                guest_rss_kib=.. overhead_kib=.. maxrss_kib=.. early_marker_ms=.. l2_uptime_s=..
#                [vcpu_start_ms=..]
# (l2_uptime_s: the guest's /proc/uptime when its /init ran; vcpu_start_ms, vmm only: its own -vv
# log's "starting 1 vCPU(s)" time since process start), the console's first line on each VMM's first
# boot (BENCH-FIRST-LINE), the tail of the L2 console after a failed boot, and BENCH-END at the end.
#
# Environment: BENCH_RUNS (default 3). Paths are where boot_time.sh puts things in the L1 initramfs.

# shellcheck source=bench/lab_stamp.sh
. /bench/lab_stamp.sh
BENCH_RUNS=${BENCH_RUNS:-3}
VMM=/usr/local/bin/vmm
QEMU=/usr/bin/qemu-system-x86_64
KERNEL=/bench/l2/vmlinuz
INITRD=/bench/l2/initrd.cpio.gz
CMDLINE="console=ttyS0 panic=-1 vmmtest=marker"
MARKER="VMM-L2-MARKER"
MEM_MIB=256

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# run_one KIND RUN: one L2 boot under stamp (lab_stamp.sh); its console and stderr are kept in /tmp.
run_one() {
  kind=$1 run=$2
  case $kind in
    vmm)
      set -- "$VMM" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory "${MEM_MIB}M" \
        --cmdline "$CMDLINE" --timeout "$L2_TIMEOUT" -vv ;;
    qemu)
      set -- "$QEMU" -M microvm,rtc=on -accel kvm -cpu host -smp 1 -m "$MEM_MIB" -nodefaults \
        -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" ;;
  esac
  stamp_boot "$kind" "$run" "$MARKER" "$MEM_MIB" "$@"
  # The guest kernel's own clock when /init ran: tells guest-side boot time from the VMM's share.
  up=$(sed -n 's/.*VMM-L2-UP .*uptime=\([0-9.]*\).*/\1/p' "$console" | head -n1)
  extra=" l2_uptime_s=${up:--1}"
  [ "$kind" = vmm ] && extra="$extra vcpu_start_ms=$(vmm_vcpu_start_ms)"
  # What "first output" was, once per VMM: the console's first line, printable characters only.
  if [ "$run" = 1 ]; then
    echo "BENCH-FIRST-LINE $kind: $(head -n1 "$console" 2>/dev/null | sed 's/[^ -~]//g' | cut -c1-100)"
  fi
  stamp_report "$extra"
}

echo "BENCH-START runs=$BENCH_RUNS l1-uptime=$(uptime_s) kernel=$(uname -r) cpus=$(grep -c '^processor' /proc/cpuinfo)"
if [ ! -c /dev/kvm ]; then
  echo "BENCH-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
  echo "BENCH-END"
  exit 1
fi
# QEMU goes first in each pair: if a vmm boot ever wedges L1, the reference numbers before it remain.
run=1
while [ $run -le "$BENCH_RUNS" ]; do
  run_one qemu "$run"
  run_one vmm "$run"
  run=$((run + 1))
done
echo "BENCH-END l1-uptime=$(uptime_s)"
