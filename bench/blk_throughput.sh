#!/usr/bin/env bash
# Block benchmark: vmm's virtio-blk against QEMU -M microvm's virtio-blk-device, side by side in one
# boot of the nested lab's L1. Both attach the same kind of disk (a raw file in L1's RAM) to the same
# L2 guest (Debian's cloud kernel, the lab's --with-disk initramfs with bench/tools/blkbench), which
# runs blkbench on /dev/vda; the script prints medians of N runs per VMM and their ratios. See
# bench/README.md.
#
# usage: blk_throughput.sh [--vmm PATH] [--runs N] [--size MiB] [--seconds T] [--depth D] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N      guest boots per VMM (default 3)
#   --size MiB    blkbench's range: the sequential passes cover it (default 64; the disk is 256 MiB)
#   --seconds T   each random-read phase's length (default 5)
#   --depth D     threads in the queue-depth phase (default 4)
#   --out DIR     where the initramfs, logs and blk_throughput.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
lab_scripts=$repo/guest-tests/linux
# shellcheck source=guest-tests/linux/lib.sh
. "$lab_scripts/lib.sh"

vmm=$repo/build/vmm/vmm runs=3 size=64 seconds=5 depth=4 out=$repo/build/bench
lab=${VMM_LAB_OUT:-$repo/build/lab}
usage() { sed -n '8,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --vmm) vmm=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "blk_throughput: unknown argument '$1'" >&2; usage ;;
  esac
done
for n in "$runs" "$size" "$seconds" "$depth"; do
  case $n in '' | *[!0-9]* | 0) echo "blk_throughput: '$n': want a positive whole number" >&2; exit 2 ;; esac
done
[ "$size" -le 256 ] || { echo "blk_throughput: --size $size: the disk is 256 MiB" >&2; exit 2; }
[ -x "$vmm" ] || lab_die "--vmm $vmm: no such executable (cmake --build <build dir> --target vmm)"
vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
command -v gcc >/dev/null || lab_die "gcc not found"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- inputs: the kernel (the lab's), blkbench, an L2 initramfs that has both ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
gcc -O2 -static -pthread -Wall -Wextra -o "$out/blkbench" "$here/tools/blkbench.c"
"$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --with-disk \
  --file "$out/blkbench:/bin/blkbench" --out "$out/l2-blkbench.cpio.gz"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
lab_add_modules "$root" "$lab/kernels/cloud/modules" "${lab_l1_modules[@]}"
lab_add_binary "$root" "$vmm" /usr/local/bin/vmm
lab_add_binary "$root" "$qemu" /usr/bin/qemu-system-x86_64
mkdir -p "$root/usr/share/qemu" "$root/bench/l2"
cp "${lab_qemu_firmware[@]}" "$root/usr/share/qemu/"
cp "$kernel" "$root/bench/l2/vmlinuz"
cp "$out/l2-blkbench.cpio.gz" "$root/bench/l2/initrd.cpio.gz"
# L1's side: one guest boot per VMM and run, alternating, QEMU first in each pair (if a vmm boot
# wedges L1, the reference numbers before it remain). One line per boot:
#   BLK-RESULT <qemu|vmm> run=<i> status=<exit status> wall_s=<L1 seconds> <blkbench's fields>
# or, when blkbench printed nothing, BLK-RESULT <kind> run=<i> status=.. failed, then the console's tail.
cat >"$root/bench/blk_init.sh" <<'L1'
DISK=/tmp/disk.img KERNEL=/bench/l2/vmlinuz INITRD=/bench/l2/initrd.cpio.gz
CMDLINE="console=ttyS0 panic=-1 vmmtest=blkbench blkbench=$BLK_ARGS"
TIMEOUT=$((BLK_SECONDS * 2 + 200)) # boot + both sequential passes (slow in the lab) + random phases
run_one() {
  kind=$1 run=$2 console=/tmp/$1-$2.console
  start=$(cut -d' ' -f1 /proc/uptime)
  case $kind in
    vmm) timeout "$TIMEOUT" /usr/local/bin/vmm --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 \
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
run=1
while [ $run -le "$BLK_RUNS" ]; do
  run_one qemu $run
  run_one vmm $run
  run=$((run + 1))
done
echo "BLK-END l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
L1
lab_write_l1_init_start "$root"
cat >>"$root/init" <<'INIT'
echo # the firmware leaves the cursor mid-line; the bench's lines must start one
for word in $(cat /proc/cmdline); do
  case $word in
    blkruns=*) BLK_RUNS=${word#*=} ;;
    blkargs=*) BLK_ARGS=${word#*=} ;;
    blkseconds=*) BLK_SECONDS=${word#*=} ;;
  esac
done
export BLK_RUNS BLK_ARGS BLK_SECONDS
sh /bench/blk_init.sh
poweroff -f
INIT
chmod +x "$root/init"
l1_cpio=$out/l1-blk.cpio
lab_pack_cpio "$root" "$l1_cpio"
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
blk_args="--size,$size,--seconds,$seconds,--depth,$depth"
# shellcheck disable=SC2054 # commas belong to QEMU's option values
l1_command=(qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC -smp 2 -m 2048 -nographic -no-reboot
  -kernel "$kernel" -initrd "$l1_cpio"
  -append "console=ttyS0 panic=-1 quiet blkruns=$runs blkargs=$blk_args blkseconds=$seconds")
per_boot=$((seconds * 2 + 200))
l1_timeout=$((180 + 2 * runs * per_boot))
log=$out/l1-blk-console.log
lab_l1_line() { echo "  $1"; }
boot_l1() {
  local start=$SECONDS
  echo "blk_throughput: booting L1 ($runs boots per VMM; host timeout ${l1_timeout}s; console log $log)"
  lab_boot_l1 "$log" '^(BLK-|--- |  \| )' "$l1_timeout" $((per_boot + 30)) "${l1_command[@]}"
  echo "blk_throughput: L1 ran $((SECONDS - start))s, QEMU exit status $l1_status${l1_killed:+ (stopped: $l1_killed)}"
}
l1_finished() { grep -q '^BLK-END' "$log"; }
retry_note=""
boot_l1
if ! l1_finished; then
  retry_note="L1 crashed on the first attempt ($(lab_l1_crash_reason "$log" BLK-END)); retried once (log kept in $log.1)"
  echo "blk_throughput: $retry_note"
  mv "$log" "$log.1"
  boot_l1
fi
if ! l1_finished; then
  retry_note="${retry_note:+$retry_note; }L1 did not finish ($(lab_l1_crash_reason "$log" BLK-END)): the table has only the boots before that"
fi
grep '^BLK-RESULT ' "$log" >"$out/blk_results.txt" || true

# --- the table ---
# field KIND NAME: that field of every boot that printed blkbench's line, one per line.
field() {
  awk -v kind="$1" -v name="$2" '$2 == kind && $NF != "failed" {
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) print kv[2] }
    }' "$out/blk_results.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { field "$1" "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
