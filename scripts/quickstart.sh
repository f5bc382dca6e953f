#!/usr/bin/env bash
# From a fresh clone to a stock Debian kernel booted by vmm:
#   1. installs the build and lab dependencies (Debian packages, scripts/install-deps.sh),
#   2. configures and builds vmm (build/),
#   3. fetches Debian 12's cloud kernel (apt-get download, unpacked under build/lab, nothing installed),
#   4. builds a busybox initramfs whose /init prints a banner and gives a shell on the serial console,
#   5. boots it with vmm: directly if this host's KVM can run a stock kernel, else in the nested lab
#      (QEMU L1 with kvm-amd; see guest-tests/linux/run-lab.sh).
# On a terminal you get the guest's shell ('poweroff -f' leaves). Without one (CI, a pipe), the guest
# prints VMM-L2-MARKER and powers off, and the script's status says whether that worked.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
build=$repo/build
lab=${VMM_LAB_OUT:-$build/lab}
linux=$repo/guest-tests/linux

step() { echo; echo "==> $*"; }

step "installing dependencies (Debian packages)"
scripts/install-deps.sh

step "configuring and building vmm in $build"
cmake -S . -B "$build"
cmake --build "$build" -j2 --target vmm
vmm=$build/vmm/vmm

step "fetching Debian's kernels into $lab/kernels"
"$linux/fetch-kernels.sh" "$lab/kernels"

step "building the guest's initramfs"
"$linux/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --out "$lab/l2-cloud.cpio.gz"

# A stock kernel needs hardware virtualization behind /dev/kvm. kvm_pvm provides a /dev/kvm without
# it (guest kernel code is emulated, and a stock kernel dies in early boot there).
native=1 why=""
if [ -d /sys/module/kvm_pvm ] || lsmod 2>/dev/null | grep -q '^kvm_pvm'; then
  native=0 why="kvm_pvm"
elif [ ! -c /dev/kvm ]; then
  native=0 why="there is no /dev/kvm"
elif ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
  native=0 why="no vmx/svm in /proc/cpuinfo"
fi

interactive=0
[ -t 0 ] && [ -t 1 ] && interactive=1

if [ $native -eq 1 ]; then
  step "booting Debian's $(cat "$lab/kernels/cloud/version") with vmm"
  args=(--kernel "$lab/kernels/cloud/vmlinuz" --initrd "$lab/l2-cloud.cpio.gz" --cpus 2 --memory 512M)
  if [ $interactive -eq 1 ]; then
    exec "$vmm" "${args[@]}" --cmdline "console=ttyS0 panic=-1 vmmtest=shell"
  fi
  log=$lab/quickstart-console.log
  status=0
  "$vmm" "${args[@]}" --cmdline "console=ttyS0 panic=-1 vmmtest=marker" --timeout 120 </dev/null |
    tee "$log" || status=$?
  if [ $status -eq 0 ] && grep -q VMM-L2-MARKER "$log"; then
    echo "quickstart: vmm booted Debian's kernel (VMM-L2-MARKER seen, guest powered off)"
    exit 0
  fi
  echo "quickstart: the guest did not reach its marker (vmm exit status $status); console in $log"
  exit 1
fi

echo
echo "this host's /dev/kvm can't run a stock kernel natively ($why); booting in the nested lab (QEMU L1 with kvm-amd)"
if [ $interactive -eq 1 ]; then
  exec "$linux/run-lab.sh" --vmm "$vmm" --out "$lab" --shell
fi
exec "$linux/run-lab.sh" --vmm "$vmm" --out "$lab" --only boot-cloud
