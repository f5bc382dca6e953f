#!/usr/bin/env bash
# virtio-fs and `vmm run` benchmark (issue 14), in one boot of the nested lab's L1:
#  1. A source tree shaped like a kernel's, scaled down (see --files), untarred onto a shared directory,
#     then `find | wc -l` and `grep -r` over it, each step timed inside the guest: vmm --share (the
#     same L2 initramfs as QEMU's), vmm run --share, and QEMU -M microvm with vhost-user-fs-device, all
#     three over Debian 12's virtiofsd on the same directory of L1's tmpfs.
#  2. `vmm run -- true`, exec to exit, against vmm booting the same kernel and the lab's L2 initramfs to
#     its marker.
# Builds an L1 initramfs of its own (busybox, kvm modules, vmm, virtiofsd, QEMU + microvm firmware, the
# cloud kernel, its modules for vmm run, two L2 initramfs images, the tree's tar, bench/tools/stamp,
# bench/lab_virtiofs.sh), boots it once and prints the tables; see bench/README.md.
#
# usage: virtiofs.sh [--vmm PATH] [--runs N] [--fs-runs N] [--files N] [--dirs N] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N      vmm run -- true, and boots to the marker, N of each (default 3)
#   --fs-runs N   untar, find and grep rounds per VMM, after one that does not count (default 3)
#   --files N     files in the tree (default 500: in the lab each file costs the guest about 0.2 s;
#                 Linux 6.1 has about 75,000 in 5,000 folders, 1.3 GB)
#   --dirs N      folders in the tree (default 35, the kernel's 15 files a folder)
#   --out DIR     where the tar, the initramfs images, logs and virtiofs.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm runs=3 fs_runs=3 files=500 dirs=35 out=$repo/build/bench
bench_options vmm runs fs-runs files dirs out -- "$@"
bench_positive runs fs_runs files dirs
bench_lab_setup
command -v gcc >/dev/null || lab_die "gcc not found"
virtiofsd=/usr/lib/qemu/virtiofsd
[ -x "$virtiofsd" ] || lab_die "$virtiofsd not found (apt-get install qemu-system-common)"

# --- the tree: deterministic (a fixed seed), kernel-like in shape: folders nested six to a parent,
# each file in a folder picked at random, its size log-uniform from 256 B to 32 KiB (mean 6.6 KiB),
# C-like lines; every 50th file has one line with the needle grep looks for ---
needle=VMM_BENCH_NEEDLE
# make_tree_tar TAR: the tree (--files, --dirs) as an uncompressed tar, names sorted, owner root, one
# mtime: the same bytes every time.
make_tree_tar() {
  local tar=$1 tree
  tree=$(mktemp -d)
  awk -v root="$tree" -v files="$files" -v dirs="$dirs" -v needle="$needle" '
    function random() { seed = (seed * 48271) % 2147483647; return seed / 2147483647 }
    BEGIN {
      seed = 20261207
      path[0] = root "/linux"
      mkdir = "xargs mkdir -p"
      print path[0] | mkdir
      for (i = 1; i < dirs; i++) { path[i] = path[int((i - 1) / 6)] "/d" i; print path[i] | mkdir }
      close(mkdir)
      for (f = 0; f < files; f++) {
        name = path[int(random() * dirs)] "/f" f (f % 3 ? ".c" : ".h")
        size = int(256 * 128 ^ random())
        if (f % 50 == 0) { printf "/* %s */\n", needle > name; size -= 23 }
        for (line = 0; size > 0; line++) {
          text = sprintf("static int f%d_%d(int x) { return x * %d + %d; }\n", f, line, line % 97, f % 89)
          printf "%s", (length(text) <= size ? text : substr(text, 1, size - 1) "\n") > name
          size -= length(text)
        }
        close(name)
      }
    }'
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 --mode=u=rwX,go=rX \
    -cf "$tar.tmp" -C "$tree" linux
  rm -rf "$tree"
  mv "$tar.tmp" "$tar"
}
tree_tar=$out/tree-$files-$dirs.tar
lab_stale "$tree_tar" "$0" && make_tree_tar "$tree_tar"
tree_mib=$(tar -tvf "$tree_tar" | awk '{ s += $3 } END { printf "%.0f", s / 1048576 }')
expected_entries=$((1 + dirs + files)) # find . in the untar target: ".", linux/ and its folders, the files
expected_matches=$(((files + 49) / 50))

