#!/usr/bin/env bash
# Block benchmark: vmm's virtio-blk against QEMU -M microvm's virtio-blk-device, side by side in one
# boot of the nested lab's L1. Both attach the same kind of disk (a raw file in L1's RAM) to the same
# L2 guest (Debian's cloud kernel, the lab's --with-disk initramfs with bench/tools/blkbench), which
# runs blkbench on /dev/vda; the script prints medians of N runs per VMM and their ratios. With
# --vmm-baseline, another vmm build (an earlier commit's, say) boots in the same L1 too, in a column
# of its own. See bench/README.md.
#
# usage: blk_throughput.sh [--vmm PATH] [--vmm-baseline PATH]... [--runs N] [--size MiB]
#                          [--seconds T] [--depth D] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --vmm-baseline PATH
#                 another vmm binary to compare with it: its boots alternate with the others', and
#                 the table adds its column, its ratio to QEMU and vmm/baseline (may be repeated)
#   --runs N      guest boots per VMM (default 3)
#   --size MiB    blkbench's range: the sequential passes cover it (default 64; the disk is 256 MiB)
#   --seconds T   each random-read phase's length (default 5)
#   --depth D     threads in the queue-depth phase (default 4)
#   --out DIR     where the initramfs, logs and blk_throughput.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm vmm_baseline=() runs=3 size=64 seconds=5 depth=4 out=$repo/build/bench
bench_options vmm vmm-baseline+ runs size seconds depth out -- "$@"
bench_positive runs size seconds depth
[ "$size" -le 256 ] || { echo "blk_throughput: --size $size: the disk is 256 MiB" >&2; exit 2; }
bench_lab_setup
command -v gcc >/dev/null || lab_die "gcc not found"

# --- inputs: the kernel (the lab's), blkbench, an L2 initramfs that has both ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
gcc -O2 -static -pthread -Wall -Wextra -o "$out/blkbench" "$here/tools/blkbench.c"
"$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --with-disk \
  --file "$out/blkbench:/bin/blkbench" --out "$out/l2-blkbench.cpio.gz"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$out/l2-blkbench.cpio.gz"
bench_l1_add_qemu "$root"
bench_l1_each_boot "$root"
# L1's side: one guest boot per VMM and run, alternating, QEMU first in each round (each_boot). One
# line per boot:
#   BLK-RESULT <qemu|vmm|vmm-baseline..> run=<i> status=<exit status> wall_s=<L1 seconds> <blkbench's fields>
# or, when blkbench printed nothing, BLK-RESULT <kind> run=<i> status=.. failed, then the console's tail.
cat >"$root/bench/blk_init.sh" <<'L1'
DISK=/tmp/disk.img KERNEL=/bench/l2/vmlinuz INITRD=/bench/l2/initrd.cpio.gz
CMDLINE="console=ttyS0 panic=-1 vmmtest=blkbench blkbench=$BLK_ARGS"
TIMEOUT=$((BLK_SECONDS * 2 + 200)) # boot + both sequential passes (slow in the lab) + random phases
run_one() {
  kind=$1 run=$2 console=/tmp/$1-$2.console
  start=$(cut -d' ' -f1 /proc/uptime)
  case $kind in
    vmm*) timeout "$TIMEOUT" "/usr/local/bin/$kind" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 \
            --memory 256M --cmdline "$CMDLINE" --timeout "$TIMEOUT" --disk "$DISK" ;;
    qemu) timeout "$TIMEOUT" qemu-system-x86_64 -M microvm,rtc=on -accel kvm -cpu host -smp 1 -m 256 \
            -nodefaults -no-user-config -display none -serial stdio -no-reboot \
            -drive id=d0,file="$DISK",format=raw,if=none -device virtio-blk-device,drive=d0 \
            -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" ;;
  esac </dev/null >"$console" 2>&1
  status=$?
  wall=$(awk -v a="$start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
  fields=$(sed -n 's/^BLKBENCH //p' "$console" | tr -d '\r' | head -n1)
  if [ -n "$fields" ]; then
    echo "BLK-RESULT $kind run=$run status=$status wall_s=$wall $fields"
  else
    echo "BLK-RESULT $kind run=$run status=$status wall_s=$wall failed"
    echo "--- $kind run $run: last lines of the L2 console ---"
    tail -n 25 "$console" | sed 's/^/  | /'
    echo "--- end ---"
  fi
}
echo "BLK-START runs=$BLK_RUNS args=$BLK_ARGS l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
[ -c /dev/kvm ] || echo "BLK-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
# The same file for every boot, its pages allocated up front: both VMMs write over and read the same.
dd if=/dev/zero of="$DISK" bs=1M count=256 2>/dev/null || echo "BLK-ERROR cannot make $DISK"
. /bench/each_boot.sh
each_boot "$BLK_RUNS" "$BLK_VMMS"
echo "BLK-END l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
L1
bench_l1_init "$root" /bench/blk_init.sh blkruns=BLK_RUNS blkargs=BLK_ARGS blkseconds=BLK_SECONDS blkvmms=BLK_VMMS
l1_cpio=$out/l1-blk.cpio
lab_pack_cpio "$root" "$l1_cpio"
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" "blkruns=$runs blkargs=--size,$size,--seconds,$seconds,--depth,$depth blkseconds=$seconds blkvmms=$vmm_kinds_list"
per_boot=$((seconds * 2 + 200))
log=$out/l1-blk-console.log
bench_boot_l1 "$log" BLK-END '^(BLK-|--- |  \| )' $((180 + (${#vmm_kinds[@]} + 1) * runs * per_boot)) $((per_boot + 30)) \
  "$runs boots per VMM" "${l1_command[@]}"
results=$out/blk_results.txt
grep '^BLK-RESULT ' "$log" >"$results" || true

# --- the table ---
bench_describe
{
  echo "vmm block benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  bench_baselines
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?'), 1 vCPU, 256 MiB; disk: a 256 MiB raw file in L1's tmpfs, /dev/vda"
  echo "vmm: --disk FILE; reference: $("$qemu" --version | head -n1), -M microvm -drive file=FILE,format=raw,if=none -device virtio-blk-device"
  echo "blkbench (O_DIRECT): --size $size --seconds $seconds --depth $depth; $runs boots per VMM, alternating in one L1 boot;"
  echo "medians of the boots that finished ($(bench_counted "$runs" qemu QEMU))"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  echo
  bench_vmm_columns qemu "QEMU microvm" QEMU
  bench_table 40 "${columns[@]}" -- \
    seq_write_mbs:"sequential write, 1 MiB (MB/s)" seq_read_mbs:"sequential read, 1 MiB (MB/s)" \
    rand_qd1_iops:"random read 4 KiB, 1 in flight (IOPS)" rand_qdn_iops:"random read 4 KiB, $depth threads (IOPS)" \
    wall_s:"L2 boot + benchmark, L1 wall (s)"
  echo
  echo "Higher is better but for the wall time. Rates use the L2 guest's own clock, which runs slow in"
  echo "the lab: compare the two VMMs, not the absolute numbers (bench/README.md)."
  echo
  bench_per_boot BLK "$log"
} | tee "$out/blk_throughput.txt"
bench_all_counted qemu
