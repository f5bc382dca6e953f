#!/bin/sh
# The snapshot benchmark's side inside the nested lab's L1 (busybox sh, run by the /init snapshot.sh
# writes). One L1 boot, four parts, each printing one line per measurement, "BENCH-RESULT KIND
# run=N NAME=VALUE ..." (a failed one says "failed" or has a status other than 0, and is followed
# by its evidence between "--- ..." and "--- end ---" lines):
#  1. Cold boots of the echo guest (vmmtest=echo, 256 MiB) under bench/stamp, BENCH_RUNS rounds of
#     QEMU and each vmm of BENCH_KINDS (vmm, vmm-baseline: the build before guest RAM became a
#     memfd), timed to the guest's answer to a line stamp types once it says it is ready:
#     KIND boot-qemu, boot-vmm, boot-vmm-baseline (stamp's fields, l2_uptime_s, vcpu_start_ms).
#     And vmm once more with L1's shmem THP at "advise" for its boots (vmm-shmem-thp).
#  2. Restore to ready: the echo guest snapshotted at its prompt (vmm snapshot --paused; QEMU stop,
#     then migrate to a file), then BENCH_RUNS restores each, the line typed at once, timed to the
#     answer: KIND restore-qemu, restore-vmm.
#  3. Snapshot time: the ticker guest (vmmtest=ticker) at 256 and 1024 MiB, per VMM one boot and
#     BENCH_RUNS snapshots, each timed by stamp from the request's exec to its exit, then resumed:
#     KIND ticker-<vmm|qemu>-<MiB> (the running guest's memory before the first snapshot) and
#     snapshot-<vmm|qemu>-<MiB> (ms, status, disk_kib: the snapshot's size on L1's tmpfs).
#  4. Clones: for each count of BENCH_CLONES, that many vmm --restore of the 256 MiB ticker snapshot
#     at once; once each has printed two ticks, the sum of their memory and the snapshot's size:
#     KIND clones-<count>.
# BENCH-START first, BENCH-END at the end. Paths are where snapshot.sh puts things in L1's initramfs.

# shellcheck source=bench/lab_stamp.sh
. /bench/lab_stamp.sh
# shellcheck source=/dev/null # bench_lib.sh's bench_l1_each_boot writes it
. /bench/each_boot.sh
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_KINDS=${BENCH_KINDS:-vmm}
BENCH_CLONES=${BENCH_CLONES:-1,4,16}
VMM=/usr/local/bin/vmm
QEMU=/usr/bin/qemu-system-x86_64
KERNEL=/bench/l2/vmlinuz
INITRD=/bench/l2/initrd.cpio.gz
UDS=/bench/uds
QMP=/bench/qmp
API=/tmp/api.sock
QMP_SOCKET=/tmp/qmp.sock
ECHO_CMDLINE="console=ttyS0 panic=-1 vmmtest=echo"
TICKER_CMDLINE="console=ttyS0 panic=-1 vmmtest=ticker vmmticks=1000000"
READY="VMM-L2-ECHO-READY"
# The echo guest's answer, "VMM-L2-ECHO:<the line it read>". Only its start: QEMU takes the first
# byte typed into a restore before the incoming migration is in, and the migrated UART state then
# drops it (QEMU 7.2), so its guest answers "ing" to "ping".
ANSWER="VMM-L2-ECHO:"
ECHO_MIB=256
STAMP_SEND=ping
# Whether vmm's guest RAM, a memfd, gets huge pages: its MADV_HUGEPAGE counts for shmem only when
# this says advise (or more). Anonymous memory (the vmm before the memfd, QEMU) follows
# transparent_hugepage/enabled instead.
SHMEM_THP=/sys/kernel/mm/transparent_hugepage/shmem_enabled
thp_setting() { sed 's/.*\[\(.*\)\].*/\1/' "$1" 2>/dev/null; }
shmem_thp_default=$(thp_setting "$SHMEM_THP")

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }

# QEMU's options for every L2 guest here but its memory and kernel (boot_time.sh's).
qemu_flags="-M microvm,rtc=on -accel kvm -cpu host -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot"

