#!/usr/bin/env bash
# vsock benchmark: vmm's virtio-vsock (its host side a Unix socket in L1) from L1 to the guest and
# back, in one boot of the nested lab's L1, and, for scale, the same transfers over vmm's
# virtio-net TCP (a tap on a bridge in L1) with the same guest. vmm only: QEMU has no vsock device
# of its own: vhost-vsock-device needs the host kernel's vhost_vsock (L1 has no vhost, nor has this
# machine), vhost-user-vsock-device an external daemon that Debian 12 does not package. See
# bench/README.md.
#
# usage: vsock_throughput.sh [--vmm PATH] [--runs N] [--size MiB] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N      guest boots per transport (default 3)
#   --size MiB    bytes each way per boot (default 64)
#   --out DIR     where the initramfs, logs and vsock_throughput.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm runs=3 size=64 out=$repo/build/bench
bench_options vmm runs size out -- "$@"
bench_positive runs size
[ "$size" -le 512 ] || { echo "vsock_throughput: --size $size: at most 512 MiB" >&2; exit 2; }
bench_lab_setup

# --- inputs: the kernel (the lab's), the lab's tools, an L2 initramfs with vsock and virtio_net ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
lab_build_tools "$out/tools"
"$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --with-net --with-vsock \
  --file "$out/tools/vsockio:/bin/vsockio" --out "$out/l2-vsock.cpio.gz"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$out/l2-vsock.cpio.gz" "${lab_l1_net_modules[@]}"
cp "$out/tools/uds" "$root/bench/uds"
lab_write_l1_net "$root/bench/l1-net.sh"
bench_l1_tcp_peers "$root/bench" # the TCP runs' L1 side
# L1's side: guest boots alternating vsock and tcp, vsock first in each pair. One line per boot:
#   VSOCK-RESULT <vsock|tcp> run=<i> status=<exit status> wall_s=<L1 seconds>
#     to_guest_mbs=.. (the guest's clock: the receiver's) to_guest_l1_mbs=.. (L1's, until its last
#     write was buffered) to_l1_mbs=.. (L1's clock: the receiver's) to_l1_guest_mbs=.. (the
#     guest's: until L1 said it read everything)
# or, when a transfer fell short, VSOCK-RESULT ... failed (...), then the console's tail.
cat >"$root/bench/vsock_init.sh" <<'L1'
KERNEL=/bench/l2/vmlinuz INITRD=/bench/l2/initrd.cpio.gz UDS=/bench/uds SOCK=/tmp/v.sock CID=3
TAP=labtap0 MAC=52:54:00:ab:00:15
TIMEOUT=$((MIB * 4 + 120)) # boot and both transfers at >= 0.5 MB/s
BYTES=$((MIB * 1048576))
export MIB
. /bench/l1-net.sh
now() { cut -d' ' -f1 /proc/uptime; }
mbs() { # mbs BYTES SECONDS: MB/s (10^6 bytes)
  awk -v b="$1" -v s="$2" 'BEGIN { if (b == "" || s == "" || s <= 0) print "-"; else printf "%.1f", b / s / 1e6 }'
}
span() { awk '{ printf "%.2f", $2 - $1 }' "$1" 2>/dev/null; }
# stat_of FIELD TEXT: FIELD's value in TEXT's words FIELD=VALUE (a relay tool's "<tool>: in=.. out=..
# seconds=.." line, with what the guest put before it)
stat_of() { echo " $2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p" | head -n1; }
console_tail() {
  echo "--- $1 run $2: last lines of the L2 console ---"
  tail -n 25 "$3" | sed 's/^/  | /'
  echo "--- end ---"
}

