#!/usr/bin/env bash
# Builds the initramfs of the nested lab's L1 (Debian's cloud kernel under QEMU/TCG with an SVM CPU):
# busybox, kvm + kvm-amd from the cloud kernel's modules, tun + bridge (the network scenarios' taps and
# bridge, set up by /lab/l1-net.sh), the L2 VMM(s), the L2 kernels and initramfs, the uds tool (the
# host side of vmm's vsock and control sockets), kvm-hold (an idle VM held open: tools/kvm-hold.c),
# and scenarios.sh, which /init runs. /init reads from the L1 kernel command line:
#   labvmm=vmm,qemu   which VMMs boot the L2 guests, in turn (default: vmm if present, else qemu)
#   labonly=a,b,...   run only these scenarios (default: all)
#   labvmmargs=a,b    extra arguments for vmm, comma-separated ("--log-level,debug")
#   labdone=vmm/a,... results already had from an L1 that crashed: those scenarios are not rerun
#   labrepeat=N       run each scenario N times in a row (default 1): for chasing a rare failure
#   labmode=scenarios|shell   shell: boot one L2 interactively (quickstart) instead of the scenarios
#   labhost=N         start the host tests (--host-tests) at their N-th program: the ones before it
#                     ran in an L1 that crashed (default 1; past the last, none)
# With --host-tests, /init first runs the host's "kvm" tests (host-tests.sh), then the scenarios.
#
# usage: build-l1-initramfs.sh --kernels DIR --l2 DIR --out FILE [--vmm PATH] [--with-qemu]
#                              [--host-tests LIST]...
#   --kernels  fetch-kernels.sh's OUTDIR (cloud/ and generic/)
#   --l2       where the L2 payloads are, per flavour (cloud, generic): l2-<flavour>.cpio.gz and
#              l2-<flavour>-disk.cpio.gz, l2-<flavour>-net.cpio.gz, l2-<flavour>-vsock.cpio.gz
#              (build-l2-initramfs.sh, --with-disk, --with-net, --with-vsock) and
#              root-<flavour>.img.gz (build-rootfs.sh's image, gzip'd: mostly zeros); and
#              tools/uds and tools/kvm-hold (lib.sh's lab_build_tools)
#   --vmm      the vmm binary to test (its shared libraries come along)
#   --with-qemu  also add qemu-system-x86_64 (for the -M microvm reference runs)
#   --host-tests a build's lab_host_tests.txt (tests/CMakeLists.txt): its files go in at the paths
#                they have here (executables stripped of debug info, with their libraries), its
#                tests into /lab/host-tests.txt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=guest-tests/linux/lib.sh
. "$here/lib.sh"

kernels="" l2="" out="" vmm="" with_qemu=0 host_tests=()
while [ $# -gt 0 ]; do
  case $1 in
    --kernels) kernels=$2; shift 2 ;;
    --l2) l2=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --vmm) vmm=$2; shift 2 ;;
    --with-qemu) with_qemu=1; shift ;;
    --host-tests) host_tests+=("$2"); shift 2 ;;
    *) echo "usage: $0 --kernels DIR --l2 DIR --out FILE [--vmm PATH] [--with-qemu] [--host-tests LIST]..." >&2; exit 2 ;;
  esac
done
[ -n "$kernels" ] && [ -n "$l2" ] && [ -n "$out" ] || { echo "usage: $0 --kernels DIR --l2 DIR --out FILE" >&2; exit 2; }
[ -n "$vmm" ] || [ $with_qemu -eq 1 ] || lab_die "nothing to test: give --vmm PATH and/or --with-qemu"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
lab_add_modules "$root" "$kernels/cloud/modules" "${lab_l1_modules[@]}" "${lab_l1_net_modules[@]}"