# evidence WHAT LOG [ERRLOG]: the tails of a failed step's console and stderr.
evidence() {
  echo "--- $1: last lines of the L2 console ---"
  tail -n 20 "$2" 2>/dev/null | tr -d '\r' | sed 's/^/  | /'
  if [ -n "${3:-}" ]; then
    echo "--- $1: last lines of its stderr ---"
    tail -n 10 "$3" 2>/dev/null | sed 's/^/  | /'
  fi
  echo "--- end ---"
}

# wait_for LOG TEXT SECONDS PID: true once TEXT is in LOG; false if PID ends or time runs out first.
wait_for() {
  wait_deadline=$(awk -v u="$(uptime_s)" -v s="$3" 'BEGIN { print u + s }')
  while ! grep -qF "$2" "$1" 2>/dev/null; do
    kill -0 "$4" 2>/dev/null || return 1
    awk -v u="$(uptime_s)" -v d="$wait_deadline" 'BEGIN { exit !(u > d) }' && return 1
    sleep 0.2
  done
}

# last_tick LOG: the ticker guest's last tick number in LOG (-1 if none).
last_tick() {
  n=$(tr -d '\r' <"$1" | sed -n 's/^VMM-L2-TICK \([0-9]*\) .*/\1/p' | tail -n1)
  echo "${n:--1}"
}

# rollup PID FIELD...: the sum of those fields of PID's /proc/PID/smaps_rollup, in KiB (0 if gone).
rollup() {
  rollup_pid=$1
  shift
  [ -r "/proc/$rollup_pid/smaps_rollup" ] || { echo 0; return; }
  awk -v fields=" $* " 'index(fields, " " substr($1, 1, length($1) - 1) " ") { s += $2 } END { print s + 0 }' \
    "/proc/$rollup_pid/smaps_rollup"
}

# --- 1. cold boots to the echo, QEMU and each vmm (each_boot's run_one) ---
run_one() {
  kind=$1 run=$2
  case $kind in
    qemu)
      # shellcheck disable=SC2086 # qemu_flags is a list of words
      set -- "$QEMU" $qemu_flags -m "$ECHO_MIB" -kernel "$KERNEL" -initrd "$INITRD" -append "$ECHO_CMDLINE" ;;
    *)
      bin=/usr/local/bin/$kind
      if [ "$kind" = vmm-shmem-thp ]; then
        bin=$VMM
        echo advise >"$SHMEM_THP"
      fi
      set -- "$bin" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory "${ECHO_MIB}M" \
        --cmdline "$ECHO_CMDLINE" --timeout "$L2_TIMEOUT" -vv ;;
  esac
  STAMP_SEND_AFTER=$READY
  stamp_boot "boot-$kind" "$run" "$ANSWER" "$ECHO_MIB" "$@"
  echo "$shmem_thp_default" >"$SHMEM_THP"
  up=$(sed -n 's/.*VMM-L2-UP .*uptime=\([0-9.]*\).*/\1/p' "$console" | head -n1)
  extra=" l2_uptime_s=${up:--1}"
  [ "$kind" = boot-qemu ] || extra="$extra vcpu_start_ms=$(vmm_vcpu_start_ms)" # stamp_boot set kind
  stamp_report "$extra"
}