# --- inputs: the kernel (the lab's), the L2 initramfs images (made here), the tools ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
l2=$out/l2-cloud.cpio.gz
if lab_stale "$l2" "$lab_scripts/build-l2-initramfs.sh" "$lab_scripts/lib.sh" "$lab/kernels/cloud/package"; then
  "$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --out "$l2"
fi
# The untar guest of vmm --share and QEMU: busybox, virtio_mmio and virtiofs; its /init mounts the
# share "bench" at /share and runs the steps there (lab_virtiofs.sh puts them in /share/steps.sh).
l2_fs=$out/l2-cloud-virtiofs.cpio.gz
if lab_stale "$l2_fs" "$0" "$lab_scripts/lib.sh" "$lab/kernels/cloud/package"; then
  fs_root=$(mktemp -d)
  lab_busybox_root "$fs_root"
  lab_add_modules "$fs_root" "$lab/kernels/cloud/modules" virtio_mmio virtiofs
  cat >"$fs_root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$lab_init_load_modules
mkdir -p /share
i=0
until mount -t virtiofs bench /share 2>/dev/null; do
  i=\$((i + 1))
  [ \$i -lt 50 ] || { echo "VMM-FS-ERROR cannot mount the share 'bench'"; poweroff -f; }
  sleep 0.1
done
sh /share/steps.sh /share
poweroff -f
INIT
  chmod +x "$fs_root/init"
  lab_pack_cpio "$fs_root" "$l2_fs"
  rm -rf "$fs_root"
fi
lab_build_tools "$out/tools"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$l2"
bench_l1_add_qemu "$root"
bench_l1_add_stamp "$root"
lab_add_binary "$root" "$virtiofsd"
cp "$l2_fs" "$root/bench/l2/virtiofs.cpio.gz"
# vmm run's --modules: the kernel package's modules folder cut down, as the lab's.
lab_copy_module_tree "$lab/kernels/cloud/modules" \
  "$root/bench/l2/package/lib/modules/$(cat "$lab/kernels/cloud/version")" "${lab_oneline_modules[@]}"
cp "$tree_tar" "$root/bench/tree.tar"
cp "$out/tools/kvm-hold" "$here/lab_virtiofs.sh" "$root/bench/"
bench_l1_init "$root" /bench/lab_virtiofs.sh benchruns=BENCH_RUNS benchfsruns=BENCH_FS_RUNS \
  benchentries=BENCH_ENTRIES benchmatches=BENCH_MATCHES
l1_cpio=$out/l1-virtiofs.cpio
lab_pack_cpio "$root" "$l1_cpio" # uncompressed: gunzip under TCG costs L1 about a second
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" \
  "benchruns=$runs benchfsruns=$fs_runs benchentries=$expected_entries benchmatches=$expected_matches"
# Each part at its worst (lab_virtiofs.sh's limits: 900 s per untar guest, stamp's 90 s per boot);
# an untar guest prints nothing until it is done.
l1_timeout=$((180 + 3 * (fs_runs + 1) * 905 + 2 * runs * 95))
log=$out/l1-virtiofs-console.log
bench_watch_other_qemu
bench_boot_l1 "$log" BENCH-END '^(BENCH-|--- |  \| )' "$l1_timeout" 960 \
  "1 + $fs_runs untar rounds and $runs vmm run / boot pairs" "${l1_command[@]}"
results=$out/virtiofs_results.txt
grep '^BENCH-RESULT ' "$log" >"$results" || true