# vsock: L1 -> guest through vmm's socket (CONNECT 5000) once the guest listens; guest -> L1
# arrives at <socket>_6000, where L1 counts it and answers with the count.
run_vsock() {
  run=$1 console=/tmp/vsock-$1.console
  rm -f /tmp/vs-*.err /tmp/vs-uds.pid
  [ -p /tmp/vs-answer ] || mkfifo /tmp/vs-answer
  # shellcheck disable=SC2016,SC2094 # $$ expands in that sh; the fifo is read and written on purpose
  sh -c 'echo $$ >/tmp/vs-uds.pid; exec /bench/uds -v listen /tmp/v.sock_6000' </tmp/vs-answer \
    2>/tmp/vs-take.err | wc -c >/tmp/vs-answer &
  listen_pid=$!
  start=$(now)
  /usr/local/bin/vmm --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory 256M --timeout "$TIMEOUT" \
    --cmdline "console=ttyS0 panic=-1 vmmtest=vsockbench vsockbench=$MIB" --vsock "cid=$CID,socket=$SOCK" \
    </dev/null >"$console" 2>&1 &
  pid=$!
  i=0
  while ! grep -q VMM-L2-VSOCKBENCH-LISTENING "$console" && kill -0 $pid 2>/dev/null && [ $i -lt $((TIMEOUT * 5)) ]; do
    sleep 0.2
    i=$((i + 1))
  done
  if grep -q VMM-L2-VSOCKBENCH-LISTENING "$console"; then
    dd if=/dev/zero bs=64k count=$((MIB * 16)) 2>/dev/null | timeout "$TIMEOUT" "$UDS" -v connect "$SOCK" 5000 \
      >/dev/null 2>/tmp/vs-serve.err
  fi
  wait $pid
  status=$?
  wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  [ -s /tmp/vs-uds.pid ] && kill "$(cat /tmp/vs-uds.pid)" 2>/dev/null # the guest never connected
  wait $listen_pid 2>/dev/null
  tr -d '\r' <"$console" >"$console.txt"
  rx=$(sed -n 's/^VMM-L2-VSOCKBENCH-RX //p' "$console.txt") tx=$(sed -n 's/^VMM-L2-VSOCKBENCH-TX //p' "$console.txt")
  serve=$(tail -n1 /tmp/vs-serve.err 2>/dev/null) take=$(tail -n1 /tmp/vs-take.err 2>/dev/null)
  if [ "$(stat_of in "$rx")" = "$BYTES" ] && [ "$(stat_of in "$take")" = "$BYTES" ] && [ "$(stat_of ack "$tx")" = "$BYTES" ]; then
    echo "VSOCK-RESULT vsock run=$run status=$status wall_s=$wall to_guest_mbs=$(mbs $BYTES "$(stat_of seconds "$rx")")" \
      "to_guest_l1_mbs=$(mbs $BYTES "$(stat_of seconds "$serve")") to_l1_mbs=$(mbs $BYTES "$(stat_of seconds "$take")")" \
      "to_l1_guest_mbs=$(mbs $BYTES "$(stat_of seconds "$tx")")"
  else
    echo "VSOCK-RESULT vsock run=$run status=$status wall_s=$wall failed (bytes in: guest '$(stat_of in "$rx")'," \
      "L1 '$(stat_of in "$take")', guest's answer '$(stat_of ack "$tx")' of $BYTES; L1: '$serve' '$take')"
    console_tail vsock "$run" "$console.txt"
  fi
}

# tcp: the lab's netbench guest (net_throughput.sh's transfers, 3 pings first) with vmm's virtio-net.
run_tcp() {
  run=$1 console=/tmp/tcp-$1.console
  rm -f /tmp/serve.time /tmp/take.time /tmp/take.dd
  nc -l -p 5001 -e /bench/serve.sh &
  serve_pid=$!
  nc -l -p 5002 -e /bench/take.sh &
  take_pid=$!
  nc -l -p 5003 -e /bench/ack.sh &
  ack_pid=$!
  start=$(now)
  /usr/local/bin/vmm --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory 256M --timeout "$TIMEOUT" \
    --cmdline "console=ttyS0 panic=-1 vmmtest=netbench netbench=$MIB,3 vmmnet=10.0.2.15/24 vmmpeer=10.0.2.2" \
    --net "tap=$TAP,mac=$MAC" </dev/null >"$console" 2>&1
  status=$?
  wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  kill "$serve_pid" "$take_pid" "$ack_pid" 2>/dev/null
  wait "$serve_pid" "$take_pid" "$ack_pid" 2>/dev/null
  tr -d '\r' <"$console" >"$console.txt"
  rx_blocks=$(sed -n 's/^VMM-L2-NETBENCH-RX blocks=\([0-9]*\)+.*/\1/p' "$console.txt")
  rx_s=$(sed -n 's/^VMM-L2-NETBENCH-RX .*seconds=\([0-9.]*\).*/\1/p' "$console.txt")
  tx_s=$(sed -n 's/^VMM-L2-NETBENCH-TX seconds=\([0-9.]*\).*/\1/p' "$console.txt")
  take_blocks=$(sed -n 's/^\([0-9]*\)+.* records in/\1/p' /tmp/take.dd 2>/dev/null)
  if [ "$rx_blocks" = $((MIB * 16)) ] && [ "$take_blocks" = $((MIB * 16)) ] && [ -n "$tx_s" ]; then
    echo "VSOCK-RESULT tcp run=$run status=$status wall_s=$wall to_guest_mbs=$(mbs $BYTES "$rx_s")" \
      "to_guest_l1_mbs=$(mbs $BYTES "$(span /tmp/serve.time)") to_l1_mbs=$(mbs $BYTES "$(span /tmp/take.time)")" \
      "to_l1_guest_mbs=$(mbs $BYTES "$tx_s")"
  else
    echo "VSOCK-RESULT tcp run=$run status=$status wall_s=$wall failed (blocks in: guest ${rx_blocks:-?}, L1 ${take_blocks:-?} of $((MIB * 16)))"
    console_tail tcp "$run" "$console.txt"
  fi
}