# --- 2. restore to ready ---
# echo_sources: the echo guest booted once per VMM with its control socket, snapshotted at its
# prompt into /tmp/snap-echo (vmm) and /tmp/qemu-echo.mig (QEMU), then ended. Sets have_vmm_echo and
# have_qemu_echo (1 if there is a snapshot to restore).
echo_sources() {
  have_vmm_echo=0 have_qemu_echo=0
  rm -rf /tmp/snap-echo /tmp/qemu-echo.mig "$API" "$QMP_SOCKET"
  "$VMM" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory "${ECHO_MIB}M" --cmdline "$ECHO_CMDLINE" \
    --api-socket "$API" --timeout 300 </dev/null >/tmp/source-vmm.log 2>&1 &
  pid=$!
  if ! wait_for /tmp/source-vmm.log "$READY" 120 "$pid"; then
    echo "BENCH-RESULT source-vmm run=1 failed: the echo guest never got ready"
    evidence "vmm's echo source" /tmp/source-vmm.log
  elif ! out=$("$VMM" snapshot --api-socket "$API" --paused /tmp/snap-echo 2>&1); then
    echo "BENCH-RESULT source-vmm run=1 failed: vmm snapshot: $out"
  else
    have_vmm_echo=1
  fi
  "$UDS" request "$API" '{"command":"stop"}' >/dev/null 2>&1 || kill "$pid" 2>/dev/null
  wait "$pid"
  # shellcheck disable=SC2086 # qemu_flags is a list of words
  "$QEMU" $qemu_flags -m "$ECHO_MIB" -kernel "$KERNEL" -initrd "$INITRD" -append "$ECHO_CMDLINE" \
    -qmp "unix:$QMP_SOCKET,server=on,wait=off" -global migration.store-global-state=off \
    </dev/null >/tmp/source-qemu.log 2>&1 &
  pid=$!
  # The migration stream then leaves out the run state (stopped): the restore starts the guest by
  # itself, as vmm's does, instead of waiting for a "cont".
  if ! wait_for /tmp/source-qemu.log "$READY" 120 "$pid"; then
    echo "BENCH-RESULT source-qemu run=1 failed: the echo guest never got ready"
    evidence "QEMU's echo source" /tmp/source-qemu.log
  elif ! out=$("$QMP" "$QMP_SOCKET" '{"execute":"stop"}' \
    '{"execute":"migrate","arguments":{"uri":"exec:cat >/tmp/qemu-echo.mig"}}' 2>&1); then
    echo "BENCH-RESULT source-qemu run=1 failed: $out"
  else
    have_qemu_echo=1
  fi
  "$QMP" "$QMP_SOCKET" '{"execute":"quit"}' >/dev/null 2>&1 || kill "$pid" 2>/dev/null
  wait "$pid"
  echo "BENCH-RESULT echo-snapshots run=1 vmm_kib=$(du -sk /tmp/snap-echo 2>/dev/null | cut -f1)" \
    "vmm_memory_file_kib=$(du -k /tmp/snap-echo/memory 2>/dev/null | cut -f1)" \
    "qemu_kib=$(du -k /tmp/qemu-echo.mig 2>/dev/null | cut -f1)"
}

restore_one() {
  kind=$1 run=$2
  case $kind in
    qemu)
      # shellcheck disable=SC2086 # qemu_flags is a list of words
      set -- "$QEMU" $qemu_flags -m "$ECHO_MIB" -kernel "$KERNEL" -initrd "$INITRD" -append "$ECHO_CMDLINE" \
        -incoming "exec:cat /tmp/qemu-echo.mig" ;;
    vmm) set -- "$VMM" --restore /tmp/snap-echo --timeout "$L2_TIMEOUT" -vv ;;
  esac
  STAMP_SEND_AFTER=""
  stamp_boot "restore-$kind" "$run" "$ANSWER" "$ECHO_MIB" "$@"
  extra=""
  [ "$kind" = restore-qemu ] || extra=" vcpu_start_ms=$(vmm_vcpu_start_ms)"
  stamp_report "$extra"
}

# --- 3. snapshot time ---
# ticker_boot KIND MIB: the ticker guest on KIND (vmm or qemu) in the background, with its control
# socket; sets pid and log.
ticker_boot() {
  log=/tmp/ticker-$1-$2.log
  rm -f "$API" "$QMP_SOCKET"
  case $1 in
    vmm)
      "$VMM" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory "$2M" --cmdline "$TICKER_CMDLINE" \
        --api-socket "$API" --timeout 900 </dev/null >"$log" 2>&1 & ;;
    qemu)
      # shellcheck disable=SC2086 # qemu_flags is a list of words
      "$QEMU" $qemu_flags -m "$2" -kernel "$KERNEL" -initrd "$INITRD" -append "$TICKER_CMDLINE" \
        -qmp "unix:$QMP_SOCKET,server=on,wait=off" </dev/null >"$log" 2>&1 & ;;
  esac
  pid=$!
}

