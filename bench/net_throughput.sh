#!/usr/bin/env bash
# Network benchmark: vmm's virtio-net against QEMU -M microvm's virtio-net-device (no vhost), side by
# side in one boot of the nested lab's L1. Both put the same L2 guest (Debian's cloud kernel, the
# lab's --with-net initramfs) on the same tap of a bridge in L1; the guest pings L1, then reads N MiB
# from L1 over TCP and sends N MiB back (busybox nc and dd). The script prints medians of the runs
# per VMM and their ratios. With --vmm-baseline, another vmm build (an earlier commit's, say) boots in
# the same L1 too, in a column of its own. See bench/README.md.
#
# usage: net_throughput.sh [--vmm PATH] [--vmm-baseline PATH]... [--runs N] [--size MiB] [--pings N]
#                          [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --vmm-baseline PATH
#                 another vmm binary to compare with it: its boots alternate with the others', and
#                 the table adds its column, its ratio to QEMU and vmm/baseline (may be repeated)
#   --runs N      guest boots per VMM (default 3)
#   --size MiB    bytes each way per boot (default 64)
#   --pings N     pings per boot, 0.2 s apart (default 20)
#   --out DIR     where the initramfs, logs and net_throughput.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm vmm_baseline=() runs=3 size=64 pings=20 out=$repo/build/bench
bench_options vmm vmm-baseline+ runs size pings out -- "$@"
bench_positive runs size pings
[ "$size" -le 512 ] || { echo "net_throughput: --size $size: at most 512 MiB" >&2; exit 2; }
bench_lab_setup

# --- inputs: the kernel (the lab's), an L2 initramfs with virtio_net ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
"$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --with-net --out "$out/l2-net.cpio.gz"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$out/l2-net.cpio.gz" "${lab_l1_net_modules[@]}"
bench_l1_add_qemu "$root"
lab_write_l1_net "$root/bench/l1-net.sh"
bench_l1_tcp_peers "$root/bench" # L1's side of each transfer (serve.sh reads MIB)
bench_l1_each_boot "$root"
# L1's side: one guest boot per VMM and run, alternating, QEMU first in each round (each_boot). One
# line per boot:
#   NET-RESULT <qemu|vmm|vmm-baseline..> run=<i> status=<exit status> wall_s=<L1 seconds> ping_avg_ms=.. ping_min_ms=..
#     ping_max_ms=.. l1_to_guest_mbs=.. (guest's clock: the receiver's) l1_to_guest_l1_mbs=.. (L1's,
#     until its last write was buffered) guest_to_l1_mbs=.. (L1's clock: the receiver's)
#     guest_to_l1_guest_mbs=.. (the guest's: until L1 said it read everything)
# or, when the guest did not get through it, NET-RESULT ... failed, then the console's tail.
cat >"$root/bench/net_init.sh" <<'L1'
KERNEL=/bench/l2/vmlinuz INITRD=/bench/l2/initrd.cpio.gz TAP=labtap0 MAC=52:54:00:ab:00:15
CMDLINE="console=ttyS0 panic=-1 vmmtest=netbench netbench=$NET_MIB,$NET_PINGS vmmnet=10.0.2.15/24 vmmpeer=10.0.2.2"
TIMEOUT=$((NET_MIB * 4 + NET_PINGS + 120)) # boot, pings, and both transfers at >= 0.5 MB/s
export MIB=$NET_MIB # for serve.sh
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
    vmm*) timeout "$TIMEOUT" "/usr/local/bin/$kind" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 \
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
. /bench/each_boot.sh
each_boot "$NET_RUNS" "$NET_VMMS"
echo "NET-END l1-uptime=$(cut -d' ' -f1 /proc/uptime)"
L1
bench_l1_init "$root" /bench/net_init.sh netruns=NET_RUNS netmib=NET_MIB netpings=NET_PINGS netvmms=NET_VMMS
l1_cpio=$out/l1-net.cpio
lab_pack_cpio "$root" "$l1_cpio"
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" "netruns=$runs netmib=$size netpings=$pings netvmms=$vmm_kinds_list"
per_boot=$((size * 4 + pings + 120))
log=$out/l1-net-console.log
bench_boot_l1 "$log" NET-END '^(NET-|--- |  \| )' $((180 + (${#vmm_kinds[@]} + 1) * runs * per_boot)) $((per_boot + 30)) \
  "$runs boots per VMM" "${l1_command[@]}"
results=$out/net_results.txt
grep '^NET-RESULT ' "$log" >"$results" || true

# --- the table ---
bench_describe
{
  echo "vmm network benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  bench_baselines
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?'), 1 vCPU, 256 MiB, 10.0.2.15 on a tap of L1's bridge (L1: 10.0.2.2)"
  echo "vmm: --net tap=labtap0,mac=..; reference: $("$qemu" --version | head -n1), -M microvm -netdev tap,ifname=labtap0 -device virtio-net-device (no vhost)"
  echo "per boot: $pings pings 0.2 s apart, then $size MiB L1 -> guest and $size MiB guest -> L1 over TCP (nc, dd);"
  echo "$runs boots per VMM, alternating in one L1 boot; medians of the boots that got through ($(bench_counted "$runs" qemu QEMU))"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  echo
  bench_vmm_columns qemu "QEMU microvm" QEMU
  bench_table 46 "${columns[@]}" -- \
    ping_avg_ms:"ping round trip, avg (ms)" \
    l1_to_guest_mbs:"TCP L1 -> guest (MB/s, guest clock)" \
    l1_to_guest_l1_mbs:"TCP L1 -> guest (MB/s, L1 clock, until sent)" \
    guest_to_l1_mbs:"TCP guest -> L1 (MB/s, L1 clock)" \
    guest_to_l1_guest_mbs:"TCP guest -> L1 (MB/s, guest clock)" \
    wall_s:"L2 boot + benchmark, L1 wall (s)"
  echo
  echo "Lower is better for the round trip and the wall time, higher for the rates. Each transfer is timed"
  echo "from its connection to the receiver's end of stream, but L1's clock for L1 -> guest stops when L1's"
  echo "last write was buffered; the guest's clock runs slow in the lab: compare the two VMMs row by row,"
  echo "not the absolute numbers (bench/README.md)."
  echo
  bench_per_boot NET "$log"
} | tee "$out/net_throughput.txt"
bench_all_counted qemu
