#!/bin/sh
# The nested lab's scenarios, run by L1's /init (busybox sh). Each scenario boots a stock Debian kernel
# as the L2 guest with the VMM under test and checks its exit status and serial output; it prints
#   LAB-RESULT <name> PASS|FAIL|SKIP <detail>
# and, at the end, LAB-END <passed> <failed> <skipped>.
#
# Environment:
#   LAB_VMM       which VMMs boot L2, comma-separated, each running every scenario: vmm (default)
#                 and/or qemu (QEMU -M microvm, the reference; its results are named qemu/<scenario>)
#   LAB_VMM_BIN   path of the vmm binary (default /usr/local/bin/vmm)
#   LAB_VMM_ARGS  extra arguments for vmm, space-separated (e.g. "--log-level debug")
#   LAB_ONLY      comma-separated scenario names to run (default: all)
#   LAB_DONE      comma-separated <vmm>/<scenario> results already had (from an L1 that crashed): not rerun
#   LAB_REPEAT    how many times each scenario runs in a row (default 1)
#   LAB_MODE      scenarios (default) or shell: boot the cloud kernel with a shell on this console
#   LAB_L2        where the L2 kernels and initramfs are (default /lab/l2: <flavour>/{vmlinuz,initrd.cpio.gz,pvpanic},
#                 <flavour>/initrd-disk.cpio.gz (+ virtio disk modules, root= switch), <flavour>/root.img.gz
#                 (build-rootfs.sh's image, gzip'd), <flavour>/initrd-net.cpio.gz (+ virtio_net), and
#                 cloud/vmlinux: the same kernel as an ELF image with a PVH note)
#   LAB_L1_NET    shell code defining l1_net_up (lib.sh's lab_write_l1_net; default /lab/l1-net.sh)
#   LAB_UDS       the uds tool (tools/uds.c: the host side of vmm's vsock and control sockets;
#                 default /usr/local/bin/uds)

LAB_VMM=${LAB_VMM:-vmm}
LAB_VMM_BIN=${LAB_VMM_BIN:-/usr/local/bin/vmm}
LAB_L2=${LAB_L2:-/lab/l2}
L2_TIMEOUT=60                        # seconds one L2 boot may take (vmm --timeout; QEMU under timeout)
kernel_file=vmlinuz                   # the L2 kernel image in <flavour>/: vmlinuz (bzImage) or vmlinux (ELF)
L2_HARD_TIMEOUT=$((L2_TIMEOUT + 30)) # the safety net if the VMM ignores its own timeout
L2_MEMORY=256M
all_scenarios="boot-cloud boot-generic boot-pvh cpus-2 cpus-2-noacpi poweroff reboot panic echo rtc disk-root disk-readonly disk-two disk-generic disk-snapshot disk-rate-limit oneline-cloud oneline-generic oneline-readonly oneline-badinit net-ping net-tcp net-two-guests net-no-offload net-mac vsock pause-resume api-socket snapshot-restore snapshot-disk-net clones run run-status run-signals console jail"
# Per run, set by the disk and network scenarios: the L2 initramfs file in <flavour>/, the disks
# (vmm's --disk syntax, PATH[,readonly=on][,serial=ID], space-separated; the first is vda), the network
# devices (vmm's --net syntax, tap=NAME[,mac=MAC], space-separated; the first is eth0) and more
# command line; and more vmm arguments (the vmm-only scenarios: --vsock, --api-socket).
# L2_ONELINE: boot as a user would type it, `vmm --kernel K --disk D --modules PKG` (the one-line
# scenarios).
L2_INITRD=initrd.cpio.gz L2_DISKS="" L2_NETS="" L2_APPEND="" L2_VMM_EXTRA="" L2_ONELINE=""

# Selects the VMM under test: its exit statuses for the guest's poweroff, reboot and panic, and its
# timeout, and the prefix of its result names. QEMU runs with -no-reboot (a reboot exits 0 like a
# poweroff: the console tells them apart) and -action panic=exit-failure (pvpanic -> status 1);
# microvm has no RTC under KVM unless rtc=on.
use_vmm() {
  vmm_kind=$1
  case $vmm_kind in
    vmm) status_poweroff=0 status_reboot=3 status_panic=4 status_timeout=124 prefix="" ;;
    qemu) status_poweroff=0 status_reboot=0 status_panic=1 status_timeout=124 prefix="qemu/" ;;
    *) return 1 ;;
  esac
}

now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

with_timeout() { # with_timeout SECONDS COMMAND...; no limit while L2_TIMEOUT is 0 (the shell)
  if [ "$L2_TIMEOUT" -gt 0 ]; then timeout "$@"; else shift; "$@"; fi
}

# Runs the L2 guest: l2_run FLAVOUR CPUS SCENARIO; stdin/stdout are the guest's serial console.
l2_run() {
  flavour=$1 cpus=$2 scenario=$3
  cmdline="console=ttyS0 panic=-1 vmmtest=$scenario"
  [ "$scenario" = shell ] && cmdline="console=ttyS0 panic=-1 quiet vmmtest=shell" # a person reads this one
  cmdline="$cmdline${L2_APPEND:+ $L2_APPEND}"
  disk_args="" n=0
  for d in $L2_DISKS; do
    case $vmm_kind in
      vmm) disk_args="$disk_args --disk $d" ;;
      qemu) # the same disk as QEMU's drive (raw, read-only or not) on a virtio-mmio transport
        path=${d%%,*} ro="" serial=""
        case ",$d," in *,readonly=on,*) ro=,readonly=on ;; esac
        serial=$(echo ",$d," | sed -n 's/.*,serial=\([^,]*\),.*/,serial=\1/p')
        disk_args="$disk_args -drive id=d$n,file=$path,format=raw,if=none$ro -device virtio-blk-device,drive=d$n$serial" ;;
    esac
    n=$((n + 1))
  done
  net_args="" n=0
  for nic in $L2_NETS; do
    case $vmm_kind in
      vmm) net_args="$net_args --net $nic" ;;
      qemu) # the same tap as QEMU's netdev (no vhost: L1 has none) on a virtio-mmio transport
        tap=$(echo ",$nic," | sed -n 's/.*,tap=\([^,]*\),.*/\1/p')
        mac=$(echo ",$nic," | sed -n 's/.*,mac=\([^,]*\),.*/,mac=\1/p')
        net_args="$net_args -netdev tap,id=n$n,ifname=$tap,script=no,downscript=no -device virtio-net-device,netdev=n$n$mac" ;;
    esac
    n=$((n + 1))
  done
  # shellcheck disable=SC2086 # LAB_VMM_ARGS, disk_args, net_args, L2_VMM_EXTRA are lists of words (no spaces inside)
  case $vmm_kind in
    vmm)
      if [ -n "$L2_ONELINE" ]; then
        # As a user types it: vmm builds the initramfs (from the kernel package's modules) and the
        # command line (root=/dev/vda); the guest's init, given no vmmtest=, does its one-line check.
        with_timeout "$L2_HARD_TIMEOUT" "$LAB_VMM_BIN" --kernel "$LAB_L2/$flavour/$kernel_file" \
          $disk_args --modules "$LAB_L2/$flavour/package" --timeout "$L2_TIMEOUT" $L2_VMM_EXTRA $LAB_VMM_ARGS
        return
      fi
      with_timeout "$L2_HARD_TIMEOUT" "$LAB_VMM_BIN" --kernel "$LAB_L2/$flavour/$kernel_file" \
        --initrd "$LAB_L2/$flavour/$L2_INITRD" --cpus "$cpus" --memory "$L2_MEMORY" \
        --cmdline "$cmdline" --timeout "$L2_TIMEOUT" $disk_args $net_args $L2_VMM_EXTRA $LAB_VMM_ARGS ;;
    qemu)
      with_timeout "$L2_TIMEOUT" qemu-system-x86_64 -M microvm,rtc=on -accel kvm -cpu host -smp "$cpus" \
        -m "$L2_MEMORY" -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -device pvpanic -action panic=exit-failure $disk_args $net_args \
        -kernel "$LAB_L2/$flavour/$kernel_file" -initrd "$LAB_L2/$flavour/$L2_INITRD" -append "$cmdline" ;;
  esac
}

# Busybox's timeout leaves its child killed by SIGTERM (143) where coreutils says 124: one word for both.
normalize_status() {
  if [ "$1" -eq 143 ]; then echo "$status_timeout"; else echo "$1"; fi
}

passed=0 failed=0 skipped=0
logfile() { echo "/tmp/$vmm_kind-$1.log"; }
show_console() { # show_console LABEL LOG: the tail of an L2 console, if it has one
  if [ -s "$2" ]; then
    echo "--- $1: last lines of the L2 console ---"
    tail -n 25 "$2" | sed 's/^/  | /'
    echo "--- end ---"
  fi
}
# A scenario that fails runs again, up to three runs in all (below): a failure before the last run
# is a LAB-RETRY line, with the console's tail, and the last run gives the result ("on a second try"
# or third if a later run passes). L1 under TCG glitches now and then (a Linux guest's triple fault
# mid-boot; a vCPU handed L1's own registers, README.md): in one run of the lab net-tcp glitched on
# two runs in a row, and a glitch should not fail the lab. With LAB_REPEAT above 1 (chasing a rare
# failure) every result stands. At most retry_budget reruns per L1 boot, so that a vmm that fails
# many scenarios for real can't triple the lab's time (a hang costs a scenario's timeout each run).
try=1 last_try=1 retry_wanted=0 retry_budget=6
retries_left=$retry_budget
result() { # result NAME PASS|FAIL|SKIP DETAIL...; on FAIL, the tail of the L2 console follows
  name=$1 verdict=$2; shift 2
  if [ "$verdict" = FAIL ] && [ "$try" -lt "$last_try" ]; then
    if [ "$retries_left" -eq 0 ]; then
      set -- "$@" "(not run again: all $retry_budget reruns of this L1 spent)"
    else
      retries_left=$((retries_left - 1))
      echo "LAB-RETRY $prefix$name $verdict $*"
      show_console "$prefix$name" "$(logfile "$name")"
      retry_wanted=1
      return
    fi
  fi
  if [ "$verdict" = PASS ] && [ "$try" -gt 1 ]; then
    set -- "$@" "on a $([ "$try" = 2 ] && echo second || echo third) try"
  fi
  echo "LAB-RESULT $prefix$name $verdict $*"
  case $verdict in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1))
       show_console "$prefix$name" "$(logfile "$name")" ;;
  esac
}

# verify NAME STATUS EXPECTED_STATUS WALL PATTERN...: true if the status matches and the console has
# every pattern (fixed strings); else false with the reason in $why. Sets $timing either way.
verify() {
  name=$1 status=$2 expected=$3 wall=$4; shift 4
  log=$(logfile "$name")
  up=$(sed -n 's/.*VMM-L2-UP .*uptime=\([0-9.]*\).*/\1/p' "$log" | head -n1)
  timing="wall=${wall}s l2-init=${up:-?}s"
  if [ "$status" -ne "$expected" ]; then
    why="status $status, expected $expected"
    [ "$status" -eq "$status_timeout" ] && why="$why (timeout)"
    return 1
  fi
  for pattern in "$@"; do
    if ! grep -qF -- "$pattern" "$log"; then
      why="status $status ok but console lacks '$pattern'"
      return 1
    fi
  done
}

# check NAME STATUS EXPECTED_STATUS WALL PATTERN...: verify, then the result line.
check() {
  if verify "$@"; then result "$1" PASS "status=$2 $timing"; else result "$1" FAIL "$why; $timing"; fi
}

