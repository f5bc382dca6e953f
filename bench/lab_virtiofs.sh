#!/bin/sh
# The virtio-fs benchmark's side inside the nested lab's L1 (busybox sh, run by the /init virtiofs.sh
# writes). One L1 boot, two parts, each printing one line per measurement, "BENCH-RESULT KIND run=N
# NAME=VALUE ..." (a failed one says "failed" and is followed by its evidence between "--- ..." and
# "--- end ---" lines):
#  1. A warm-up round, then BENCH_FS_RUNS rounds of QEMU, vmm and vmm run, each a guest that untars /share/tree.tar into
#     /share/tree (L1's tmpfs, shared as "bench" through virtiofsd), then runs find and grep -r over
#     it, timing each step by its own clock (steps.sh, below): KIND fs-qemu, fs-vmm, fs-vmm-run
#     (untar_s, find_s, grep_s, entries, matches, exit_s, status, maxrss_mib; the warm-up round's
#     kinds are warmup-fs-*). QEMU's virtiofsd is
#     started here with vmm's options; vmm starts its own.
#  2. BENCH_RUNS rounds of vmm booting the lab's L2 initramfs to its marker (KIND boot-marker) and
#     vmm run -- true (KIND run-true), each under bench/stamp: marker_ms, exit_ms, status,
#     vcpu_start_ms, maxrss_mib.
# BENCH-START first, BENCH-END at the end. Paths are where virtiofs.sh puts things in L1's initramfs.

# shellcheck source=bench/lab_stamp.sh
. /bench/lab_stamp.sh
BENCH_RUNS=${BENCH_RUNS:-5}
BENCH_FS_RUNS=${BENCH_FS_RUNS:-1}
VMM=/usr/local/bin/vmm
QEMU=/usr/bin/qemu-system-x86_64
VIRTIOFSD=/usr/lib/qemu/virtiofsd
KERNEL=/bench/l2/vmlinuz
MODULES=/bench/l2/package
SHARE=/share
SOCKET=/tmp/virtiofsd.sock
MEM_MIB=1024
FS_TIMEOUT=900 # one untar guest at its worst (s)
RUN_CWD=/tmp/run-cwd # vmm run's working directory (shared too): an empty one

uptime_s() { cut -d' ' -f1 /proc/uptime; }
mkdir -p "$SHARE" "$RUN_CWD"

