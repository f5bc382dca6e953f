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
#   LAB_MODE      scenarios (default) or shell: boot the cloud kernel with a shell on this console
#   LAB_L2        where the L2 kernels and initramfs are (default /lab/l2: <flavour>/{vmlinuz,initrd.cpio.gz,pvpanic},
#                 <flavour>/initrd-disk.cpio.gz (+ virtio disk modules, root= switch), <flavour>/root.img.gz
#                 (build-rootfs.sh's image, gzip'd), and cloud/vmlinux: the same kernel as an ELF image
#                 with a PVH note)

LAB_VMM=${LAB_VMM:-vmm}
LAB_VMM_BIN=${LAB_VMM_BIN:-/usr/local/bin/vmm}
LAB_L2=${LAB_L2:-/lab/l2}
L2_TIMEOUT=60                        # seconds one L2 boot may take (vmm --timeout; QEMU under timeout)
kernel_file=vmlinuz                   # the L2 kernel image in <flavour>/: vmlinuz (bzImage) or vmlinux (ELF)
L2_HARD_TIMEOUT=$((L2_TIMEOUT + 30)) # the safety net if the VMM ignores its own timeout
L2_MEMORY=256M
all_scenarios="boot-cloud boot-generic boot-pvh cpus-2 poweroff reboot panic echo rtc disk-root disk-readonly disk-two disk-generic"
# Per run, set by the disk scenarios: the L2 initramfs file in <flavour>/, the disks (vmm's --disk
# syntax, PATH[,readonly=on][,serial=ID], space-separated; the first is vda) and more command line.
L2_INITRD=initrd.cpio.gz L2_DISKS="" L2_APPEND=""

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
  # shellcheck disable=SC2086 # LAB_VMM_ARGS and disk_args are lists of words (paths without spaces)
  case $vmm_kind in
    vmm)
      with_timeout "$L2_HARD_TIMEOUT" "$LAB_VMM_BIN" --kernel "$LAB_L2/$flavour/$kernel_file" \
        --initrd "$LAB_L2/$flavour/$L2_INITRD" --cpus "$cpus" --memory "$L2_MEMORY" \
        --cmdline "$cmdline" --timeout "$L2_TIMEOUT" $disk_args $LAB_VMM_ARGS ;;
    qemu)
      with_timeout "$L2_TIMEOUT" qemu-system-x86_64 -M microvm,rtc=on -accel kvm -cpu host -smp "$cpus" \
        -m "$L2_MEMORY" -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -device pvpanic -action panic=exit-failure $disk_args \
        -kernel "$LAB_L2/$flavour/$kernel_file" -initrd "$LAB_L2/$flavour/$L2_INITRD" -append "$cmdline" ;;
  esac
}

# Busybox's timeout leaves its child killed by SIGTERM (143) where coreutils says 124: one word for both.
normalize_status() {
  if [ "$1" -eq 143 ]; then echo "$status_timeout"; else echo "$1"; fi
}

passed=0 failed=0 skipped=0
logfile() { echo "/tmp/$vmm_kind-$1.log"; }
result() { # result NAME PASS|FAIL|SKIP DETAIL...; on FAIL, the tail of the L2 console follows
  name=$1 verdict=$2; shift 2
  echo "LAB-RESULT $prefix$name $verdict $*"
  case $verdict in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1))
       if [ -s "$(logfile "$name")" ]; then
         echo "--- $prefix$name: last lines of the L2 console ---"
         tail -n 25 "$(logfile "$name")" | sed 's/^/  | /'
         echo "--- end ---"
       fi ;;
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
scenario_cpus_2() { run_simple cpus-2 cloud 2 cpus "$status_poweroff" VMM-L2-CPUS=2; }
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
unpack_root_image() { # unpack_root_image FLAVOUR DEST: build-rootfs.sh's image for that kernel
  gunzip -c "$LAB_L2/$1/root.img.gz" >"$2"
}
sectors_of() { echo $(($(stat -c %s "$1") / 512)); }
with_disks() { # with_disks INITRD DISKS APPEND: the next l2_run's disk setup ("" "" "" to reset)
  L2_INITRD=${1:-initrd.cpio.gz} L2_DISKS=$2 L2_APPEND=$3
}

# The root filesystem on a virtio disk: the initramfs switch_roots to it, its /sbin/init writes a
# file, syncs and remounts / read-only; back in L1 the file must be in the image (debugfs) and the
# filesystem clean (e2fsck -fn).
run_disk_root() {
  name=$1 flavour=$2 img=/tmp/$1.img
  if ! unpack_root_image "$flavour" "$img"; then
    result "$name" FAIL "cannot unpack $LAB_L2/$flavour/root.img.gz"
    return
  fi
  with_disks initrd-disk.cpio.gz "$img" "root=/dev/vda rw"
  run_l2 "$name" "$flavour" 1 disk-root
  with_disks "" "" ""
  if ! verify "$name" "$status" "$status_poweroff" "$wall" "VMM-L2-SWITCH-ROOT /dev/vda (rw)" \
    "VMM-L2-ROOTFS-UP /dev/vda,ext4,rw" VMM-L2-ROOT=/dev/vda,ext4,rw VMM-L2-DISK-SYNCED "reboot: Power down"; then
    result "$name" FAIL "$why; $timing"
  elif ! content=$(debugfs -R "cat /lab-disk-root.txt" "$img" 2>/dev/null) ||
    [ "$content" != "vmm-lab disk-root: written by the L2 guest" ]; then
    result "$name" FAIL "the guest's file is not in the image (debugfs: '$content'); $timing"
  elif ! e2fsck -fn "$img" >"/tmp/$name.fsck" 2>&1; then
    result "$name" FAIL "e2fsck -fn: $(grep -v '^e2fsck\|^Pass' "/tmp/$name.fsck" | head -n3 | paste -sd' ' -); $timing"
  else
    result "$name" PASS "status=$status file read back, e2fsck clean; $timing"
  fi
  rm -f "$img"
}
scenario_disk_root() { run_disk_root disk-root cloud; }
# The generic kernel has ext4 as a module: the initramfs loads it (and crc32c) before the mount.
scenario_disk_generic() { run_disk_root disk-generic generic; }

# A read-only disk: the guest sees it read-only, its write is refused, the image is unchanged.
scenario_disk_readonly() {
  img=/tmp/disk-readonly.img
  if ! unpack_root_image cloud "$img"; then
    result disk-readonly FAIL "cannot unpack $LAB_L2/cloud/root.img.gz"
    return
  fi
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
  unpack_root_image cloud /tmp/shell-root.img
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
    "scenario_$(echo "$s" | tr '-' '_')"
  done
done
echo "LAB-END $passed $failed $skipped"