echo "VSOCK-START runs=$RUNS mib=$MIB l1-uptime=$(now)"
[ -c /dev/kvm ] || echo "VSOCK-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
l1_net_up labbr0 10.0.2.2/24 "$TAP" || echo "VSOCK-ERROR L1 cannot set up its bridge and tap"
run=1
while [ $run -le "$RUNS" ]; do
  run_vsock "$run"
  run_tcp "$run"
  run=$((run + 1))
done
echo "VSOCK-END l1-uptime=$(now)"
L1
bench_l1_init "$root" /bench/vsock_init.sh vsockruns=RUNS vsockmib=MIB
l1_cpio=$out/l1-vsock.cpio
lab_pack_cpio "$root" "$l1_cpio"
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" "vsockruns=$runs vsockmib=$size"
per_boot=$((size * 4 + 120))
log=$out/l1-vsock-console.log
bench_boot_l1 "$log" VSOCK-END '^(VSOCK-|--- |  \| )' $((180 + 2 * runs * per_boot)) $((per_boot + 30)) \
  "$runs boots per transport" "${l1_command[@]}"
results=$out/vsock_results.txt
grep '^VSOCK-RESULT ' "$log" >"$results" || true

# --- the table ---
bench_describe
{
  echo "vmm vsock benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?'), 1 vCPU, 256 MiB"
  echo "vsock: --vsock cid=3,socket=/tmp/v.sock; L1's side is tools/uds (CONNECT 5000; listening on /tmp/v.sock_6000),"
  echo "  the guest's tools/vsockio; TCP: --net tap=labtap0 on L1's bridge, busybox nc + dd (net_throughput.sh's transfers)"
  echo "no QEMU column: QEMU's vsock is vhost-vsock (L1 has no vhost) or vhost-user-vsock (no daemon in Debian 12)"
  echo "per boot: $size MiB of zeros L1 -> guest, then $size MiB guest -> L1; $runs boots per transport,"
  echo "alternating in one L1 boot; medians of the boots that got through (vsock $(count_ok vsock)/$runs, TCP $(count_ok tcp)/$runs)"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  echo
  bench_table 46 vsock=vsock tcp="TCP (virtio-net)" vsock/tcp=vsock/TCP -- \
    to_guest_mbs:"L1 -> guest (MB/s, guest clock)" \
    to_guest_l1_mbs:"L1 -> guest (MB/s, L1 clock, until sent)" \
    to_l1_mbs:"guest -> L1 (MB/s, L1 clock)" \
    to_l1_guest_mbs:"guest -> L1 (MB/s, guest clock, until acked)" \
    wall_s:"L2 boot + benchmark, L1 wall (s)"
  echo
  echo "Higher is better for the rates. Each transfer is timed from its connection to the receiver's end of"
  echo "stream (the receiver's clock), or by the sender until its last write was buffered (L1 -> guest, L1's"
  echo "clock) or until L1 said it had everything (guest -> L1, the guest's clock); the guest's clock runs slow"
  echo "in the lab: compare the columns row by row, not the absolute numbers (bench/README.md)."
  echo
  bench_per_boot VSOCK "$log"
} | tee "$out/vsock_throughput.txt"
[ "$(count_ok vsock)" -gt 0 ]