# The guest's steps, the same file for the three (on the share, outside the tree): $1 is the share's
# path in the guest. The page cache is dropped before find and grep, so that both go through
# virtiofsd rather than the guest's cache (cache=auto keeps what the guest wrote).
cat >"$SHARE/steps.sh" <<'STEPS'
share=$1
now() { cut -d' ' -f1 /proc/uptime; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
cd "$share/tree" || { echo "VMM-FS-ERROR no $share/tree"; exit 1; }
t0=$(now)
tar -xf "$share/tree.tar"
tar_status=$?
sync
t1=$(now)
cold
t2=$(now)
entries=$(find . | wc -l)
t3=$(now)
cold
t4=$(now)
matches=$(grep -r -F VMM_BENCH_NEEDLE . | wc -l)
t5=$(now)
echo "VMM-FS-RESULT untar_s=$(dt "$t0" "$t1") find_s=$(dt "$t2" "$t3") grep_s=$(dt "$t4" "$t5") entries=$entries matches=$matches tar_status=$tar_status"
STEPS
mv /bench/tree.tar "$SHARE/tree.tar"

# stamp_field NAME: NAME's value among stamp's fields ($fields), -1 if missing.
stamp_field() { echo " $fields " | sed -n "s/.* $1=\([-0-9.]*\) .*/\1/p" | grep . || echo -1; }

# failed WHY: the evidence of the measurement that just failed (stamp_boot's console and errlog).
failed() {
  echo "--- $kind run $run: $1; last lines of its output ---"
  tail -n 25 "$console" 2>/dev/null | tr -d '\r' | sed 's/^/  | /'
  echo "--- $kind run $run: last lines of its stderr ---"
  tail -n 15 "$errlog" 2>/dev/null | sed 's/^/  | /'
  echo "--- end ---"
}

# --- 1. untar, find, grep ---
# fs_one VMM RUN [warmup]: one guest; a warm-up one's kind is warmup-fs-VMM (not in the tables).
fs_one() {
  kind=${3:+$3-}fs-$1 run=$2 daemon=""
  rm -rf "$SHARE/tree"
  mkdir "$SHARE/tree"
  case $1 in
    qemu)
      rm -f "$SOCKET"
      "$VIRTIOFSD" --socket-path="$SOCKET" -o source="$SHARE" -o sandbox=chroot -o log_level=err \
        2>/tmp/virtiofsd.err &
      daemon=$!
      i=0
      while [ ! -S "$SOCKET" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
      # vhost-user wants guest RAM it can map (a shared memfd) and a virtio 1.0 device: QEMU's
      # virtio-mmio is legacy unless told (virtiofsd refuses a legacy device).
      set -- "$QEMU" -M microvm,rtc=on,memory-backend=mem -accel kvm -cpu host -smp 1 -m "$MEM_MIB" \
        -object "memory-backend-memfd,id=mem,size=${MEM_MIB}M,share=on" -global virtio-mmio.force-legacy=false \
        -chardev "socket,id=fs,path=$SOCKET" -device vhost-user-fs-device,chardev=fs,tag=bench \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$KERNEL" -initrd /bench/l2/virtiofs.cpio.gz -append "console=ttyS0 panic=-1 quiet" ;;
    vmm)
      set -- "$VMM" --kernel "$KERNEL" --initrd /bench/l2/virtiofs.cpio.gz --cpus 1 --memory "${MEM_MIB}M" \
        --cmdline "console=ttyS0 panic=-1 quiet" --share "$SHARE:bench" --timeout "$FS_TIMEOUT" ;;
    vmm-run)
      set -- "$VMM" run --kernel "$KERNEL" --modules "$MODULES" --memory "${MEM_MIB}M" \
        --share "$SHARE:bench" --timeout "$FS_TIMEOUT" -- sh "$SHARE/steps.sh" "$SHARE" ;;
  esac
  console=/tmp/$kind-$run.console errlog=/tmp/$kind-$run.stderr
  (cd "$RUN_CWD" && "$STAMP" --marker VMM-FS-RESULT --guest-mem "$MEM_MIB" --log "$console" \
    --timeout $((FS_TIMEOUT + 30)) -- "$@" </dev/null >"/tmp/$kind-$run.stamp" 2>"$errlog")
  fields=$(sed -n 's/^STAMP //p' "/tmp/$kind-$run.stamp")
  if [ -n "$daemon" ]; then
    kill "$daemon" 2>/dev/null # it ends with its connection; in case it did not
    wait "$daemon"
  fi
  result=$(tr -d '\r' <"$console" | sed -n 's/^VMM-FS-RESULT //p' | head -n1)
  status=$(stamp_field status)
  line="BENCH-RESULT $kind run=$run ${result:-no-result} status=$status"
  line="$line exit_s=$(awk -v ms="$(stamp_field exit_ms)" 'BEGIN { printf "%.1f", ms < 0 ? -1 : ms / 1000 }')"
  line="$line maxrss_mib=$(awk -v k="$(stamp_field maxrss_kib)" 'BEGIN { printf "%.0f", k < 0 ? -1 : k / 1024 }')"
  why=""
  if [ "$status" != 0 ]; then
    why="status $status"
  elif [ -z "$result" ]; then
    why="no VMM-FS-RESULT line"
  else
    case " $result " in
      *" entries=$BENCH_ENTRIES matches=$BENCH_MATCHES tar_status=0 "*) ;;
      *) why="expected entries=$BENCH_ENTRIES matches=$BENCH_MATCHES tar_status=0" ;;
    esac
  fi
  if [ -n "$why" ]; then
    echo "$line failed"
    failed "$why"
    [ -s /tmp/virtiofsd.err ] && sed 's/^/  | virtiofsd: /' /tmp/virtiofsd.err
  else
    echo "$line"
  fi
  rm -f /tmp/virtiofsd.err
}