# snapshot_series KIND MIB: one ticker guest, BENCH_RUNS snapshots of it, each resumed after.
# The vmm 256 MiB guest's last snapshot stays in /tmp/snap-vmm-256-<BENCH_RUNS> for the clones.
snapshot_series() {
  kind=$1 mib=$2
  ticker_boot "$kind" "$mib"
  if ! wait_for "$log" "VMM-L2-TICK 5 " 120 "$pid"; then
    echo "BENCH-RESULT ticker-$kind-$mib run=1 failed: the ticker guest printed no 6 ticks"
    evidence "$kind's $mib MiB ticker guest" "$log"
    kill "$pid" 2>/dev/null
    wait "$pid"
    return
  fi
  echo "BENCH-RESULT ticker-$kind-$mib run=1 rss_kib=$(rollup "$pid" Rss) pss_kib=$(rollup "$pid" Pss)"
  run=1
  while [ "$run" -le "$BENCH_RUNS" ]; do
    dir=/tmp/snap-$kind-$mib-$run
    rm -rf "$dir"
    case $kind in
      vmm) set -- written "$VMM" snapshot --api-socket "$API" --paused "$dir" ;;
      qemu)
        mkdir -p "$dir"
        set -- completed "$QMP" "$QMP_SOCKET" '{"execute":"stop"}' \
          "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat >$dir/migration\"}}" ;;
    esac
    done_text=$1
    shift
    "$STAMP" --marker "$done_text" --guest-mem 1 --log "/tmp/snapshot-$kind-$mib-$run.out" \
      --timeout 300 -- "$@" </dev/null >/tmp/snapshot.stamp 2>/tmp/snapshot.err
    ms=$(sed -n 's/.* exit_ms=\([0-9.]*\) .*/\1/p' /tmp/snapshot.stamp)
    status=$(sed -n 's/.* status=\([0-9]*\) .*/\1/p' /tmp/snapshot.stamp)
    qemu_ms=$(sed -n 's/.*"total-time": \([0-9]*\).*/\1/p' "/tmp/snapshot-$kind-$mib-$run.out")
    before=$(last_tick "$log")
    case $kind in
      vmm) "$UDS" request "$API" '{"command":"resume"}' >/tmp/resume.out 2>&1 ;;
      qemu) "$QMP" "$QMP_SOCKET" '{"execute":"cont"}' >/tmp/resume.out 2>&1 ;;
    esac
    resumed=yes
    wait_for "$log" "VMM-L2-TICK $((before + 1)) " 60 "$pid" || resumed=no
    echo "BENCH-RESULT snapshot-$kind-$mib run=$run ms=${ms:--1} status=${status:--1}" \
      "disk_kib=$(du -sk "$dir" | cut -f1)${qemu_ms:+ qemu_total_ms=$qemu_ms} resumed=$resumed"
    if [ "${status:-1}" != 0 ] || [ $resumed = no ]; then
      echo "--- snapshot-$kind-$mib run $run: the request's output, stderr, the resume's answer ---"
      cat "/tmp/snapshot-$kind-$mib-$run.out" /tmp/snapshot.err /tmp/resume.out 2>/dev/null | sed 's/^/  | /'
      echo "--- end ---"
    fi
    [ "$kind/$mib/$run" = "vmm/256/$BENCH_RUNS" ] || rm -rf "$dir"
    run=$((run + 1))
  done
  case $kind in
    vmm) "$UDS" request "$API" '{"command":"stop"}' >/dev/null 2>&1 || kill "$pid" 2>/dev/null ;;
    qemu) "$QMP" "$QMP_SOCKET" '{"execute":"quit"}' >/dev/null 2>&1 || kill "$pid" 2>/dev/null ;;
  esac
  wait "$pid"
}