for flavour in cloud generic; do
  mkdir -p "$root/lab/l2/$flavour"
  cp "$kernels/$flavour/vmlinuz" "$root/lab/l2/$flavour/vmlinuz"
  cp "$l2/l2-$flavour.cpio.gz" "$root/lab/l2/$flavour/initrd.cpio.gz"
  cp "$l2/l2-$flavour.cpio.gz.pvpanic" "$root/lab/l2/$flavour/pvpanic"
  cp "$l2/l2-$flavour-disk.cpio.gz" "$root/lab/l2/$flavour/initrd-disk.cpio.gz"
  cp "$l2/l2-$flavour-net.cpio.gz" "$root/lab/l2/$flavour/initrd-net.cpio.gz"
  cp "$l2/l2-$flavour-vsock.cpio.gz" "$root/lab/l2/$flavour/initrd-vsock.cpio.gz"
  cp "$l2/root-$flavour.img.gz" "$root/lab/l2/$flavour/root.img.gz"
  # The one-line boot's --modules: the kernel package's lib/modules/<release>, cut down.
  release=$(cat "$kernels/$flavour/version")
  lab_copy_module_tree "$kernels/$flavour/modules" "$root/lab/l2/$flavour/package/lib/modules/$release" \
    "${lab_oneline_modules[@]}"
done
# The disk scenarios read back what the guest wrote to its disk, and check the filesystem.
for tool in debugfs e2fsck; do
  path=$(PATH=$PATH:/sbin:/usr/sbin command -v $tool) || lab_die "$tool not found (apt-get install e2fsprogs)"
  lab_add_binary "$root" "$path" "/sbin/$tool"
done
# The cloud kernel also as an ELF vmlinux, for the PVH-entry scenario (extracted once, cached).
if [ ! -s "$kernels/cloud/vmlinux" ] || [ "$kernels/cloud/vmlinuz" -nt "$kernels/cloud/vmlinux" ]; then
  "$here/extract-vmlinux.sh" "$kernels/cloud/vmlinuz" "$kernels/cloud/vmlinux"
fi
cp "$kernels/cloud/vmlinux" "$root/lab/l2/cloud/vmlinux"
cp "$here/scenarios.sh" "$root/lab/scenarios.sh"
# The vsock and control-socket scenarios talk to vmm's Unix sockets with it (static: no libraries).
[ -x "$l2/tools/uds" ] || lab_die "$l2/tools/uds: missing (lib.sh's lab_build_tools builds it)"
mkdir -p "$root/usr/local/bin"
cp "$l2/tools/uds" "$root/usr/local/bin/uds"
[ -x "$l2/tools/kvm-hold" ] || lab_die "$l2/tools/kvm-hold: missing (lib.sh's lab_build_tools builds it)"
cp "$l2/tools/kvm-hold" "$root/usr/local/bin/kvm-hold"
lab_write_l1_net "$root/lab/l1-net.sh"
if [ -n "$vmm" ]; then
  lab_add_binary "$root" "$vmm" /usr/local/bin/vmm
  # The shares' backend (vmm run, --share): Debian 12's, from qemu-system-common.
  [ -x /usr/lib/qemu/virtiofsd ] || lab_die "/usr/lib/qemu/virtiofsd not found (apt-get install qemu-system-common)"
  lab_add_binary "$root" /usr/lib/qemu/virtiofsd /usr/lib/qemu/virtiofsd
fi
if [ $with_qemu -eq 1 ]; then
  qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
  lab_add_binary "$root" "$qemu" /usr/bin/qemu-system-x86_64
  mkdir -p "$root/usr/share/qemu"
  cp "${lab_qemu_firmware[@]}" "$root/usr/share/qemu/"
fi