count_ok() { field "$1" seq_read_mbs | wc -l; }
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
vmm_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
vmm_dirty=""
if git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then vmm_dirty=" + uncommitted changes"; fi
{
  echo "vmm block benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: L1 = QEMU TCG (-cpu EPYC, 2 vCPUs, 2 GiB), L2 under kvm-amd in L1"
  echo "L2: Debian $(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?'), 1 vCPU, 256 MiB; disk: a 256 MiB raw file in L1's tmpfs, /dev/vda"
  echo "vmm: --disk FILE; reference: $("$qemu" --version | head -n1), -M microvm -drive file=FILE,format=raw,if=none -device virtio-blk-device"
  echo "blkbench (O_DIRECT): --size $size --seconds $seconds --depth $depth; $runs boots per VMM, alternating in one L1 boot;"
  echo "medians of the boots that finished (vmm $(count_ok vmm)/$runs, QEMU $(count_ok qemu)/$runs)"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  echo
  printf '%-40s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  for row in seq_write_mbs:"sequential write, 1 MiB (MB/s)" seq_read_mbs:"sequential read, 1 MiB (MB/s)" \
    rand_qd1_iops:"random read 4 KiB, 1 in flight (IOPS)" rand_qdn_iops:"random read 4 KiB, $depth threads (IOPS)" \
    wall_s:"L2 boot + benchmark, L1 wall (s)"; do
    name=${row%%:*} label=${row#*:}
    v=$(med vmm "$name") q=$(med qemu "$name")
    printf '%-40s %10s %12s %10s\n' "$label" "$v" "$q" "$(ratio "$v" "$q")"
  done
  echo
  echo "Higher is better but for the wall time. Rates use the L2 guest's own clock, which runs slow in"
  echo "the lab: compare the two VMMs, not the absolute numbers (bench/README.md)."
  echo
  echo "per boot:"
  sed 's/^BLK-RESULT /  /' "$out/blk_results.txt"
  if grep -q '^--- ' "$log"; then
    echo
    echo "failed boots:"
    grep -E '^(--- |  \| )' "$log"
  fi
} | tee "$out/blk_throughput.txt"
[ "$(count_ok vmm)" -gt 0 ] && [ "$(count_ok qemu)" -gt 0 ]