# run_l2 NAME FLAVOUR CPUS SCENARIO: one L2 boot with its console in NAME's log; sets $status, $wall.
run_l2() {
  start=$(now)
  l2_run "$2" "$3" "$4" </dev/null >"$(logfile "$1")" 2>&1
  status=$(normalize_status $?)
  wall=$(elapsed "$start")
}

# run_simple NAME FLAVOUR CPUS SCENARIO EXPECTED_STATUS PATTERN...
run_simple() {
  name=$1 flavour=$2 cpus=$3 scenario=$4 expected=$5; shift 5
  run_l2 "$name" "$flavour" "$cpus" "$scenario"
  check "$name" "$status" "$expected" "$wall" "$@"
}

scenario_boot_cloud() { run_simple boot-cloud cloud 1 marker "$status_poweroff" VMM-L2-MARKER "reboot: Power down"; }
# The same cloud kernel as an ELF vmlinux: vmm's ELF loader and the PVH 32-bit entry.
scenario_boot_pvh() {
  kernel_file=vmlinux
  run_simple boot-pvh cloud 1 marker "$status_poweroff" VMM-L2-MARKER "reboot: Power down"
  kernel_file=vmlinuz
}
scenario_boot_generic() { run_simple boot-generic generic 1 marker "$status_poweroff" VMM-L2-MARKER "reboot: Power down"; }
# Two vCPUs, seen through the MADT; then with acpi=off through the MP table alone, which only the
# generic kernel reads (CONFIG_X86_MPPARSE, not set in the cloud kernel). Without ACPI the guest
# can't power off: it reboots, by a triple fault (reboot=t), the one reset QEMU's microvm has
# without ACPI (no i8042: Linux's other ways hang there until the timeout).
run_cpus_2() { # run_cpus_2 NAME FLAVOUR APPEND EXPECTED_STATUS
  L2_APPEND=$3
  run_simple "$1" "$2" 2 cpus "$4" VMM-L2-CPUS=2
  L2_APPEND=""
}
scenario_cpus_2() { run_cpus_2 cpus-2 cloud "" "$status_poweroff"; }
scenario_cpus_2_noacpi() { run_cpus_2 cpus-2-noacpi generic "acpi=off reboot=t" "$status_reboot"; }
scenario_poweroff() { run_simple poweroff cloud 1 poweroff "$status_poweroff" "reboot: Power down"; }
scenario_reboot() { run_simple reboot cloud 1 reboot "$status_reboot" "reboot: Restarting system"; }

scenario_panic() {
  case $(cat "$LAB_L2/cloud/pvpanic" 2>/dev/null) in
    builtin | module) ;;
    *) result panic SKIP "the L2 kernel has no pvpanic driver (CONFIG_PVPANIC_MMIO not set)"; return ;;
  esac
  run_simple panic cloud 1 panic "$status_panic" "Kernel panic - not syncing" VMM-L2-PVPANIC=bound
}

# The guest says VMM-L2-ECHO-READY once it reads the console; only then is the line sent, because a
# 16550's FIFO is flushed when the kernel's driver opens the port, so earlier bytes would be lost.
scenario_echo() {
  log=$(logfile echo) fifo=/tmp/echo.in
  rm -f "$fifo" && mkfifo "$fifo"
  exec 3<>"$fifo" # held open read-write: the VMM's stdin neither blocks on open nor sees EOF early
  start=$(now)
  l2_run cloud 1 echo <"$fifo" >"$log" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt $((L2_TIMEOUT * 5)) ] && kill -0 $pid 2>/dev/null; do
    if grep -q VMM-L2-ECHO-READY "$log"; then
      echo hello-lab >&3
      break
    fi
    sleep 0.2
    i=$((i + 1))
  done
  wait $pid
  status=$(normalize_status $?)
  exec 3>&-
  check echo "$status" "$status_poweroff" "$(elapsed "$start")" VMM-L2-ECHO:hello-lab
}

scenario_rtc() {
  start=$(now)
  log=$(logfile rtc)
  l2_run cloud 1 rtc </dev/null >"$log" 2>&1
  status=$(normalize_status $?)
  wall=$(elapsed "$start")
  l1=$(date +%s)
  l2=$(sed -n 's/.*VMM-L2-RTC=\([0-9]*\).*/\1/p' "$log" | head -n1)
  if [ -z "$l2" ]; then
    check rtc "$status" "$status_poweroff" "$wall" "VMM-L2-RTC=<seconds since the epoch>"
    return
  fi
  drift=$((l2 - l1))
  [ $drift -lt 0 ] && drift=$((-drift))
  if [ $drift -gt 60 ]; then
    result rtc FAIL "L2 RTC $l2 vs L1 clock $l1: off by ${drift}s (> 60); wall=${wall}s"
  else
    check rtc "$status" "$status_poweroff" "$wall" "VMM-L2-RTC=$l2"
  fi
}

# --- disks (virtio-blk on virtio-mmio) ---
# Disk images live in L1's /tmp (RAM); each scenario makes fresh ones.
unpack_root_image() { # unpack_root_image NAME FLAVOUR DEST: build-rootfs.sh's image for that kernel; NAME fails if it can't
  gunzip -c "$LAB_L2/$2/root.img.gz" >"$3" && return 0
  result "$1" FAIL "cannot unpack $LAB_L2/$2/root.img.gz"
  return 1
}
sectors_of() { echo $(($(stat -c %s "$1") / 512)); }
with_disks() { # with_disks INITRD DISKS APPEND: the next l2_run's disk setup ("" "" "" to reset)
  L2_INITRD=${1:-initrd.cpio.gz} L2_DISKS=$2 L2_APPEND=$3
}

# check_root_written NAME IMG: the result of a disk-root run that booted well: the guest's file must
# be in the image (debugfs) and the filesystem clean (e2fsck -fn).
check_root_written() {
  if ! content=$(debugfs -R "cat /lab-disk-root.txt" "$2" 2>/dev/null) ||
    [ "$content" != "vmm-lab disk-root: written by the L2 guest" ]; then
    result "$1" FAIL "the guest's file is not in the image (debugfs: '$content'); $timing"
  elif ! e2fsck -fn "$2" >"/tmp/$1.fsck" 2>&1; then
    result "$1" FAIL "e2fsck -fn: $(grep -v '^e2fsck\|^Pass' "/tmp/$1.fsck" | head -n3 | paste -sd' ' -); $timing"
  else
    result "$1" PASS "status=$status file read back, e2fsck clean; $timing"
  fi
}

# The root filesystem on a virtio disk: the initramfs switch_roots to it, its /sbin/init writes a
# file, syncs and remounts / read-only; back in L1 the file must be in the image (debugfs) and the
# filesystem clean (e2fsck -fn).
run_disk_root() {
  name=$1 flavour=$2 img=/tmp/$1.img
  unpack_root_image "$name" "$flavour" "$img" || return
  with_disks initrd-disk.cpio.gz "$img" "root=/dev/vda rw"
  run_l2 "$name" "$flavour" 1 disk-root
  with_disks "" "" ""
  if ! verify "$name" "$status" "$status_poweroff" "$wall" "VMM-L2-SWITCH-ROOT /dev/vda (rw)" \
    "VMM-L2-ROOTFS-UP /dev/vda,ext4,rw" VMM-L2-ROOT=/dev/vda,ext4,rw VMM-L2-DISK-SYNCED "reboot: Power down"; then
    result "$name" FAIL "$why; $timing"
  else
    check_root_written "$name" "$img"
  fi
  rm -f "$img"
}
scenario_disk_root() { run_disk_root disk-root cloud; }

# The one-line boot: `vmm --kernel vmlinuz --disk root.img --modules PKG` and nothing else. vmm reads
# the kernel's release, builds an initramfs from the package's modules (the generic kernel's ext4 is
# one), adds root=/dev/vda rw (ro for a readonly=on disk); its init mounts the disk and runs the
# image's /sbin/init. vmm's alone: QEMU boots no disk without an initramfs.
run_oneline() { # run_oneline NAME FLAVOUR [readonly]
  name=$1 flavour=$2 img=/tmp/$1.img
  vmm_only "$name" "vmm builds the initramfs; QEMU needs one given" || return
  unpack_root_image "$name" "$flavour" "$img" || return
  before=$(sha256sum <"$img")
  disk=$img mode=rw
  [ "${3:-}" = readonly ] && disk=$img,readonly=on mode=ro
  L2_ONELINE=1 L2_DISKS=$disk
  run_l2 "$name" "$flavour" 1 none
  L2_ONELINE="" L2_DISKS=""
  if ! verify "$name" "$status" "$status_poweroff" "$wall" "VMM-L2-ROOTFS-UP /dev/vda,ext4,$mode" \
    "VMM-L2-UP scenario=none" "VMM-L2-ROOT=/dev/vda,ext4,$mode" "reboot: Power down"; then
    result "$name" FAIL "$why; $timing"
  elif [ $mode = ro ]; then
    if ! grep -qF VMM-L2-ROOT-WRITE=refused "$(logfile "$name")"; then
      result "$name" FAIL "the read-only root took a write; $timing"
    elif [ "$(sha256sum <"$img")" != "$before" ]; then
      result "$name" FAIL "the image changed (sha256); $timing"
    else
      result "$name" PASS "status=$status root mounted read-only, write refused, image unchanged; $timing"
    fi
  else
    check_root_written "$name" "$img"
  fi
  rm -f "$img"
}
# vmm's init, when it can't go on: it says what failed on the console and reports a panic (status 4).
scenario_oneline_badinit() {
  name=oneline-badinit img=/tmp/oneline-badinit.img
  vmm_only "$name" "vmm builds the initramfs; QEMU needs one given" || return
  unpack_root_image "$name" cloud "$img" || return
  L2_ONELINE=1 L2_DISKS=$img L2_VMM_EXTRA="--append init=/sbin/nowhere"
  run_l2 "$name" cloud 1 none
  L2_ONELINE="" L2_DISKS="" L2_VMM_EXTRA=""
  check "$name" "$status" "$status_panic" "$wall" "vmm-init: init=/sbin/nowhere: No such file or directory"
  rm -f "$img"
}
scenario_oneline_cloud() { run_oneline oneline-cloud cloud; }
scenario_oneline_generic() { run_oneline oneline-generic generic; }
scenario_oneline_readonly() { run_oneline oneline-readonly cloud readonly; }
# The generic kernel has ext4 as a module: the initramfs loads it (and crc32c) before the mount.
scenario_disk_generic() { run_disk_root disk-generic generic; }

# A read-only disk: the guest sees it read-only, its write is refused, the image is unchanged.
scenario_disk_readonly() {
  img=/tmp/disk-readonly.img
  unpack_root_image disk-readonly cloud "$img" || return
  before=$(sha256sum <"$img")
  with_disks initrd-disk.cpio.gz "$img,readonly=on" ""
  run_l2 disk-readonly cloud 1 disk-ro
  with_disks "" "" ""
  if ! verify disk-readonly "$status" "$status_poweroff" "$wall" \
    "VMM-L2-DISK vda sectors=$(sectors_of "$img") ro=1" "VMM-L2-DISK-WRITE=refused"; then
    result disk-readonly FAIL "$why; $timing"
  elif [ "$(sha256sum <"$img")" != "$before" ]; then
    result disk-readonly FAIL "the image changed (sha256); $timing"
  else
    result disk-readonly PASS "status=$status ro=1, write refused, image unchanged; $timing"
  fi
  rm -f "$img"
}