# Copies host file PATH into the root at the same path: an ELF executable or library stripped of its
# debug information (the initramfs stays small; symbols stay for backtraces), with its libraries.
add_host_file() {
  local path=$1 dest=$root$1
  mkdir -p "$(dirname "$dest")"
  if [ -x "$path" ]; then lab_add_binary "$root" "$path"; else cp -L "$path" "$dest"; fi
  if [ "$(head -c4 "$dest" | od -An -c | tr -d ' ')" = '177ELF' ]; then strip --strip-debug "$dest"; fi
}
for list in "${host_tests[@]}"; do
  [ -s "$list" ] || lab_die "--host-tests $list: missing or empty"
  while read -r kind name command; do
    case $kind in
      copy)
        [ -e "$name" ] || lab_die "$list: copy $name: no such file or folder"
        if [ -d "$name" ]; then
          while IFS= read -r -d '' file; do add_host_file "$file"; done < <(find "$name" -type f -print0)
        else
          add_host_file "$name"
        fi ;;
      gtest | run)
        for word in $command; do
          case $word in /*) [ -f "$word" ] && [ ! -e "$root$word" ] && add_host_file "$word" ;; esac
        done
        mkdir -p "$root/lab"
        echo "$kind $name $command" >>"$root/lab/host-tests.txt" ;;
      *) lab_die "$list: unknown line '$kind $name $command'" ;;
    esac
  done <"$list"
done
[ ${#host_tests[@]} -gt 0 ] && cp "$here/host-tests.sh" "$root/lab/host-tests.sh"

lab_write_l1_init_start "$root"
cat >>"$root/init" <<'INIT'
# The firmware leaves the cursor mid-line (escape sequences); the lab's lines must start a line.
echo
# A heartbeat on the second serial port (lib.sh's lab_boot_l1 gives L1 one, into a file), apart from
# the console: when it stops, L1 itself is stuck, whatever runs in it.
if [ -c /dev/ttyS1 ]; then
  (while :; do cut -d' ' -f1 /proc/uptime; sleep 5; done >/dev/ttyS1) &
fi
echo "LAB-L1-UP uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) cpus=$(grep -c '^processor' /proc/cpuinfo)"
LAB_VMM="" LAB_ONLY="" LAB_MODE="" LAB_VMM_ARGS="" LAB_DONE="" LAB_REPEAT=1 LAB_HOST=1
for word in $(cat /proc/cmdline); do
  case $word in
    labvmm=*) LAB_VMM=${word#*=} ;;
    labonly=*) LAB_ONLY=${word#*=} ;;
    labmode=*) LAB_MODE=${word#*=} ;;
    labdone=*) LAB_DONE=${word#*=} ;;
    labrepeat=*) LAB_REPEAT=${word#*=} ;;
    labhost=*) LAB_HOST=${word#*=} ;;
    labvmmargs=*) LAB_VMM_ARGS=$(echo "${word#*=}" | tr ',' ' ') ;;
  esac
done
if [ -z "$LAB_VMM" ]; then
  if [ -x /usr/local/bin/vmm ]; then LAB_VMM=vmm; else LAB_VMM=qemu; fi
fi
if [ ! -c /dev/kvm ]; then
  echo "LAB-ERROR L1 has no /dev/kvm (kvm-amd did not load: does the L1 CPU model have svm?)"
  grep -o -m1 -w svm /proc/cpuinfo || echo "LAB-ERROR no svm flag in L1's /proc/cpuinfo"
else
  # An idle VM held open all along: L1 wedges less (tools/kvm-hold.c says why).
  /usr/local/bin/kvm-hold &
fi
export LAB_VMM LAB_ONLY LAB_MODE LAB_VMM_ARGS LAB_DONE LAB_REPEAT
if [ -s /lab/host-tests.txt ] && [ "$LAB_MODE" != shell ]; then
  sh /lab/host-tests.sh /lab/host-tests.txt "$LAB_HOST"
fi
sh /lab/scenarios.sh
poweroff -f
INIT
chmod +x "$root/init"
mkdir -p "$(dirname "$out")"
lab_pack_cpio "$root" "$out"
echo "build-l1-initramfs: $out ($(du -h "$out" | cut -f1)$([ -n "$vmm" ] && echo ", vmm")$([ $with_qemu -eq 1 ] && echo ", qemu")$([ ${#host_tests[@]} -gt 0 ] && echo ", host tests"))"
