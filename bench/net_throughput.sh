#!/usr/bin/env bash
# Network benchmark: vmm's virtio-net against QEMU -M microvm's virtio-net-device (no vhost), side by
# side in one boot of the nested lab's L1. Both put the same L2 guest (Debian's cloud kernel, the
# lab's --with-net initramfs) on the same tap of a bridge in L1; the guest pings L1, then reads N MiB
# from L1 over TCP and sends N MiB back (busybox nc and dd). The script prints medians of the runs
# per VMM and their ratios. See bench/README.md.
#
# usage: net_throughput.sh [--vmm PATH] [--runs N] [--size MiB] [--pings N] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N      guest boots per VMM (default 3)
#   --size MiB    bytes each way per boot (default 64)
#   --pings N     pings per boot, 0.2 s apart (default 20)
#   --out DIR     where the initramfs, logs and net_throughput.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
lab_scripts=$repo/guest-tests/linux
# shellcheck source=guest-tests/linux/lib.sh
. "$lab_scripts/lib.sh"

vmm=$repo/build/vmm/vmm runs=3 size=64 pings=20 out=$repo/build/bench
lab=${VMM_LAB_OUT:-$repo/build/lab}
usage() { sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --vmm) vmm=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --pings) pings=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "net_throughput: unknown argument '$1'" >&2; usage ;;
  esac
done
for n in "$runs" "$size" "$pings"; do
  case $n in '' | *[!0-9]* | 0) echo "net_throughput: '$n': want a positive whole number" >&2; exit 2 ;; esac