# Two disks with serials: vda is the first given, vdb the second, each with its size and serial.
scenario_disk_two() {
  a=/tmp/disk-two-a.img b=/tmp/disk-two-b.img
  if ! dd if=/dev/zero of="$a" bs=1M count=8 2>/dev/null || ! dd if=/dev/zero of="$b" bs=1M count=20 2>/dev/null; then
    result disk-two FAIL "cannot make the images in /tmp"
    return
  fi
  with_disks initrd-disk.cpio.gz "$a,serial=lab-disk-a $b,serial=lab-disk-b" ""
  run_l2 disk-two cloud 1 disks
  with_disks "" "" ""
  check disk-two "$status" "$status_poweroff" "$wall" \
    "VMM-L2-DISK vda sectors=$(sectors_of "$a") ro=0 serial=lab-disk-a" \
    "VMM-L2-DISK vdb sectors=$(sectors_of "$b") ro=0 serial=lab-disk-b"
  rm -f "$a" "$b"
}

# --disk IMG,bw=4M,bw_burst=256K: the guest reads the whole 16 MiB disk, cold; then the api socket's
# set-rate-limit halves the limit, and the guest reads it again. Each rate, by the guest's clock, must
# be within 10% of its limit (3.6 to 4.4 MiB/s, then 1.8 to 2.2: unlimited, the lab reads it several
# times faster). vmm's alone: QEMU's throttling has options of its own.
scenario_disk_rate_limit() {
  vmm_only disk-rate-limit "it checks vmm's --disk bw= limit" || return
  img=/tmp/disk-rate-limit.img
  if ! dd if=/dev/zero of="$img" bs=1M count=16 2>/dev/null; then
    result disk-rate-limit FAIL "cannot make the image in /tmp"
    return
  fi
  rm -f /tmp/api.err
  with_disks initrd-disk.cpio.gz "$img,bw=4M,bw_burst=256K" ""
  l2_start disk-rate-limit disk-read 1 "--api-socket $API_SOCKET" vmmreads=2 initrd-disk.cpio.gz
  log=$(logfile disk-rate-limit) why=""
  # After the first read, the limit halves through the api socket (the guest waits 3 s).
  if ! wait_console "$log" "$pid" "VMM-L2-DISK-READ " 60; then
    why="no first read"
  elif ! answer=$(api "$API_SOCKET" '{"command":"set-rate-limit","device":"disk0","bw":"2M"}') ||
    case $answer in *'"ok":true'*'"bw":2097152,'*) false ;; *) true ;; esac; then
    why="set-rate-limit answered '$answer' $(tail -n1 /tmp/api.err)"
  fi
  wait "$pid"
  status=$(normalize_status $?)
  wall=$(elapsed "$start")
  with_disks "" "" ""
  if [ -n "$why" ]; then
    result disk-rate-limit FAIL "$why; wall=${wall}s"
  elif ! verify disk-rate-limit "$status" "$status_poweroff" "$wall" "VMM-L2-DISK-READ bytes=16777216 "; then
    result disk-rate-limit FAIL "$why; $timing"
  else
    # Each read's rate must be within 10% of the limit it ran under.
    details="" n=0
    for seconds in $(tr -d '\r' <"$log" | sed -n 's/^VMM-L2-DISK-READ bytes=16777216 seconds=\([0-9.]*\).*/\1/p'); do
      n=$((n + 1))
      limit=$([ $n -eq 1 ] && echo 4 || echo 2)
      rate=$(awk -v s="$seconds" 'BEGIN { if (s > 0) printf "%.2f", 16 / s; else print 0 }')
      details="$details${details:+, then }16 MiB in ${seconds}s: $rate MiB/s against $limit MiB/s"
      awk -v r="$rate" -v l="$limit" 'BEGIN { exit !(r >= 0.9 * l && r <= 1.1 * l) }' || why="not within 10% of the limit"
    done
    if [ $n -ne 2 ]; then
      result disk-rate-limit FAIL "$n full reads, expected 2 ($details); $timing"
    elif [ -n "$why" ]; then
      result disk-rate-limit FAIL "$details: $why; $timing"
    else
      result disk-rate-limit PASS "$details (changed live: set-rate-limit); $timing"
    fi
  fi
  rm -f "$img"
}

# --disk PATH,snapshot=on: two guests boot one base image at the same time, each writes the
# disk-root file to its root filesystem (its own overlay) and powers off; the image is unchanged.
# vmm's alone: QEMU's -snapshot is what it follows, not what the lab checks.
scenario_disk_snapshot() {
  vmm_only disk-snapshot "it checks vmm's overlays (QEMU's -snapshot is their model)" || return
  img=/tmp/disk-snapshot.img
  unpack_root_image disk-snapshot cloud "$img" || return
  before=$(md5sum <"$img")
  with_disks initrd-disk.cpio.gz "$img,snapshot=on" "root=/dev/vda rw"
  start=$(now)
  l2_run cloud 1 disk-root </dev/null >"$(logfile disk-snapshot)" 2>&1 &
  first=$!
  l2_run cloud 1 disk-root </dev/null >"$(logfile disk-snapshot-2)" 2>&1 &
  second=$!
  wait $first
  status=$(normalize_status $?)
  wait $second
  status_2=$(normalize_status $?)
  wall=$(elapsed "$start")
  with_disks "" "" ""
  set -- "VMM-L2-SWITCH-ROOT /dev/vda (rw)" VMM-L2-ROOT=/dev/vda,ext4,rw VMM-L2-DISK-SYNCED "reboot: Power down"
  if ! verify disk-snapshot "$status" "$status_poweroff" "$wall" "$@"; then
    result disk-snapshot FAIL "first guest: $why; $timing"
  elif ! verify disk-snapshot-2 "$status_2" "$status_poweroff" "$wall" "$@"; then
    show_console "disk-snapshot's second guest" "$(logfile disk-snapshot-2)"
    result disk-snapshot FAIL "second guest: $why; $timing"
  elif [ "$(md5sum <"$img")" != "$before" ]; then
    result disk-snapshot FAIL "the base image changed (md5sum); $timing"
  else
    result disk-snapshot PASS "two guests at once, status=$status and $status_2, each wrote its root filesystem, image unchanged; $timing"
  fi
  rm -f "$img"
}

# --- network (virtio-net on virtio-mmio, each guest on a tap of a bridge in L1) ---
# L1 is 10.0.2.2 on the bridge; the guests are 10.0.2.15 (tap 0) and 10.0.2.16 (tap 1), with these
# MACs when the scenario gives them.
NET_BRIDGE=labbr0 NET_L1=10.0.2.2 NET_PREFIX=24 NET_TAP_A=labtap0 NET_TAP_B=labtap1
NET_A=10.0.2.15 NET_B=10.0.2.16 NET_MAC_A=52:54:00:ab:00:15 NET_MAC_B=52:54:00:ab:00:16
LAB_L1_NET=${LAB_L1_NET:-/lab/l1-net.sh}
# shellcheck source=/dev/null # written by lib.sh's lab_write_l1_net
[ -f "$LAB_L1_NET" ] && . "$LAB_L1_NET"
with_nets() { # with_nets NETS APPEND: the next l2_run's network devices and command line ("" "" to reset)
  L2_NETS=$1 L2_APPEND=$2
  if [ -n "$1" ]; then L2_INITRD=initrd-net.cpio.gz; else L2_INITRD=initrd.cpio.gz; fi
}
with_l2_timeout() { # with_l2_timeout SECONDS: the next boots' timeout (60 to reset)
  L2_TIMEOUT=$1 L2_HARD_TIMEOUT=$(($1 + 30))
}
net_l1() { # net_l1 NAME: L1's bridge and taps (made by the first caller, kept); else NAME fails
  if ! command -v l1_net_up >/dev/null || ! l1_net_up "$NET_BRIDGE" "$NET_L1/$NET_PREFIX" "$NET_TAP_A" "$NET_TAP_B" >"/tmp/$1.l1net" 2>&1; then
    result "$1" FAIL "L1 cannot set up the bridge $NET_BRIDGE and taps $NET_TAP_A, $NET_TAP_B: $(tail -n1 "/tmp/$1.l1net" 2>/dev/null)"
    return 1
  fi
}
# guest_net ADDR: the command line that gives a guest ADDR on the bridge, L1 its peer and gateway.
guest_net() { echo "vmmnet=$1/$NET_PREFIX vmmgw=$NET_L1 vmmpeer=$NET_L1"; }

# The guest gets its address and pings L1; its eth0 has the MAC given with the device.
scenario_net_ping() {
  net_l1 net-ping || return
  with_nets "tap=$NET_TAP_A,mac=$NET_MAC_A" "$(guest_net $NET_A)"
  run_l2 net-ping cloud 1 net-ping
  with_nets "" ""
  if verify net-ping "$status" "$status_poweroff" "$wall" "VMM-L2-NET-UP eth0 $NET_A/$NET_PREFIX mac=$NET_MAC_A" \
    "VMM-L2-NET-PING=$NET_L1,ok"; then
    rtt=$(sed -n "s/.*VMM-L2-NET-PING=$NET_L1,ok,\([0-9.]*\).*/\1/p" "$(logfile net-ping)" | head -n1)
    result net-ping PASS "status=$status mac=$NET_MAC_A, 3 pings to L1 answered (avg ${rtt}ms); $timing"
  else
    result net-ping FAIL "$why; $timing"
  fi
}

# run_net_tcp NAME MIB APPEND [PATTERN...]: MIB MiB of random bytes each way over TCP between L1 and
# the guest (busybox nc), compared by md5 on both ends; APPEND goes on the guest's command line, and
# its console must also have every PATTERN.
run_net_tcp() {
  name=$1 mib=$2 append=$3 tx=/tmp/net-l1-tx.bin rx=/tmp/net-l1-rx.bin
  shift 3
  net_l1 "$name" || return
  if ! dd if=/dev/urandom of="$tx" bs=1M count="$mib" 2>/dev/null; then
    result "$name" FAIL "cannot make $mib MiB in L1's /tmp"
    return
  fi
  tx_sum=$(md5sum <"$tx" | cut -d' ' -f1)
  # L1 serves its bytes on port 5001 and takes the guest's on 5002; a receiver's stdin must not end
  # (a fifo held open), or busybox nc would shut its side down and the sender stop early.
  [ -p /tmp/net-hold ] || mkfifo /tmp/net-hold
  exec 4<>/tmp/net-hold
  nc -l -p 5001 <"$tx" >/dev/null 2>&1 &
  serve_pid=$!
  nc -l -p 5002 </tmp/net-hold >"$rx" 2>/dev/null &
  take_pid=$!
  with_nets "tap=$NET_TAP_A,mac=$NET_MAC_A" "$(guest_net $NET_A) vmmnetmib=$mib${append:+ $append}"
  with_l2_timeout 150 # 64 MiB each way and their checksums, all emulated: ~40 s alone, 110 s under load
  run_l2 "$name" cloud 1 net-tcp
  with_l2_timeout 60
  with_nets "" ""
  kill "$serve_pid" "$take_pid" 2>/dev/null
  wait "$serve_pid" "$take_pid" 2>/dev/null
  exec 4>&-
  rx_bytes=$(stat -c %s "$rx" 2>/dev/null || echo 0) rx_sum=$(md5sum <"$rx" 2>/dev/null | cut -d' ' -f1)
  rm -f "$tx" "$rx"
  rates=$(sed -n 's/^VMM-L2-NET-\(RX\|TX\) .*seconds=\([0-9.]*\).*/\1=\2s/p' "$(logfile "$name")" | tr -d '\r' | xargs)
  stats=$(tr -d '\r' <"$(logfile "$name")" | sed -n 's/^VMM-L2-NET-STATS//p' | head -n1)
  if ! verify "$name" "$status" "$status_poweroff" "$wall" "VMM-L2-NET-PING=$NET_L1,ok" "$@" \
    "VMM-L2-NET-RX-MD5=$tx_sum"; then
    result "$name" FAIL "$why; $timing"
  elif [ "$rx_bytes" -ne $((mib * 1048576)) ]; then
    result "$name" FAIL "L1 got $rx_bytes bytes from the guest, not $mib MiB; $timing"
  elif ! grep -qF "VMM-L2-NET-TX-MD5=$rx_sum" "$(logfile "$name")"; then
    result "$name" FAIL "what L1 got from the guest differs from what it sent (md5); $timing"
  elif [ -z "$stats" ]; then
    result "$name" FAIL "the guest printed no virtio_net counters (VMM-L2-NET-STATS); $timing"
  elif ! echo "$stats " | grep -q ' rx_length_errors=0 '; then
    result "$name" FAIL "the guest's virtio_net dropped received packets as malformed:$stats; $timing"
  else
    result "$name" PASS "status=$status $mib MiB each way, md5 equal ($rates; guest counters:$stats); $timing"
  fi
}
scenario_net_tcp() { run_net_tcp net-tcp 64 ""; }
# Without the guest's transmit offloads (virtio_net's csum and gso parameters, read at probe): it
# hands the device whole, checksummed frames.
scenario_net_no_offload() {
  run_net_tcp net-no-offload 8 "virtio_net.csum=0 virtio_net.gso=0" "csum=N gso=N"
}