# --- 2. vmm run -- true against a boot to the marker ---
boot_one() {
  case $1 in
    boot-marker)
      set -- "$VMM" --kernel "$KERNEL" --initrd /bench/l2/initrd.cpio.gz --cpus 1 --memory "${MEM_MIB}M" \
        --cmdline "console=ttyS0 panic=-1 quiet vmmtest=marker" --timeout "$L2_TIMEOUT" -vv
      marker="VMM-L2-MARKER" ;;
    run-true)
      set -- "$VMM" run --kernel "$KERNEL" --modules "$MODULES" --memory "${MEM_MIB}M" \
        --timeout "$L2_TIMEOUT" -vv -- true
      marker="VMM-NO-MARKER" ;; # true prints nothing: exit_ms is its time
  esac
  (cd "$RUN_CWD" && stamp_boot "$kind" "$run" "$marker" "$MEM_MIB" "$@")
  fields=$(sed -n 's/^STAMP //p' "/tmp/$kind-$run.stamp")
  console=/tmp/$kind-$run.console errlog=/tmp/$kind-$run.stderr
  status=$(stamp_field status)
  line="BENCH-RESULT $kind run=$run $fields vcpu_start_ms=$(vmm_vcpu_start_ms)"
  line="$line maxrss_mib=$(awk -v k="$(stamp_field maxrss_kib)" 'BEGIN { printf "%.1f", k < 0 ? -1 : k / 1024 }')"
  if [ "$status" != 0 ]; then
    echo "$line failed"
    failed "status $status"
  elif [ "$kind" = boot-marker ] && [ "$(stamp_field marker_ms)" = -1 ]; then
    echo "$line failed"
    failed "no marker"
  else
    echo "$line"
  fi
}

echo "BENCH-START runs=$BENCH_RUNS fs_runs=$BENCH_FS_RUNS entries=$BENCH_ENTRIES matches=$BENCH_MATCHES" \
  "l1-uptime=$(uptime_s) kernel=$(uname -r) cpus=$(grep -c '^processor' /proc/cpuinfo)" \
  "mem_mib=$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo) tar_kib=$(du -k "$SHARE/tree.tar" | cut -f1)"
if [ ! -c /dev/kvm ]; then
  echo "BENCH-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
  echo "BENCH-END"
  exit 1
fi
# An idle VM held open all along: L1 wedges less (guest-tests/linux/tools/kvm-hold.c says why).
/bench/kvm-hold &
hold=$!

echo "BENCH-PART untar, find, grep l1-uptime=$(uptime_s)"
# A round first that does not count: in a first try the first two guests of the L1 boot took three
# times as long as the same guests later (L1's TCG translating virtiofsd's and the VMMs' paths anew).
for vmm_kind in qemu vmm vmm-run; do fs_one "$vmm_kind" 0 warmup; done
run=1
while [ "$run" -le "$BENCH_FS_RUNS" ]; do
  for vmm_kind in qemu vmm vmm-run; do fs_one "$vmm_kind" "$run"; done
  run=$((run + 1))
done
rm -rf "$SHARE/tree"

echo "BENCH-PART vmm run -- true, and boots l1-uptime=$(uptime_s)"
run=1
while [ "$run" -le "$BENCH_RUNS" ]; do
  for kind in boot-marker run-true; do boot_one "$kind"; done
  run=$((run + 1))
done

kill "$hold"
echo "BENCH-END l1-uptime=$(uptime_s)"