done
[ "$size" -le 512 ] || { echo "net_throughput: --size $size: at most 512 MiB" >&2; exit 2; }
[ -x "$vmm" ] || lab_die "--vmm $vmm: no such executable (cmake --build <build dir> --target vmm)"
vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- inputs: the kernel (the lab's), an L2 initramfs with virtio_net ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
"$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --with-net --out "$out/l2-net.cpio.gz"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
lab_add_modules "$root" "$lab/kernels/cloud/modules" "${lab_l1_modules[@]}" "${lab_l1_net_modules[@]}"
lab_add_binary "$root" "$vmm" /usr/local/bin/vmm
lab_add_binary "$root" "$qemu" /usr/bin/qemu-system-x86_64
mkdir -p "$root/usr/share/qemu" "$root/bench/l2"
cp "${lab_qemu_firmware[@]}" "$root/usr/share/qemu/"
cp "$kernel" "$root/bench/l2/vmlinuz"
cp "$out/l2-net.cpio.gz" "$root/bench/l2/initrd.cpio.gz"
lab_write_l1_net "$root/bench/l1-net.sh"
# L1's side of a transfer, run by nc -e with the connection as stdin and stdout: each notes when it
# started and ended (L1's clock); serve sends NET_MIB MiB of zeros, take counts what arrives in
# whole 64 KiB blocks (dd's "N+M records in"), and ack tells the guest when take is done.
cat >"$root/bench/serve.sh" <<'L1'
#!/bin/sh
s=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/zero bs=64k count=$((NET_MIB * 16)) 2>/dev/null
echo "$s $(cut -d' ' -f1 /proc/uptime)" >/tmp/serve.time
L1
cat >"$root/bench/take.sh" <<'L1'
#!/bin/sh
s=$(cut -d' ' -f1 /proc/uptime)
dd iflag=fullblock bs=64k of=/dev/null 2>/tmp/take.dd
echo "$s $(cut -d' ' -f1 /proc/uptime)" >/tmp/take.time
L1
cat >"$root/bench/ack.sh" <<'L1'
#!/bin/sh
i=0
while [ ! -e /tmp/take.time ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e /tmp/take.time ]; then echo taken; else echo timeout; fi
L1
chmod +x "$root/bench/serve.sh" "$root/bench/take.sh" "$root/bench/ack.sh"
# L1's side: one guest boot per VMM and run, alternating, QEMU first in each pair (if a vmm boot
# wedges L1, the reference numbers before it remain). One line per boot:
#   NET-RESULT <qemu|vmm> run=<i> status=<exit status> wall_s=<L1 seconds> ping_avg_ms=.. ping_min_ms=..
#     ping_max_ms=.. l1_to_guest_mbs=.. (guest's clock: the receiver's) l1_to_guest_l1_mbs=.. (L1's,
#     until its last write was buffered) guest_to_l1_mbs=.. (L1's clock: the receiver's)
#     guest_to_l1_guest_mbs=.. (the guest's: until L1 said it read everything)
# or, when the guest did not get through it, NET-RESULT ... failed, then the console's tail.
cat >"$root/bench/net_init.sh" <<'L1'
KERNEL=/bench/l2/vmlinuz INITRD=/bench/l2/initrd.cpio.gz TAP=labtap0 MAC=52:54:00:ab:00:15
CMDLINE="console=ttyS0 panic=-1 vmmtest=netbench netbench=$NET_MIB,$NET_PINGS vmmnet=10.0.2.15/24 vmmpeer=10.0.2.2"
TIMEOUT=$((NET_MIB * 4 + NET_PINGS + 120)) # boot, pings, and both transfers at >= 0.5 MB/s
export NET_MIB
. /bench/l1-net.sh
mbs() { # mbs SECONDS: MB/s (10^6 bytes) for NET_MIB MiB in SECONDS
  awk -v s="$1" -v m="$NET_MIB" 'BEGIN { if (s == "" || s <= 0) print "-"; else printf "%.1f", m * 1.048576 / s }'
}
span() { awk '{ printf "%.2f", $2 - $1 }' "$1" 2>/dev/null; }
run_one() {
  kind=$1 run=$2 console=/tmp/$1-$2.console
  rm -f /tmp/serve.time /tmp/take.time /tmp/take.dd
  nc -l -p 5001 -e /bench/serve.sh &
  serve_pid=$!
  nc -l -p 5002 -e /bench/take.sh &
  take_pid=$!
  nc -l -p 5003 -e /bench/ack.sh &
  ack_pid=$!
  start=$(cut -d' ' -f1 /proc/uptime)
  case $kind in
    vmm) timeout "$TIMEOUT" /usr/local/bin/vmm --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 \
           --memory 256M --cmdline "$CMDLINE" --timeout "$TIMEOUT" --net "tap=$TAP,mac=$MAC" ;;
    qemu) timeout "$TIMEOUT" qemu-system-x86_64 -M microvm,rtc=on -accel kvm -cpu host -smp 1 -m 256 \
            -nodefaults -no-user-config -display none -serial stdio -no-reboot \
            -netdev tap,id=n0,ifname=$TAP,script=no,downscript=no -device virtio-net-device,netdev=n0,mac=$MAC \
            -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" ;;
  esac </dev/null >"$console" 2>&1
  status=$?
  wall=$(awk -v a="$start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
  kill "$serve_pid" "$take_pid" "$ack_pid" 2>/dev/null
  wait "$serve_pid" "$take_pid" "$ack_pid" 2>/dev/null
  tr -d '\r' <"$console" >"$console.txt"
  ping=$(sed -n 's/^VMM-L2-NETBENCH-PING min=\([0-9.]*\) avg=\([0-9.]*\) max=\([0-9.]*\).*/ping_avg_ms=\2 ping_min_ms=\1 ping_max_ms=\3/p' "$console.txt")
  rx_blocks=$(sed -n 's/^VMM-L2-NETBENCH-RX blocks=\([0-9]*\)+.*/\1/p' "$console.txt")
  rx_s=$(sed -n 's/^VMM-L2-NETBENCH-RX .*seconds=\([0-9.]*\).*/\1/p' "$console.txt")
  tx_s=$(sed -n 's/^VMM-L2-NETBENCH-TX seconds=\([0-9.]*\).*/\1/p' "$console.txt")
  take_blocks=$(sed -n 's/^\([0-9]*\)+.* records in/\1/p' /tmp/take.dd 2>/dev/null)
  if [ -n "$ping" ] && [ "$rx_blocks" = $((NET_MIB * 16)) ] && [ "$take_blocks" = $((NET_MIB * 16)) ] && [ -n "$tx_s" ]; then
    echo "NET-RESULT $kind run=$run status=$status wall_s=$wall $ping l1_to_guest_mbs=$(mbs "$rx_s")" \
      "l1_to_guest_l1_mbs=$(mbs "$(span /tmp/serve.time)") guest_to_l1_mbs=$(mbs "$(span /tmp/take.time)")" \
      "guest_to_l1_guest_mbs=$(mbs "$tx_s")"
  else
    echo "NET-RESULT $kind run=$run status=$status wall_s=$wall failed (ping '$ping', blocks in: guest ${rx_blocks:-?}, L1 ${take_blocks:-?} of $((NET_MIB * 16)))"
    echo "--- $kind run $run: last lines of the L2 console ---"
    tail -n 25 "$console.txt" | sed 's/^/  | /'
    echo "--- end ---"
  fi
}
echo "NET-START runs=$NET_RUNS mib=$NET_MIB pings=$NET_PINGS l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
[ -c /dev/kvm ] || echo "NET-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
l1_net_up labbr0 10.0.2.2/24 "$TAP" || echo "NET-ERROR L1 cannot set up its bridge and tap"
run=1
while [ $run -le "$NET_RUNS" ]; do
  run_one qemu $run
  run_one vmm $run
  run=$((run + 1))