# Two guests at once, each on its own tap of the bridge: A waits (net-wait), B pings A and L1, then
# sends A a line over TCP, which A prints before powering off.
scenario_net_two_guests() {
  net_l1 net-two-guests || return
  log_a=$(logfile net-two-guests-a)
  rm -f "$log_a.first"
  with_l2_timeout 90
  with_nets "tap=$NET_TAP_A,mac=$NET_MAC_A" "$(guest_net $NET_A)"
  start=$(now)
  # Guest A boots again, once, if it ended before it was ready: L1's TCG now and then triple-faults
  # an L2 kernel in its early boot (seen here twice in a row in one fresh-clone run), and then guest
  # B had nobody to ping. The first boot's console stays in the log, above the second's.
  for boot_a in 1 2; do
    [ "$boot_a" = 2 ] && echo "--- guest A ended before it was ready (an L1 glitch?): booting it again ---" >>"$log_a.first"
    l2_run cloud 1 net-wait </dev/null >"$log_a" 2>&1 &
    pid_a=$!
    i=0
    while [ $i -lt $((L2_TIMEOUT * 5)) ] && kill -0 $pid_a 2>/dev/null && ! grep -q VMM-L2-NET-READY "$log_a"; do
      sleep 0.2
      i=$((i + 1))
    done
    grep -q VMM-L2-NET-READY "$log_a" && break
    kill -0 $pid_a 2>/dev/null && break # still booting at the deadline: B's checks will say so
    cat "$log_a" >>"$log_a.first"
  done
  with_nets "tap=$NET_TAP_B,mac=$NET_MAC_B" "vmmnet=$NET_B/$NET_PREFIX vmmpeer=$NET_A,$NET_L1 vmmrelease=$NET_A"
  run_l2 net-two-guests cloud 1 net-ping
  status_b=$status
  wait $pid_a
  status_a=$(normalize_status $?)
  wall=$(elapsed "$start")
  with_nets "" ""
  with_l2_timeout 60
  if ! verify net-two-guests "$status_b" "$status_poweroff" "$wall" "VMM-L2-NET-PING=$NET_A,ok" \
    "VMM-L2-NET-PING=$NET_L1,ok" "VMM-L2-NET-RELEASED=$NET_A"; then
    result net-two-guests FAIL "guest B: $why; $timing"
    show_console "${prefix}net-two-guests, guest A" "$log_a"
  elif ! verify net-two-guests-a "$status_a" "$status_poweroff" "$wall" VMM-L2-NET-READY \
    "VMM-L2-NET-GOT=hello-from-$NET_B"; then
    result net-two-guests FAIL "guest A: $why; $timing"
    show_console "${prefix}net-two-guests, guest A" "$log_a"
  else
    result net-two-guests PASS "status=$status_b,$status_a B pinged A and L1, A got B's line; $timing"
  fi
}

# The MAC: twice without mac=, the guest gets the same default, a locally administered unicast one.
scenario_net_mac() {
  net_l1 net-mac || return
  macs=""
  for run in 1 2; do
    with_nets "tap=$NET_TAP_A" ""
    run_l2 net-mac cloud 1 net-mac
    with_nets "" ""
    if ! verify net-mac "$status" "$status_poweroff" "$wall" VMM-L2-NET-MAC=; then
      result net-mac FAIL "run $run: $why; $timing"
      return
    fi
    macs="$macs $(sed -n 's/.*VMM-L2-NET-MAC=\([0-9a-f:]*\).*/\1/p' "$(logfile net-mac)" | head -n1)"
  done
  # shellcheck disable=SC2086 # two words
  set -- $macs
  first=$(printf '%d' "0x$(echo "$1" | cut -d: -f1)" 2>/dev/null || echo 1)
  if ! echo "$1" | grep -qE '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'; then
    result net-mac FAIL "the guest's MAC is '$1'; $timing"
  elif [ "$1" != "$2" ]; then
    result net-mac FAIL "default MAC not stable: $1, then $2; $timing"
  elif [ $((first & 3)) -ne 2 ]; then
    result net-mac FAIL "default MAC $1 is not a locally administered unicast address; $timing"
  else
    result net-mac PASS "status=$status default MAC $1 twice, locally administered; $timing"
  fi
}

# --- vmm's own sockets: vsock (virtio-vsock with a Unix-socket host side) and the control socket ---
# QEMU has neither (its vsock is vhost-vsock, which L1 lacks, or vhost-user-vsock, whose daemon Debian
# 12 does not package; QMP is another protocol): these
# scenarios are vmm's alone, skipped for the reference.
LAB_UDS=${LAB_UDS:-/usr/local/bin/uds}
VSOCK_SOCKET=/tmp/v.sock VSOCK_CID=7 VSOCK_MIB=16 API_SOCKET=/tmp/api.sock
vmm_only() { # vmm_only NAME WHY: true for vmm; for another VMM, NAME is skipped, saying WHY
  [ "$vmm_kind" = vmm ] && return 0
  result "$1" SKIP "vmm only: $2"
  return 1
}
# wait_console LOG PID TEXT SECONDS: true once LOG has the fixed string TEXT; false if the VMM (PID)
# ended without it or SECONDS passed.
wait_console() {
  i=0
  while [ $i -lt $(($4 * 5)) ]; do
    grep -qF -- "$3" "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.2
    i=$((i + 1))
  done
  grep -qF -- "$3" "$1"
}
# l2_start NAME SCENARIO CPUS VMM_ARGS [APPEND [INITRD]]: an L2 guest in the background, its console
# in NAME's log; sets $pid and $start.
l2_start() {
  L2_VMM_EXTRA=$4 L2_APPEND=${5:-} L2_INITRD=${6:-initrd.cpio.gz}
  : >"$(logfile "$1")" # there before the first look at it
  start=$(now)
  l2_run cloud "$3" "$2" </dev/null >"$(logfile "$1")" 2>&1 &
  pid=$!
  L2_VMM_EXTRA="" L2_APPEND="" L2_INITRD=initrd.cpio.gz
}
# api SOCKET JSON...: vmm's responses, one line per request (one connection); errors in /tmp/api.err
api() { timeout 30 "$LAB_UDS" request "$@" 2>>/tmp/api.err; }
# tick_uptime LOG N: the guest's uptime on its tick N (the ticker scenario's VMM-L2-TICK lines;
# /proc/uptime's two decimals, whatever else shares the line)
tick_uptime() { tr -d '\r' <"$1" | sed -n "s/^VMM-L2-TICK $2 \([0-9][0-9]*\.[0-9][0-9]\).*/\1/p" | head -n1; }
last_tick() { tr -d '\r' <"$1" | sed -n 's/^VMM-L2-TICK \([0-9]*\) .*/\1/p' | tail -n1; }
# ticks_across LOG LOG2: a snapshot's guest's ticks from both processes' consoles as one stream (a
# line the snapshot cut in two, "VMM-L2-TIC" then "K 6 ...", joins up again): "ok" if they count
# 0, 1, 2, ... with no gap and no repeat, else where they don't.
ticks_across() {
  cat "$1" "$2" | tr -d '\r' | sed -n 's/^VMM-L2-TICK \([0-9]*\) .*/\1/p' |
    awk 'NR == 1 && $1 != 0 { bad = "starts at " $1 } NR > 1 && $1 != prev + 1 && !bad { bad = prev " then " $1 } { prev = $1 } END { print bad ? bad : "ok" }'
}
# stop_l2 SOCKET: ends a guest that a failed check left running (stop, else the VMM is killed)
stop_l2() {
  kill -0 "$pid" 2>/dev/null || return 0
  api "$1" '{"command":"stop"}' >/dev/null || kill "$pid" 2>/dev/null
}