# --- the tables (a measurement counts unless its line says failed: lab_virtiofs.sh's checks) ---
# row LABEL FORMAT KIND NAME: vmm's, vmm run's and QEMU's medians of NAME, and the two ratios to QEMU.
# fmt FORMAT VALUE: VALUE with printf's FORMAT, "-" as it is.
# shellcheck disable=SC2059 # the format is the caller's
fmt() { if [ "$2" = - ]; then echo -; else printf "$1" "$2"; fi; }
row() {
  local v r q
  v=$(med fs-vmm "$3") r=$(med fs-vmm-run "$3") q=$(med fs-qemu "$3")
  printf '%-40s %8s %8s %12s %9s %13s\n' "$1" "$(fmt "$2" "$v")" "$(fmt "$2" "$r")" "$(fmt "$2" "$q")" \
    "$(ratio "$v" "$q")" "$(ratio "$r" "$q")"
}
counted() { field "$1" status | wc -l; }

bench_describe
qemu_version=$("$qemu" --version | head -n1)
l2_kernel=$(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?')
{
  echo "vmm virtio-fs and vmm run benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $l2_kernel, 1 vCPU, 1 GiB; reference: $qemu_version, -M microvm; backend: $virtiofsd"
  echo "(Debian 12's), -o sandbox=chroot, cache=auto (its default), the share on L1's tmpfs"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  [ -n "${skewed:-}" ] && echo "note: another QEMU (pid $other_pids) shared the cores during $skewed (counted all the same)"
  echo
  echo "The tree: $files files in $dirs folders, $tree_mib MiB, an uncompressed tar on the share; in the guest,"
  echo "tar -xf onto the share then sync; find . | wc -l; grep -r -F NEEDLE . | wc -l (the guest's page cache"
  echo "dropped before each of the two); seconds by the guest's clock; a warm-up round, then $fs_runs, medians."
  printf '%-40s %8s %8s %12s %9s %13s\n' "" vmm "vmm run" "QEMU microvm" vmm/QEMU "vmm run/QEMU"
  row "untar (s)" %.2f untar_s
  row "find | wc -l (s)" %.2f find_s
  row "grep -r (s)" %.2f grep_s
  row "the guest's process, exec to exit (s)" %.1f exit_s
  row "peak RSS of the VMM (MiB)" %.0f maxrss_mib
  echo "counted: vmm $(counted fs-vmm)/$fs_runs, vmm run $(counted fs-vmm-run)/$fs_runs, QEMU $(counted fs-qemu)/$fs_runs" \
    "(each found $expected_entries entries and $expected_matches matches)"
  echo
  run_exit=$(med run-true exit_ms) boot_marker=$(med boot-marker marker_ms) boot_exit=$(med boot-marker exit_ms)
  echo "vmm run -- true against vmm booting the lab's L2 initramfs to its marker (vmmtest=marker, quiet,"
  echo "1 GiB; then poweroff); ms from exec (stamp); $runs of each, alternating, medians."
  printf '%-44s %10s %12s %10s\n' "" "vmm run" "vmm boot" "run/boot"
  printf '%-44s %10s %12s %10s\n' "exec to the marker (boot) / to exit (run) (ms)" "$(fmt %.0f "$run_exit")" \
    "$(fmt %.0f "$boot_marker")" "$(ratio "$run_exit" "$boot_marker")"
  printf '%-44s %10s %12s %10s\n' "exec to exit (ms)" "$(fmt %.0f "$run_exit")" "$(fmt %.0f "$boot_exit")" \
    "$(ratio "$run_exit" "$boot_exit")"
  printf '%-44s %10s %12s %10s\n' "vmm start to guest entry (ms)" "$(fmt %.0f "$(med run-true vcpu_start_ms)")" \
    "$(fmt %.0f "$(med boot-marker vcpu_start_ms)")" "$(ratio "$(med run-true vcpu_start_ms)" "$(med boot-marker vcpu_start_ms)")"
  printf '%-44s %10s %12s %10s\n' "peak RSS (MiB)" "$(fmt %.0f "$(med run-true maxrss_mib)")" \
    "$(fmt %.0f "$(med boot-marker maxrss_mib)")" "$(ratio "$(med run-true maxrss_mib)" "$(med boot-marker maxrss_mib)")"
  echo "counted: vmm run $(counted run-true)/$runs, boots $(counted boot-marker)/$runs"
  echo
  bench_per_boot BENCH "$log"
} | tee "$out/virtiofs.txt"
[ "$(counted fs-vmm)" -gt 0 ] && [ "$(counted run-true)" -gt 0 ]