done
echo "NET-END l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
L1
lab_write_l1_init_start "$root"
cat >>"$root/init" <<'INIT'
echo # the firmware leaves the cursor mid-line; the bench's lines must start one
for word in $(cat /proc/cmdline); do
  case $word in
    netruns=*) NET_RUNS=${word#*=} ;;
    netmib=*) NET_MIB=${word#*=} ;;
    netpings=*) NET_PINGS=${word#*=} ;;
  esac
done
export NET_RUNS NET_MIB NET_PINGS
sh /bench/net_init.sh
poweroff -f
INIT
chmod +x "$root/init"
l1_cpio=$out/l1-net.cpio
lab_pack_cpio "$root" "$l1_cpio"
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
# shellcheck disable=SC2054 # commas belong to QEMU's option values
l1_command=(qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC -smp 2 -m 2048 -nographic -no-reboot
  -kernel "$kernel" -initrd "$l1_cpio"
  -append "console=ttyS0 panic=-1 quiet netruns=$runs netmib=$size netpings=$pings")
per_boot=$((size * 4 + pings + 120))
l1_timeout=$((180 + 2 * runs * per_boot))
log=$out/l1-net-console.log
lab_l1_line() { echo "  $1"; }
boot_l1() {
  local start=$SECONDS
  echo "net_throughput: booting L1 ($runs boots per VMM; host timeout ${l1_timeout}s; console log $log)"
  lab_boot_l1 "$log" '^(NET-|--- |  \| )' "$l1_timeout" $((per_boot + 30)) "${l1_command[@]}"
  echo "net_throughput: L1 ran $((SECONDS - start))s, QEMU exit status $l1_status${l1_killed:+ (stopped: $l1_killed)}"
}
l1_finished() { grep -q '^NET-END' "$log"; }
retry_note=""
boot_l1
if ! l1_finished; then
  retry_note="L1 crashed on the first attempt ($(lab_l1_crash_reason "$log" NET-END)); retried once (log kept in $log.1)"
  echo "net_throughput: $retry_note"
  mv "$log" "$log.1"
  boot_l1
fi
if ! l1_finished; then
  retry_note="${retry_note:+$retry_note; }L1 did not finish ($(lab_l1_crash_reason "$log" NET-END)): the table has only the boots before that"
fi
grep '^NET-RESULT ' "$log" >"$out/net_results.txt" || true

# --- the table ---
# field KIND NAME: that field of every boot that got through, one per line.
field() {
  awk -v kind="$1" -v name="$2" '$2 == kind && !/ failed/ {
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name && kv[2] != "-") print kv[2] }
    }' "$out/net_results.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { field "$1" "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
count_ok() { field "$1" ping_avg_ms | wc -l; }
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
vmm_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
vmm_dirty=""
if git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then vmm_dirty=" + uncommitted changes"; fi
{
  echo "vmm network benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: L1 = QEMU TCG (-cpu EPYC, 2 vCPUs, 2 GiB), L2 under kvm-amd in L1"
  echo "L2: Debian $(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?'), 1 vCPU, 256 MiB, 10.0.2.15 on a tap of L1's bridge (L1: 10.0.2.2)"
  echo "vmm: --net tap=labtap0,mac=..; reference: $("$qemu" --version | head -n1), -M microvm -netdev tap,ifname=labtap0 -device virtio-net-device (no vhost)"
  echo "per boot: $pings pings 0.2 s apart, then $size MiB L1 -> guest and $size MiB guest -> L1 over TCP (nc, dd);"
  echo "$runs boots per VMM, alternating in one L1 boot; medians of the boots that got through (vmm $(count_ok vmm)/$runs, QEMU $(count_ok qemu)/$runs)"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  echo
  printf '%-46s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  for row in ping_avg_ms:"ping round trip, avg (ms)" \
    l1_to_guest_mbs:"TCP L1 -> guest (MB/s, guest clock)" \
    l1_to_guest_l1_mbs:"TCP L1 -> guest (MB/s, L1 clock, until sent)" \
    guest_to_l1_mbs:"TCP guest -> L1 (MB/s, L1 clock)" \
    guest_to_l1_guest_mbs:"TCP guest -> L1 (MB/s, guest clock)" \
    wall_s:"L2 boot + benchmark, L1 wall (s)"; do
    name=${row%%:*} label=${row#*:}
    v=$(med vmm "$name") q=$(med qemu "$name")
    printf '%-46s %10s %12s %10s\n' "$label" "$v" "$q" "$(ratio "$v" "$q")"
  done
  echo
  echo "Lower is better for the round trip and the wall time, higher for the rates. Each transfer is timed"
  echo "from its connection to the receiver's end of stream, but L1's clock for L1 -> guest stops when L1's"
  echo "last write was buffered; the guest's clock runs slow in the lab: compare the two VMMs row by row,"
  echo "not the absolute numbers (bench/README.md)."
  echo
  echo "per boot:"
  sed 's/^NET-RESULT /  /' "$out/net_results.txt"
  if grep -q '^--- ' "$log"; then
    echo
    echo "failed boots:"
    grep -E '^(--- |  \| )' "$log"
  fi
} | tee "$out/net_throughput.txt"
[ "$(count_ok vmm)" -gt 0 ] && [ "$(count_ok qemu)" -gt 0 ]