# VSOCK_MIB MiB each way over vsock, in one boot. L1 -> guest: the guest listens on port 5000 and
# L1 connects through vmm's socket (uds connect: "CONNECT 5000"); guest -> L1: the guest connects
# to CID 2, port 6000, which vmm turns into a connection to <socket>_6000, where L1 listens. Each
# receiver answers the sender with the md5 of what it got, so a sender learns that everything
# arrived before it ends (and the guest before it powers off); L1 compares all four sums.
scenario_vsock() {
  vmm_only vsock "QEMU's vsock needs vhost (L1 has none) or a vhost-user daemon (not in Debian 12)" || return
  log=$(logfile vsock) tx=/tmp/vsock-tx.bin
  rm -f /tmp/vsock-*.err /tmp/vsock-rx.md5 /tmp/vsock-uds.pid /tmp/api.err
  if ! dd if=/dev/urandom of="$tx" bs=1M count="$VSOCK_MIB" 2>/dev/null; then
    result vsock FAIL "cannot make $VSOCK_MIB MiB in L1's /tmp"
    return
  fi
  tx_sum=$(md5sum <"$tx" | cut -d' ' -f1)
  [ -p /tmp/vsock-answer ] || mkfifo /tmp/vsock-answer
  # shellcheck disable=SC2016,SC2094 # $$ and $0/$1 expand in that sh; the fifo is read and written on purpose
  sh -c 'echo $$ >/tmp/vsock-uds.pid; exec "$0" -v listen "$1"' "$LAB_UDS" "${VSOCK_SOCKET}_6000" \
    </tmp/vsock-answer 2>/tmp/vsock-listen.err | md5sum | cut -d' ' -f1 | tee /tmp/vsock-rx.md5 >/tmp/vsock-answer &
  listen_pid=$!
  with_l2_timeout 120 # two 16 MiB transfers, their checksums and 16 MiB of /dev/urandom, all emulated
  l2_start vsock vsock 1 "--vsock cid=$VSOCK_CID,socket=$VSOCK_SOCKET" "vmmvsockmib=$VSOCK_MIB" initrd-vsock.cpio.gz
  answer="" why=""
  if wait_console "$log" "$pid" "vsockio: listening on port 5000" "$L2_TIMEOUT"; then
    answer=$(timeout 90 "$LAB_UDS" -v connect "$VSOCK_SOCKET" 5000 <"$tx" 2>/tmp/vsock-connect.err) ||
      why="L1's uds connect failed: $(grep -v 'in=' /tmp/vsock-connect.err | tail -n1)"
  else
    why="the guest never listened on port 5000"
  fi
  wait "$pid"
  status=$(normalize_status $?)
  wall=$(elapsed "$start")
  with_l2_timeout 60
  [ -s /tmp/vsock-uds.pid ] && kill "$(cat /tmp/vsock-uds.pid)" 2>/dev/null # no guest connection came
  wait "$listen_pid" 2>/dev/null
  rx_sum=$(cat /tmp/vsock-rx.md5 2>/dev/null)
  guest_tx=$(tr -d '\r' <"$log" | sed -n 's/^VMM-L2-VSOCK-TX-MD5=\([0-9a-f]*\)$/\1/p')
  rm -f "$tx" /tmp/vsock-answer
  # Rates as each receiver timed them: the guest's vsockio (its clock), L1's uds (L1's).
  to_guest=$(tr -d '\r' <"$log" | sed -n 's/^vsockio: in=\([0-9]*\) .*seconds=\([0-9.]*\).*/\1 \2/p' | head -n1 |
    awk '{ if ($2 > 0) printf "%.1f", $1 / $2 / 1e6 }')
  to_l1=$(sed -n 's/^uds: in=\([0-9]*\) .*seconds=\([0-9.]*\).*/\1 \2/p' /tmp/vsock-listen.err |
    awk '{ if ($2 > 0) printf "%.1f", $1 / $2 / 1e6 }')
  rates="L1->guest ${to_guest:-?} MB/s (guest clock), guest->L1 ${to_l1:-?} MB/s (L1 clock)"
  if [ -n "$why" ]; then
    failure=$why
    verify vsock "$status" "$status_poweroff" "$wall" || true
    result vsock FAIL "$failure; status $status; $timing"
  elif ! verify vsock "$status" "$status_poweroff" "$wall" "VMM-L2-VSOCK-UP cid=$VSOCK_CID" \
    "VMM-L2-VSOCK-RX-MD5=$tx_sum"; then
    result vsock FAIL "$why; $timing"
  elif [ "$answer" != "$tx_sum" ]; then
    result vsock FAIL "L1 -> guest: the guest's answer '$answer' is not L1's md5 $tx_sum; $timing"
  elif [ -z "$guest_tx" ] || [ "$rx_sum" != "$guest_tx" ]; then
    result vsock FAIL "guest -> L1: L1's md5 '$rx_sum' is not the guest's '$guest_tx' ($(tail -n1 /tmp/vsock-listen.err)); $timing"
  elif ! grep -qF "VMM-L2-VSOCK-TX-ANSWER=$rx_sum" "$log"; then
    result vsock FAIL "guest -> L1: the guest did not get L1's answer; $timing"
  else
    result vsock PASS "status=$status cid=$VSOCK_CID, $VSOCK_MIB MiB each way, md5 equal and answered ($rates); $timing"
  fi
}

# --api-socket: pause holds the guest (no console output; its clock stopped: kvmclock held), resume
# lets it carry on where it was, stop ends vmm with status 5. The guest prints its uptime every
# ~0.2 s (ticker).
scenario_pause_resume() {
  vmm_only pause-resume "QEMU's control protocol is QMP, not vmm's JSON lines" || return
  log=$(logfile pause-resume) why="" detail=""
  rm -f /tmp/api.err
  with_l2_timeout 120
  l2_start pause-resume ticker 1 "--api-socket $API_SOCKET"
  if ! wait_console "$log" "$pid" "VMM-L2-TICK 5 " "$L2_TIMEOUT"; then
    why="the guest printed no 6 ticks"
  elif ! r=$(api "$API_SOCKET" '{"command":"pause"}') || ! echo "$r" | grep -qF '"state":"paused"'; then
    why="pause answered '$r' $(tail -n1 /tmp/api.err 2>/dev/null)"
  else
    paused_at=$(now)
    r=$(api "$API_SOCKET" '{"command":"status"}')
    size=$(wc -c <"$log") before=$(last_tick "$log")
    sleep 2
    if ! echo "$r" | grep -qF '"state":"paused"'; then
      why="status while paused answered '$r'"
    elif [ "$(wc -c <"$log")" -ne "$size" ]; then
      why="console output while paused: $(tail -c +$((size + 1)) "$log" | tr -d '\r' | head -n2 | paste -sd'|' -)"
    elif ! r=$(api "$API_SOCKET" '{"command":"resume"}') || ! echo "$r" | grep -qF '"state":"running"'; then
      why="resume answered '$r'"
    else
      held=$(elapsed "$paused_at")
      if ! wait_console "$log" "$pid" "VMM-L2-TICK $((before + 3)) " 20; then
        why="no ticks after resume (last before the pause: $before, now: $(last_tick "$log"))"
      else
        # The guest's clock across the pause: from the last tick before it to the first after;
        # the tick before those gives the loop's own period in guest time, for comparison.
        t_prev=$(tick_uptime "$log" $((before - 1))) t0=$(tick_uptime "$log" "$before")
        t1=$(tick_uptime "$log" $((before + 1)))
        if [ -z "$t_prev" ] || [ -z "$t0" ] || [ -z "$t1" ]; then
          why="ticks $((before - 1))..$((before + 1)) unreadable: $(tr -d '\r' <"$log" | grep -A2 "^VMM-L2-TICK $((before - 1)) " | paste -sd'|' -)"
        else
          gap=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
          period=$(awk -v a="$t_prev" -v b="$t0" 'BEGIN { printf "%.2f", b - a }')
          detail="paused ${held}s of L1's time; the guest's clock went ${gap}s from tick $before to $((before + 1)) (period ${period}s)"
          if awk -v g="$gap" 'BEGIN { exit !(g >= 1.0 || g < 0) }'; then
            why="the guest's clock jumped across the pause: $detail"
          fi
        fi
      fi
    fi
  fi
  if stop_api_guest pause-resume "VMM-L2-TICK $((before + 3)) "; then
    result pause-resume PASS "status=$status $detail; $timing"
  fi
}

# Ends a guest started with --api-socket: through the socket's "stop" when the scenario found no
# problem ($why empty), else by force; then checks vmm's exit (status 5) and the console for
# PATTERNs. stop_api_guest NAME PATTERN...: reports FAIL and returns 1, or returns 0 (the caller
# reports PASS); sets status and wall.
# With api_log_name set, the console checked is that name's log (a restored guest's) rather than NAME's.
stop_api_guest() {
  name=$1 log_name=${api_log_name:-$1}
  shift
  if [ -n "$why" ]; then
    stop_l2 "$API_SOCKET"
  else
    r=$(api "$API_SOCKET" '{"command":"stop"}')
    echo "$r" | grep -qF '"state":"stopped"' || why="stop answered '$r'"
  fi
  wait "$pid"
  status=$(normalize_status $?)
  wall=$(elapsed "$start")
  with_l2_timeout 60
  if [ -n "$why" ]; then
    failure=$why
    verify "$log_name" "$status" 5 "$wall" || true
    [ "$log_name" != "$name" ] && show_console "$log_name" "$(logfile "$log_name")"
    result "$name" FAIL "$failure; status $status; $timing"
    return 1
  fi
  if ! verify "$log_name" "$status" 5 "$wall" "$@"; then
    [ "$log_name" != "$name" ] && show_console "$log_name" "$(logfile "$log_name")"
    result "$name" FAIL "after stop: $why; $timing"
    return 1
  fi
}

# --api-socket's requests on one connection: status (running, uptime_ms), config (what vmm was
# given), two bad requests ({"ok":false,...}, the connection kept), status again; then stop on
# another: vmm exits with status 5 and removes its socket.
scenario_api_socket() {
  vmm_only api-socket "QEMU's control protocol is QMP, not vmm's JSON lines" || return
  log=$(logfile api-socket) why="" out=/tmp/api-socket.out
  rm -f /tmp/api.err
  with_l2_timeout 120
  l2_start api-socket ticker 2 "--api-socket $API_SOCKET"
  if ! wait_console "$log" "$pid" "VMM-L2-TICK 1 " "$L2_TIMEOUT"; then
    why="the guest printed no ticks"
  elif ! api "$API_SOCKET" '{"command":"status"}' '{"command":"config"}' 'not json' '{"command":"fly"}' \
    '{"command":"status"}' '{"command":"metrics"}' >"$out"; then
    why="the requests failed: $(tail -n1 /tmp/api.err) (answers: $(paste -sd'|' - <"$out"))"
  else
    up1=$(sed -n '1s/.*"uptime_ms":\([0-9]*\).*/\1/p' "$out") up2=$(sed -n '5s/.*"uptime_ms":\([0-9]*\).*/\1/p' "$out")
    for n in 1 5; do
      line=$(sed -n "${n}p" "$out")
      case $line in *'"ok":true'*'"state":"running"'*'"uptime_ms":'[0-9]*) ;; *) why="status answered '$line'" ;; esac
    done
    config=$(sed -n 2p "$out")
    for want in '"ok":true' "\"kernel\":\"$LAB_L2/cloud/$kernel_file\"" "\"initrd\":\"$LAB_L2/cloud/initrd.cpio.gz\"" \
      '"cpus":2' "\"memory_bytes\":$((256 * 1048576))" "\"api_socket\":\"$API_SOCKET\"" 'vmmtest=ticker'; do
      case $config in *"$want"*) ;; *) why="${why:+$why; }config lacks $want: '$config'" ;; esac
    done
    for n in 3 4; do
      line=$(sed -n "${n}p" "$out")
      case $line in *'"ok":false'*'"error":'* | *'"error":'*'"ok":false'*) ;; *) why="${why:+$why; }bad request $n answered '$line'" ;; esac
    done
    if [ -z "$why" ] && { [ -z "$up1" ] || [ "$up1" -le 0 ] || [ "$up2" -lt "$up1" ]; }; then
      why="uptime_ms $up1 then $up2"
    fi
    # metrics: each of the 2 vCPUs listed, the guest's port I/O (its UART) counted.
    metrics=$(sed -n 6p "$out")
    vcpus=$(echo "$metrics" | grep -o '"id":[0-9]*' | wc -l)
    case $metrics in
      *'"ok":true'*'"io":'[1-9]*) [ "$vcpus" -eq 2 ] || why="${why:+$why; }metrics list $vcpus vCPUs: '$metrics'" ;;
      *) why="${why:+$why; }metrics answered '$metrics'" ;;
    esac
  fi
  if ! stop_api_guest api-socket; then
    :
  elif [ -e "$API_SOCKET" ]; then
    result api-socket FAIL "vmm exited but left $API_SOCKET behind; $timing"
  else
    result api-socket PASS "status=$status running (uptime_ms $up1, then $up2), config as given, bad requests answered ok:false, metrics with both vCPUs' exits, socket removed; $timing"
  fi
}

