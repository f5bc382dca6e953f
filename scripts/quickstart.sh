#!/usr/bin/env bash
# From a fresh clone to a stock Debian kernel booted by vmm:
#   1. installs the build and lab dependencies (Debian packages, scripts/install-deps.sh),
#   2. configures and builds vmm (build/),
#   3. fetches Debian 12's cloud kernel (apt-get download, unpacked under build/lab, nothing installed),
#   4. builds the guest's root disk (a small ext4 image with busybox, guest-tests/linux/build-rootfs.sh),
#   5. boots it with the one-liner, `vmm --kernel vmlinuz --disk root.img --modules PKG` (PKG: the
#      unpacked kernel package; vmm builds the initramfs that loads its virtio modules and mounts
#      the disk, and adds root=/dev/vda rw): directly if this host's KVM can run a stock kernel,
#      else in the nested lab (QEMU L1 with kvm-amd; see guest-tests/linux/run-lab.sh).
# On a terminal you get a shell from the disk's /sbin/init ('poweroff -f' leaves; --append
# vmmtest=shell asks the test image's init for it). Without one (CI, a pipe), the disk's init writes a
# file to its root disk and powers off, the script reads the file back from the image, and its status
# says whether all that worked (the lab's oneline-cloud scenario).
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

step "building the guest's root disk image in $lab"
# shellcheck source=guest-tests/linux/lib.sh
. "$linux/lib.sh"
lab_build_l2 "$lab/kernels" "$lab" cloud

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
  step "booting Debian's $(cat "$lab/kernels/cloud/version") with vmm, root on $lab/root-cloud.img"
  args=(--kernel "$lab/kernels/cloud/vmlinuz" --modules "$lab/kernels/cloud")
  if [ $interactive -eq 1 ]; then
    exec "$vmm" "${args[@]}" --disk "$lab/root-cloud.img" --append "quiet vmmtest=shell"
  fi
  # A fresh copy of the image, so that the file read back can only come from this boot.
  disk=$lab/quickstart-root.img
  cp "$lab/root-cloud.img" "$disk"
  log=$lab/quickstart-console.log
  status=0
  "$vmm" "${args[@]}" --disk "$disk" --timeout 120 </dev/null | tee "$log" || status=$?
  written=$(debugfs -R "cat /lab-disk-root.txt" "$disk" 2>/dev/null || true)
  if [ $status -eq 0 ] && grep -q VMM-L2-DISK-SYNCED "$log" && [ -n "$written" ]; then
    echo "quickstart: vmm booted Debian's kernel from its disk; the guest wrote '$written' to it"
    exit 0
  fi
  echo "quickstart: the guest did not boot from its disk and write to it (vmm exit status $status); console in $log"
  exit 1
fi

echo
echo "this host's /dev/kvm can't run a stock kernel natively ($why); booting in the nested lab (QEMU L1 with kvm-amd)"
if [ $interactive -eq 1 ]; then
  exec "$linux/run-lab.sh" --vmm "$vmm" --out "$lab" --shell
fi
exec "$linux/run-lab.sh" --vmm "$vmm" --out "$lab" --only oneline-cloud