# --- 4. clones ---
# clones COUNT: COUNT restores of the 256 MiB ticker snapshot at once; once each has printed two
# ticks (or after 60 s + 10 s per clone), the sums of their smaps_rollup; then they are stopped.
clones() {
  count=$1 snap=/tmp/snap-vmm-256-$BENCH_RUNS pids="" i=1
  start=$(uptime_s)
  while [ "$i" -le "$count" ]; do
    "$VMM" --restore "$snap" --timeout 900 </dev/null >"/tmp/clone-$count-$i.log" 2>&1 &
    pids="$pids $!"
    echo $! >"/tmp/clone-$count-$i.pid"
    i=$((i + 1))
  done
  deadline=$(awk -v u="$start" -v n="$count" 'BEGIN { print u + 60 + 10 * n }')
  # One process per look, every 0.5 s: the clones have L1's two CPUs to share already.
  while :; do
    ticking=$(awk -v d="$deadline" -v u="$(uptime_s)" '/^VMM-L2-TICK / { ticks[FILENAME]++ }
      END { for (f in ticks) if (ticks[f] >= 2) n++; print n + 0; exit (u > d) ? 2 : 0 }' /tmp/clone-"$count"-*.log) ||
      break
    [ "$ticking" -eq "$count" ] && break
    sleep 0.5
  done
  wall=$(since "$start")
  # Anonymous: what is a clone's own, its copies of the guest pages it wrote and vmm's own memory.
  # (Not Private_Dirty: tmpfs pages are always dirty, so a snapshot page only one clone maps counts
  # there too.)
  pss=0 rss=0 anon=0 alive=0
  for p in $pids; do
    kill -0 "$p" 2>/dev/null && alive=$((alive + 1))
    pss=$((pss + $(rollup "$p" Pss)))
    rss=$((rss + $(rollup "$p" Rss)))
    anon=$((anon + $(rollup "$p" Anonymous)))
  done
  echo "BENCH-RESULT clones-$count run=1 clones=$count ticking=$ticking alive=$alive ticking_s=$wall" \
    "pss_kib=$pss pss_per_clone_kib=$((pss / count)) rss_kib=$rss anon_kib=$anon" \
    "snapshot_kib=$(du -sk "$snap" | cut -f1)$([ "$ticking" -eq "$count" ] || echo ' failed')"
  i=1
  while [ "$i" -le "$count" ]; do
    if [ "$(grep -c '^VMM-L2-TICK ' "/tmp/clone-$count-$i.log")" -lt 2 ]; then
      # Whether it ran and printed nothing, or never ran: each thread's CPU time.
      echo "--- clone $i of $count: its threads' CPU time (user + system, in clock ticks) ---"
      for task in /proc/"$(cat "/tmp/clone-$count-$i.pid")"/task/*; do
        echo "  | $(cat "$task/comm"): $(awk '{ print $14 + $15 }' "$task/stat")"
      done
      evidence "clone $i of $count" "/tmp/clone-$count-$i.log"
    fi
    i=$((i + 1))
  done
  # shellcheck disable=SC2086 # a word per pid
  kill $pids 2>/dev/null
  for p in $pids; do { wait "$p"; } 2>/dev/null; done # no "Terminated" on the console
  rm -f /tmp/clone-"$count"-*.log /tmp/clone-"$count"-*.pid
}

echo "BENCH-START runs=$BENCH_RUNS kinds=$BENCH_KINDS clones=$BENCH_CLONES l1-uptime=$(uptime_s)" \
  "kernel=$(uname -r) cpus=$(grep -c '^processor' /proc/cpuinfo) mem_mib=$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" \
  "thp=$(thp_setting /sys/kernel/mm/transparent_hugepage/enabled) shmem_thp=$shmem_thp_default"
if [ ! -c /dev/kvm ]; then
  echo "BENCH-ERROR L1 has no /dev/kvm (kvm-amd did not load)"
  echo "BENCH-END"
  exit 1
fi
# An idle VM held open all along: L1 wedges less (guest-tests/linux/tools/kvm-hold.c says why).
/bench/kvm-hold &
hold=$!

echo "BENCH-PART cold boots to the echo l1-uptime=$(uptime_s)"
kinds=$BENCH_KINDS
[ -w "$SHMEM_THP" ] && [ "$shmem_thp_default" != advise ] && kinds="$kinds,vmm-shmem-thp"
each_boot "$BENCH_RUNS" "$kinds"

echo "BENCH-PART restore to the echo l1-uptime=$(uptime_s)"
echo_sources
run=1
while [ "$run" -le "$BENCH_RUNS" ]; do
  [ "$have_qemu_echo" = 1 ] && restore_one qemu "$run"
  [ "$have_vmm_echo" = 1 ] && restore_one vmm "$run"
  run=$((run + 1))
done
rm -rf /tmp/snap-echo /tmp/qemu-echo.mig

echo "BENCH-PART snapshot time l1-uptime=$(uptime_s)"
for mib in 256 1024; do
  snapshot_series qemu "$mib"
  snapshot_series vmm "$mib"
done

echo "BENCH-PART clones l1-uptime=$(uptime_s)"
if [ -s "/tmp/snap-vmm-256-$BENCH_RUNS/manifest.json" ]; then
  for count in $(echo "$BENCH_CLONES" | tr , ' '); do clones "$count"; done
else
  echo "BENCH-RESULT clones run=1 failed: no 256 MiB ticker snapshot to clone"
fi

kill "$hold"
echo "BENCH-END l1-uptime=$(uptime_s)"