# Snapshot and restore of a running guest (2 vCPUs): after tick 5, `vmm snapshot --paused` writes
# it to a folder, and vmm is stopped. `vmm --restore` continues it in a new process: its ticks go on
# from the count the first process's had (never tick 0 again), its wall clock (date +%s) jumped
# forward to L1's (within 5 s: the guest's clock moves by the time the snapshot sat), and a stop
# through the restored process's control socket ends it (status 5).
scenario_snapshot_restore() {
  vmm_only snapshot-restore "vmm's own snapshot format" || return
  log=$(logfile snapshot-restore) log2=$(logfile snapshot-restore-2) why="" detail="" snap=/tmp/snap
  rm -rf "$snap" /tmp/api.err
  with_l2_timeout 120
  l2_start snapshot-restore ticker 2 "--api-socket $API_SOCKET"
  if ! wait_console "$log" "$pid" "VMM-L2-TICK 5 " "$L2_TIMEOUT"; then
    why="the guest printed no 6 ticks"
  elif ! out=$(timeout 60 "$LAB_VMM_BIN" snapshot --api-socket "$API_SOCKET" --paused "$snap" 2>&1); then
    why="vmm snapshot failed: $out"
  fi
  before=$(last_tick "$log")
  stop_api_guest snapshot-restore || return
  [ -s "$snap/manifest.json" ] || { result snapshot-restore FAIL "no $snap/manifest.json after: $out"; return; }
  mem_kib=$(du -k "$snap/memory" | cut -f1)
  sleep 3 # the restored guest's clock must catch up with this too
  : >"$log2"
  start=$(now)
  # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
  timeout 90 "$LAB_VMM_BIN" --restore "$snap" --api-socket "$API_SOCKET" --timeout 60 $LAB_VMM_ARGS \
    </dev/null >"$log2" 2>&1 &
  pid=$!
  if ! wait_console "$log2" "$pid" "VMM-L2-TICK $((before + 3)) " 30; then
    why="no tick $((before + 3)) after the restore (last before the snapshot: $before)"
  elif grep -q "^VMM-L2-TICK 0 " "$log2"; then
    why="the restored guest started over (tick 0)"
  else
    first=$((before + 1))
    across=$(ticks_across "$log" "$log2")
    guest_date=$(tr -d '\r' <"$log2" | sed -n "s/^VMM-L2-TICK $((before + 3)) [0-9.]* \([0-9]*\).*/\1/p")
    l1_date=$(date +%s)
    skew=$((l1_date - ${guest_date:-0}))
    detail="ticks $before, then $first.. after the restore; memory file ${mem_kib} KiB on disk of $((256 * 1024)) KiB; guest clock $skew s behind L1's"
    if [ "$across" != ok ]; then
      why="the ticks across the restore don't count on: $across; $detail"
    elif [ "$skew" -gt 5 ] || [ "$skew" -lt -5 ]; then
      why="the guest's wall clock is off: $detail"
    fi
  fi
  api_log_name=snapshot-restore-2
  if stop_api_guest snapshot-restore "VMM-L2-TICK $((before + 3)) "; then
    result snapshot-restore PASS "status=$status $detail; restore to exit wall=${wall}s"
  fi
  api_log_name=""
}

# The issue's restore of a whole system: Debian's cloud kernel booted the one-line way from the lab's
# root image, with a NIC. The guest writes a file to its disk, holds a TCP connection to L1 (port
# 5010) and counts. After tick 5, `vmm snapshot --paused`, then vmm is killed (SIGKILL); `vmm
# --restore` continues it: the ticks go on, on the console and on the same TCP connection (L1's nc
# keeps receiving), the guest finds its file intact at tick 50, remounts / read-only and powers off
# (status 0); back in L1, e2fsck -fn finds the disk clean and the file is there (debugfs). The guest
# also wrote the file's bytes to a second, snapshot=on disk: restored onto snapshot=on over the same
# (still zero) image, the overlay carried in the snapshot gives them back. The
# guest's wall clock must have jumped over the 10 s the snapshot sat: at its first tick after the
# restore it reads no earlier than 2 s before the restore began.
scenario_snapshot_disk_net() {
  vmm_only snapshot-disk-net "vmm's own snapshot format" || return
  name=snapshot-disk-net img=/tmp/resume.img snap=/tmp/resume-snap tcp=/tmp/resume.tcp
  log=$(logfile $name) log2=$(logfile $name-2) why=""
  rm -rf "$snap" /tmp/api.err "$tcp"
  net_l1 $name || return
  unpack_root_image $name cloud "$img" || return
  scratch=/tmp/resume-scratch.img
  dd if=/dev/zero of=$scratch bs=1M count=1 2>/dev/null
  # L1's end of the guest's connection. Its stdin stays open (fd 4) until the end: busybox nc closes
  # the connection when its stdin ends.
  rm -f /tmp/resume.hold
  mkfifo /tmp/resume.hold
  nc -l -p 5010 </tmp/resume.hold >"$tcp" 2>/dev/null &
  listener=$!
  exec 4>/tmp/resume.hold
  : >"$log"
  start=$(now)
  # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
  "$LAB_VMM_BIN" --kernel "$LAB_L2/cloud/$kernel_file" --disk "$img" --disk "$scratch,snapshot=on" \
    --modules "$LAB_L2/cloud/package" --net "tap=$NET_TAP_A,mac=$NET_MAC_A" \
    --append "vmmtest=resume $(guest_net $NET_A)" --api-socket "$API_SOCKET" --timeout 120 \
    $LAB_VMM_ARGS </dev/null >"$log" 2>&1 &
  pid=$!
  if ! wait_console "$log" "$pid" "VMM-L2-TICK 5 " 90; then
    why="the guest printed no 6 ticks"
  elif ! out=$(timeout 60 "$LAB_VMM_BIN" snapshot --api-socket "$API_SOCKET" --paused "$snap" 2>&1); then
    why="vmm snapshot failed: $out"
  fi
  before=$(last_tick "$log")
  kill -KILL "$pid" 2>/dev/null # vmm itself (its own --timeout bounds it, no wrapper)
  wait "$pid" 2>/dev/null
  if [ -z "$why" ]; then
    : >"$log2"
    sleep 10 # the guest's clock must jump over this
    restore_at=$(date +%s)
    # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
    timeout 120 "$LAB_VMM_BIN" --restore "$snap" --disk "$img" --disk "$scratch,snapshot=on" \
      --timeout 90 $LAB_VMM_ARGS </dev/null >"$log2" 2>&1
    status=$(normalize_status $?)
    wall=$(elapsed "$start")
    after=$(tr -d '\r' <"$log2" | sed -n 's/^VMM-L2-TICK \([0-9]*\) .*/\1/p' | head -n1)
    across=$(ticks_across "$log" "$log2")
    guest_date=$(tr -d '\r' <"$log2" | sed -n "s/^VMM-L2-TICK ${after:-x} [0-9.]* \([0-9]*\).*/\1/p")
    skew=$((${guest_date:-0} - restore_at))
    sum=$(tr -d '\r' <"$log" | sed -n 's/^VMM-L2-RESUME-FILE \([0-9a-f]*\).*/\1/p')
    if [ "$status" -ne 0 ]; then
      why="the restored vmm exited with status $status, expected 0"
    elif ! grep -qF "VMM-L2-RESUME-CHECK file=intact overlay=intact" "$log2" || ! grep -qF VMM-L2-DISK-SYNCED "$log2"; then
      why="the guest did not find its file and its snapshot disk's bytes intact and sync: $(tr -d '\r' <"$log2" | grep VMM-L2-RESUME-CHECK)"
    elif [ "$(tr -d '\0' <$scratch | wc -c)" -ne 0 ]; then
      why="the snapshot=on disk's image was written"
    elif [ -z "$after" ] || [ "$across" != ok ]; then
      why="the ticks across the restore don't count on: $across (last before: $before, first after: ${after:-none})"
    elif [ "$skew" -lt -2 ] || [ "$skew" -gt 30 ]; then
      why="the guest's wall clock at its first tick after the restore is ${skew}s from when the restore began (it sat 10 s: it should have jumped)"
    elif ! grep -q "^tick $((before - 1))\$" "$tcp" || ! grep -q "^tick 49\$" "$tcp"; then
      why="the TCP connection did not carry on: L1 got $(wc -l <"$tcp") lines, last '$(tail -n1 "$tcp")'"
    elif [ "$(debugfs -R 'cat /lab-resume.bin' "$img" 2>/dev/null | md5sum | cut -d' ' -f1)" != "$sum" ]; then
      why="the guest's file is not in the image as written (debugfs)"
    elif ! e2fsck -fn "$img" >/tmp/$name.fsck 2>&1; then
      why="e2fsck -fn: $(grep -v '^e2fsck\|^Pass' /tmp/$name.fsck | head -n3 | paste -sd' ' -)"
    fi
  fi
  exec 4>&-
  kill "$listener" 2>/dev/null
  rm -f "$img" "$scratch" /tmp/resume.hold
  if [ -n "$why" ]; then
    show_console "the restored guest" "$log2"
    result $name FAIL "$why; wall=${wall:-?}s"
  else
    result $name PASS "status 0: ticks $before, then $after.. on the console and the same TCP connection (L1 got $(wc -l <"$tcp") lines), file intact, e2fsck clean, the snapshot=on disk's overlay restored, the guest's clock ${skew}s past the restore's start after sitting 10 s; wall=${wall}s"
  fi
}

# Four clones of one snapshot at once (generic kernel: Debian's cloud kernel has no vmgenid driver).
# A guest with a NIC waits on its console for a number; `vmm snapshot --paused` writes it, and four
# `vmm --restore` run it at the same time, each with its own tap and MAC and its number on stdin.
# Each clone must print a VM Generation ID and random bytes that no other clone printed (the
# driver's reseed seen in its dmesg), ping L1 from its own address, and power off (status 0); the
# four vmm together must take well under 4 times one clone's memory (sum of PSS under 2.5 times one
# clone's RSS: the snapshot's pages are shared through the page cache).
scenario_clones() {
  vmm_only clones "vmm's own snapshot format" || return
  log=$(logfile clones) why="" snap=/tmp/clones-snap
  rm -rf "$snap" /tmp/api.err
  if ! l1_net_up "$NET_BRIDGE" "$NET_L1/$NET_PREFIX" labtap2 labtap3 labtap4 labtap5 >/tmp/clones.l1net 2>&1; then
    result clones FAIL "L1 cannot set up taps labtap2-5: $(tail -n1 /tmp/clones.l1net)"
    return
  fi
  with_l2_timeout 120
  with_nets "tap=labtap2,mac=02:00:00:00:01:00" "vmmpeer=$NET_L1"
  L2_VMM_EXTRA="--api-socket $API_SOCKET"
  : >"$log"
  start=$(now)
  l2_run generic 1 clone </dev/null >"$log" 2>&1 &
  pid=$!
  L2_VMM_EXTRA=""
  with_nets "" ""
  if ! wait_console "$log" "$pid" "VMM-L2-CLONE-READY" "$L2_TIMEOUT"; then
    why="the guest never got ready"
  elif ! out=$(timeout 60 "$LAB_VMM_BIN" snapshot --api-socket "$API_SOCKET" --paused "$snap" 2>&1); then
    why="vmm snapshot failed: $out"
  fi
  stop_api_guest clones || return
  pids=""
  for n in 1 2 3 4; do
    # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
    echo "$n" | "$LAB_VMM_BIN" --restore "$snap" --net "tap=labtap$((n + 1)),mac=02:00:00:00:01:0$n" \
      --timeout 90 $LAB_VMM_ARGS >"$(logfile "clone-$n")" 2>&1 &
    pids="$pids $!"
  done
  i=0
  while [ $i -lt 300 ] && [ "$(cat "$(logfile clone-1)" "$(logfile clone-2)" "$(logfile clone-3)" "$(logfile clone-4)" | grep -c "^VMM-L2-CLONE n=")" -lt 4 ]; do
    sleep 0.2
    i=$((i + 1))
  done
  pss=0 rss1=0
  for p in $pids; do
    kib=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
    pss=$((pss + ${kib:-0}))
    [ "$rss1" -eq 0 ] && rss1=$(awk '/^Rss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
  done
  statuses=""
  for p in $pids; do
    wait "$p"
    statuses="$statuses $?"
  done
  wall=$(elapsed "$start")
  with_l2_timeout 60
  ids="" randoms=""
  for n in 1 2 3 4; do
    clog=$(logfile "clone-$n")
    line=$(tr -d '\r' <"$clog" | grep "^VMM-L2-CLONE n=$n " | head -n1)
    [ -z "$why" ] && [ -z "$line" ] && why="clone $n printed no VMM-L2-CLONE line" && show_console "clone $n" "$clog"
    [ -z "$why" ] && ! echo "$line" | grep -q "reseeded=yes" && why="clone $n: no RNG reseed: $line"
    [ -z "$why" ] && ! grep -qF "VMM-L2-NET-PING=$NET_L1,ok" "$clog" && why="clone $n could not ping L1" && show_console "clone $n" "$clog"
    ids="$ids $(echo "$line" | sed -n 's/.*vmgenid=\([0-9a-f]*\).*/\1/p')"
    randoms="$randoms $(echo "$line" | sed -n 's/.*random=\([0-9a-f]*\).*/\1/p')"
  done
  [ -z "$why" ] && [ "$(echo "$statuses" | tr ' ' '\n' | grep -c '^0$')" -ne 4 ] && why="exit statuses$statuses, expected 0 each"
  [ -z "$why" ] && [ "$(echo "$ids" | tr ' ' '\n' | grep . | sort -u | wc -l)" -ne 4 ] && why="VM generation IDs not all different:$ids"
  [ -z "$why" ] && [ "$(echo "$randoms" | tr ' ' '\n' | grep . | sort -u | wc -l)" -ne 4 ] && why="random bytes not all different:$randoms"
  detail="PSS of the 4 clones ${pss} KiB, one clone's RSS ${rss1} KiB"
  [ -z "$why" ] && [ $((pss * 10)) -ge $((rss1 * 25)) ] && why="the clones share too little memory: $detail"
  if [ -n "$why" ]; then
    result clones FAIL "$why; wall=${wall}s"
  else
    result clones PASS "4 clones at once: distinct VM generation IDs and random bytes (RNG reseeded), each pinged L1 from its own tap, status 0; $detail; wall=${wall}s"
  fi
}

# vmm run: the L2 guest's root is L1's root (shared read-only through virtiofsd, under a tmpfs
# overlay), its working directory L1's (read-write); the command's stdout and stderr are vmm's, kept
# apart, and its exit status is vmm's. The kernel's console goes to NAME's log.
RUN_MIB=10
run_vmm() { # run_vmm NAME ARGS...: vmm run, its stdout and stderr in /tmp/NAME.out and /tmp/NAME.err
  name=$1
  shift
  # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
  with_timeout "$L2_HARD_TIMEOUT" "$LAB_VMM_BIN" run --kernel "$LAB_L2/cloud/vmlinuz" \
    --modules "$LAB_L2/cloud/package" --timeout "$L2_TIMEOUT" --serial "file:$(logfile "$name")" \
    $LAB_VMM_ARGS "$@" >"/tmp/$name.out" 2>"/tmp/$name.err"
}
# pid_of TEXT: the first process whose command line has TEXT (busybox has no pgrep)
pid_of() { ps | grep -F -- "$1" | grep -v grep | awk '{ print $1; exit }'; }

# One guest: the shared working directory both ways (L1 writes, the guest reads; the guest writes a
# file, sets its mode and owner, and L1 reads them back; then L1 writes and the guest reads), a
# readonly=on share refusing a write, a write to /etc landing in the overlay (L1's /etc untouched),
# RUN_MIB MiB on stdout arriving whole (md5 against the guest's, which it says on stderr), and
# `exit 7` as vmm's status.
scenario_run() {
  vmm_only run "vmm run is vmm's" || return
  work=/tmp/run-work ro=/tmp/run-ro err=/tmp/run.err
  rm -rf "$work" "$ro" /etc/vmm-run-probe "$err"
  mkdir -p "$work" "$ro"
  echo from-host-before >"$work/host-before.txt"
  echo ro-content >"$ro/file"
  : >"$err"
  start=$(now)
  (cd "$work" && run_vmm run --share "$ro:ro,readonly=on" -- sh -c '
    cat host-before.txt >&2
    echo guest-wrote >guest.txt && chmod 0640 guest.txt && chown 1234:5678 guest.txt && echo VMM-RUN-WROTE >&2
    i=0; while [ ! -f host-after.txt ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
    echo "host-after: $(cat host-after.txt)" >&2
    if (echo x >'"$ro"'/new) 2>/dev/null; then echo RO-WRITTEN >&2; else echo RO-REFUSED >&2; fi
    echo probe >/etc/vmm-run-probe && echo ETC-WRITTEN-IN-GUEST >&2
    dd if=/dev/urandom of=/tmp/blob bs=1M count='"$RUN_MIB"' 2>/dev/null
    echo "md5 $(md5sum </tmp/blob | cut -d" " -f1)" >&2
    cat /tmp/blob
    exit 7') &
  pid=$!
  owner=""
  if wait_console "$err" "$pid" VMM-RUN-WROTE 60; then
    owner="$(cat "$work/guest.txt") $(stat -c '%a %u:%g' "$work/guest.txt")"
  fi
  echo from-host-after >"$work/host-after.txt"
  wait "$pid"
  status=$?
  wall=$(elapsed "$start")
  sent=$(sed -n 's/^md5 //p' "$err")
  got=$(md5sum <"/tmp/run.out" | cut -d' ' -f1)
  size=$(stat -c %s /tmp/run.out)
  detail="wall=${wall}s"
  if [ "$status" -ne 7 ]; then
    result run FAIL "status $status, expected 7 (the command's); stderr: $(head -c 400 "$err"); $detail"
  elif [ "$owner" != "guest-wrote 640 1234:5678" ]; then
    result run FAIL "the guest's file in the shared directory reads '$owner', expected 'guest-wrote 640 1234:5678'; $detail"
  elif ! grep -qx from-host-before "$err" || ! grep -qx "host-after: from-host-after" "$err"; then
    result run FAIL "the guest did not read L1's files (stderr: $(head -c 400 "$err")); $detail"
  elif ! grep -qx RO-REFUSED "$err"; then
    result run FAIL "the readonly=on share took a write ($(ls "$ro")); $detail"
  elif ! grep -qx ETC-WRITTEN-IN-GUEST "$err" || [ -e /etc/vmm-run-probe ]; then
    result run FAIL "a write to /etc: $(grep -c ETC-WRITTEN-IN-GUEST "$err") in the guest, L1's /etc/vmm-run-probe $([ -e /etc/vmm-run-probe ] && echo exists || echo absent); $detail"
  elif [ "$size" -ne $((RUN_MIB << 20)) ] || [ "$sent" != "$got" ]; then
    result run FAIL "stdout: $size bytes, md5 $got; the guest sent $((RUN_MIB << 20)) bytes, md5 $sent; $detail"
  elif [ "$(stat -c %s "$err")" -gt 1024 ]; then
    result run FAIL "stderr has $(stat -c %s "$err") bytes: stdout leaked into it?; $detail"
  else
    result run PASS "status 7; the shared directory both ways (mode 640, owner 1234:5678), readonly=on refused a write, /etc written in the overlay only, $RUN_MIB MiB on stdout whole (md5 $got), stderr apart; $detail"
  fi
  rm -rf "$work" "$ro" /tmp/run.out
}

# The statuses that are not the command's choice: a command that does not exist (127, as a shell
# says), and a guest that panics before the command ends (125: its status never came; vmm says why).
# The panicking guest first runs `yes` into vmm's stdout, a pipe to `head -c 1000`: once head has
# its bytes and exits, `yes` must fail to write, as on the host (the stdout port goes away: else it
# writes for ever, into nothing, and the guest times out instead of panicking).
scenario_run_status() {
  vmm_only run-status "vmm run is vmm's" || return
  start=$(now)
  (cd /tmp && run_vmm run-status -- /no/such/command)
  missing=$?
  # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
  (cd /tmp && {
    with_timeout "$L2_HARD_TIMEOUT" "$LAB_VMM_BIN" run --kernel "$LAB_L2/cloud/vmlinuz" \
      --modules "$LAB_L2/cloud/package" --timeout "$L2_TIMEOUT" \
      --serial "file:$(logfile run-status-panic)" $LAB_VMM_ARGS -- \
      sh -c 'yes; echo c >/proc/sysrq-trigger; sleep 30' 2>/tmp/run-status-panic.err
    echo $? >/tmp/run-status-panic.status
  } | head -c 1000 >/tmp/run-status-panic.out)
  panic=$(cat /tmp/run-status-panic.status)
  piped=$(stat -c %s /tmp/run-status-panic.out)
  wall=$(elapsed "$start")
  if [ "$missing" -ne 127 ] || ! grep -q "/no/such/command" /tmp/run-status.err; then
    result run-status FAIL "a missing command: status $missing (expected 127), stderr: $(head -c 300 /tmp/run-status.err); wall=${wall}s"
  elif [ "$panic" -ne 125 ] || ! grep -q "exit status never came: guest panicked" /tmp/run-status-panic.err; then
    result run-status FAIL "yes piped to head, then a panic: status $panic (expected 125), stderr: $(head -c 300 /tmp/run-status-panic.err); wall=${wall}s"
  elif [ "$piped" -ne 1000 ]; then
    result run-status FAIL "head got $piped bytes of yes, expected 1000; wall=${wall}s"
  else
    result run-status PASS "a missing command 127; yes into head -c 1000 ended (its port removed), then a panic: 125 with '$(grep "never came" /tmp/run-status-panic.err)'; wall=${wall}s"
  fi
  rm -f /tmp/run-status*.out
}

# A virtiofsd killed under a guest that reads from its share: the guest gets I/O errors (not a hang),
# vmm says so once. Then Ctrl-C (SIGINT to vmm) reaches the command, whose trap says so and carries
# on; a second Ctrl-C stops the guest: 125, the command's status never came.
scenario_run_signals() {
  vmm_only run-signals "vmm run is vmm's" || return
  dir=/tmp/run-kill err=/tmp/run-signals.err
  rm -rf "$dir"
  mkdir -p "$dir"
  echo data >"$dir/file"
  : >"$err"
  start=$(now)
  (cd /tmp && run_vmm run-signals --share "$dir:kill" -- sh -c '
    echo VMM-RUN-READY >&2
    while cat '"$dir"'/file >/dev/null 2>/tmp/cat.err; do sleep 0.2; done
    echo "VMM-RUN-EIO $(cat /tmp/cat.err)" >&2
    trap "echo VMM-RUN-INT >&2" INT
    echo VMM-RUN-TRAP >&2
    while :; do sleep 0.2; done') &
  pid=$!
  why=""
  if ! wait_console "$err" "$pid" VMM-RUN-READY 60; then
    why="the command never started"
  else
    virtiofsd=$(pid_of "source=$dir")
    [ -n "$virtiofsd" ] && kill -9 "$virtiofsd"
    if [ -z "$virtiofsd" ]; then
      why="no virtiofsd serves $dir"
    elif ! wait_console "$err" "$pid" VMM-RUN-TRAP 30; then
      why="the guest saw no error after virtiofsd died"
    else
      vmm_pid=$(pid_of "$LAB_VMM_BIN run")
      kill -INT "$vmm_pid"
      if ! wait_console "$err" "$pid" VMM-RUN-INT 30; then
        why="the first Ctrl-C did not reach the command"
      else
        kill -INT "$vmm_pid"
      fi
    fi
  fi
  wait "$pid"
  status=$?
  wall=$(elapsed "$start")
  eio=$(grep VMM-RUN-EIO "$err")
  reports=$(grep -c "fail with I/O errors" "$err")
  if [ -n "$why" ]; then
    result run-signals FAIL "$why; status $status; stderr: $(head -c 400 "$err"); wall=${wall}s"
  elif [ "$status" -ne 125 ] || ! grep -q "exit status never came: stopped by the host" "$err"; then
    result run-signals FAIL "after the second Ctrl-C: status $status (expected 125, the guest stopped); stderr: $(head -c 400 "$err"); wall=${wall}s"
  elif ! echo "$eio" | grep -q "Input/output error" || [ "$reports" -ne 1 ]; then
    result run-signals FAIL "the guest saw '$eio'; vmm reported the dead backend $reports times (expected 1); wall=${wall}s"
  else
    result run-signals PASS "virtiofsd killed: the guest got '${eio#VMM-RUN-EIO }', vmm said so once; the first Ctrl-C reached the command's trap, the second stopped the guest (125); wall=${wall}s"
  fi
  rm -rf "$dir"
}

# --console: the one-line boot with its console on a virtio-console (hvc0) and the UART's output in a
# file: once vmm's initramfs has loaded virtio_console, the kernel's messages (the root's mount) and
# the root's init's output (/dev/console is hvc0) reach vmm's stdout, down to its last line before
# the poweroff; the early boot, before virtio_console loads, is on ttyS0 (the kernel writes to both).
scenario_console() {
  name=console img=/tmp/console.img serial=/tmp/console-serial.log
  vmm_only "$name" "--console is vmm's option" || return
  unpack_root_image "$name" cloud "$img" || return
  L2_ONELINE=1 L2_DISKS=$img L2_VMM_EXTRA="--console --serial file:$serial"
  run_l2 "$name" cloud 1 none
  L2_ONELINE="" L2_DISKS="" L2_VMM_EXTRA=""
  if ! verify "$name" "$status" "$status_poweroff" "$wall" "EXT4-fs (vda): mounted filesystem" \
    "VMM-L2-ROOTFS-UP /dev/vda,ext4,rw" "VMM-L2-DISK-SYNCED"; then
    result "$name" FAIL "hvc0 (vmm's stdout): $why; $timing"
  elif ! grep -qF "Run /init as init process" "$serial"; then
    result "$name" FAIL "the early boot is not on ttyS0 ($(wc -l <"$serial") lines in the file); $timing"
  else
    result "$name" PASS "status=$status, the kernel's and the root init's messages on hvc0 once virtio_console loaded ($(grep -c . "$(logfile "$name")") lines), the early boot on ttyS0; $timing"
  fi
  rm -f "$img" "$serial"
}

# --jail: vmm boots the ticker guest confined (new namespaces, a tmpfs root with only its files,
# uid/gid 1000, no capabilities, cgroup v2 limits, rlimits); L1 looks at the jailed vmm from outside
# through /proc while the guest ticks, has it snapshot itself into the control socket's folder (the
# one host folder the jail shows writable) and stops it through that socket. A second jailed vmm
# restores the snapshot (its folder shown read-only in place of the kernel): the guest ticks on.
JAIL_ID=1000
scenario_jail() {
  name=jail dir=/tmp/jail/vm1 sock=/tmp/jail-sock why=""
  vmm_only "$name" "--jail is vmm's" || return
  log=$(logfile "$name")
  rm -rf /tmp/jail "$sock" && mkdir -p "$dir" "$sock" && chown "$JAIL_ID:$JAIL_ID" "$sock"
  grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || { mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup; }
  # The jail's user reaches KVM through its group, as a kvm group member would.
  chgrp "$JAIL_ID" /dev/kvm && chmod g+rw /dev/kvm
  with_l2_timeout 120
  l2_start "$name" ticker 1 "--jail $dir,uid=$JAIL_ID,gid=$JAIL_ID,memory=1G,cpus=1.5,pids=64,nofile=256,fsize=1G --api-socket $sock/api.sock"
  vpid=""
  if ! wait_console "$log" "$pid" "VMM-L2-TICK 3 " "$L2_TIMEOUT"; then
    why="the jailed guest printed no ticks"
  else
    # The jailed vmm: pid 2 of its PID namespace (NSpid: <L1's pid> 2); pid 1 is the jail's init.
    for p in /proc/[0-9]*; do
      grep -q '^Name:.vmm$' "$p/status" 2>/dev/null && grep -q '^NSpid:.*[^0-9]2$' "$p/status" && vpid=${p#/proc/}
    done
  fi
  if [ -z "$why" ] && [ -z "$vpid" ]; then why="no jailed vmm process (NSpid ... 2) found"; fi
  if [ -z "$why" ]; then
    root=$(ls /proc/"$vpid"/root | tr '\n' ' ')
    top=$(echo "$LAB_L2" | cut -d/ -f2) # the kernel's first folder
    case "$root" in "dev $top proc sys tmp " | "dev $top proc tmp ") ;; *) why="its root holds '$root'" ;; esac
    for host_file in etc/passwd bin usr; do
      [ -e "/proc/$vpid/root/$host_file" ] && why="${why:+$why; }the host's /$host_file is visible"
    done
    st=/proc/$vpid/status lim=/proc/$vpid/limits cg=/sys/fs/cgroup/vmm/vm1
    for want in "Uid:	$JAIL_ID	$JAIL_ID	$JAIL_ID	$JAIL_ID" "Gid:	$JAIL_ID	$JAIL_ID	$JAIL_ID	$JAIL_ID" \
      "CapEff:	0000000000000000" "CapBnd:	0000000000000000" "NoNewPrivs:	1"; do
      grep -qF "$want" "$st" || why="${why:+$why; }status lacks '$want'"
    done
    grep -q '^Max open files  *256  *256 ' "$lim" || why="${why:+$why; }NOFILE: $(grep 'open files' "$lim")"
    grep -q '^Max file size  *1073741824  *1073741824 ' "$lim" || why="${why:+$why; }FSIZE: $(grep 'file size' "$lim")"
    [ "$(cat /proc/"$vpid"/cgroup)" = "0::/vmm/vm1" ] || why="${why:+$why; }cgroup $(cat /proc/"$vpid"/cgroup)"
    limits="$(cat $cg/memory.max) $(cat $cg/cpu.max) $(cat $cg/pids.max)"
    [ "$limits" = "1073741824 150000 100000 64" ] || why="${why:+$why; }memory.max cpu.max pids.max: $limits"
    for ns in mnt pid ipc uts net; do
      [ "$(readlink /proc/"$vpid"/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ] || why="${why:+$why; }the host's $ns namespace"
    done
  fi
  snap=$sock/snap
  if [ -z "$why" ] && ! out=$(timeout 60 "$LAB_VMM_BIN" snapshot --api-socket "$sock/api.sock" --paused "$snap" 2>&1); then
    why="the jailed vmm's snapshot failed: $out"
  fi
  before=$(last_tick "$log")
  API_SOCKET=$sock/api.sock
  if stop_api_guest "$name"; then
    if [ -d /sys/fs/cgroup/vmm/vm1 ]; then
      result "$name" FAIL "the cgroup stayed after vmm ended; $timing"
    else
      first=$wall log2=$(logfile jail-restore)
      : >"$log2"
      start=$(now)
      # shellcheck disable=SC2086 # LAB_VMM_ARGS is a list of words
      timeout 90 "$LAB_VMM_BIN" --restore "$snap" --jail "$dir,uid=$JAIL_ID,gid=$JAIL_ID" \
        --api-socket "$API_SOCKET" --timeout 60 $LAB_VMM_ARGS </dev/null >"$log2" 2>&1 &
      pid=$!
      if ! wait_console "$log2" "$pid" "VMM-L2-TICK $((before + 2)) " 30; then
        why="the jailed restore printed no tick $((before + 2)) (last before the snapshot: $before)"
      fi
      api_log_name=jail-restore
      if stop_api_guest jail "VMM-L2-TICK $((before + 2)) "; then
        result jail PASS "status=$status; jailed vmm (pid $vpid): root '$root', uid/gid $JAIL_ID, no capabilities, NOFILE/FSIZE, cgroup limits ($limits), own namespaces; ticked, snapshot and stopped through the jail's socket (wall=${first}s); a jailed restore ticked on from $before; restore to exit wall=${wall}s"
      fi
      api_log_name=""
    fi
  fi
  API_SOCKET=/tmp/api.sock
  chgrp 0 /dev/kvm
  rm -rf /tmp/jail "$sock"
}

selected() {
  case ",$LAB_DONE," in *",$vmm_kind/$1,"*) return 1 ;; esac
  [ -z "$LAB_ONLY" ] && return 0
  case ",$LAB_ONLY," in *",$1,"*) return 0 ;; esac
  return 1
}

kinds=$(echo "$LAB_VMM" | tr ',' ' ')
for kind in $kinds; do
  use_vmm "$kind" || { echo "LAB-ERROR unknown VMM '$kind' in LAB_VMM (vmm, qemu)"; echo "LAB-END 0 1 0"; exit 1; }
done

if [ "$LAB_MODE" = shell ]; then
  # The quickstart: one L2 guest with its console on L1's console (so on the user's terminal).
  use_vmm "${kinds%% *}"
  L2_TIMEOUT=0
  # Its root filesystem is build-rootfs.sh's image on a virtio disk (a copy in L1's RAM).
  unpack_root_image shell cloud /tmp/shell-root.img
  with_disks initrd-disk.cpio.gz /tmp/shell-root.img "root=/dev/vda rw"
  echo "LAB-SHELL booting Debian's cloud kernel with $vmm_kind inside L1, root on a virtio disk"
  l2_run cloud 1 shell
  echo "LAB-SHELL exit status $?"
  echo "LAB-END 0 0 0"
  exit 0
fi

for s in ${LAB_ONLY:+$(echo "$LAB_ONLY" | tr ',' ' ')}; do
  case " $all_scenarios " in *" $s "*) ;; *) result "$s" FAIL "unknown scenario (known: $all_scenarios)" ;; esac
done
for kind in $kinds; do
  use_vmm "$kind"
  if [ ! -c /dev/kvm ]; then
    for s in $all_scenarios; do selected "$s" && result "$s" FAIL "L1 has no /dev/kvm"; done
    continue
  fi
  if [ "$kind" = vmm ] && [ ! -x "$LAB_VMM_BIN" ]; then
    for s in $all_scenarios; do selected "$s" && result "$s" FAIL "no vmm binary at $LAB_VMM_BIN"; done
    continue
  fi
  echo "LAB-START vmm=$kind scenarios=${LAB_ONLY:-all} l1-uptime=$(now)"
  for s in $all_scenarios; do
    selected "$s" || continue
    round=0
    while [ $round -lt "${LAB_REPEAT:-1}" ]; do
      try=1 last_try=3
      [ "${LAB_REPEAT:-1}" -gt 1 ] && last_try=1
      while :; do
        retry_wanted=0
        "scenario_$(echo "$s" | tr '-' '_')"
        [ "$retry_wanted" = 1 ] || break
        try=$((try + 1))
      done
      try=1 last_try=1
      round=$((round + 1))
    done
  done
done
echo "LAB-END $passed $failed $skipped"
