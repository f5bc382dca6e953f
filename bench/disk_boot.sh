#!/usr/bin/env bash
# Disk boot benchmark: the boot to a root disk's /sbin/init with the initramfs vmm builds (the
# one-line boot, `vmm --kernel K --disk IMG --modules PKG`) against the lab's busybox initramfs, under
# vmm and under QEMU -M microvm, side by side in one boot of the nested lab's L1. Prints the medians
# of N boots of each way and kernel and their ratios; see bench/README.md.
#
# usage: disk_boot.sh [--vmm PATH] [--runs N] [--kernels LIST] [--out DIR]
#   --vmm PATH      the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N        boots per way and kernel (default 3)
#   --kernels LIST  the lab's Debian kernels, comma-separated: cloud (ext4 built in), generic (ext4
#                   a module) (default cloud,generic)
#   --out DIR       where the L1 initramfs, logs and disk_boot.txt go (default: <repo>/build/bench)
# The kernels, the busybox disk initramfs and the root images come from the lab's build directory
# ($VMM_LAB_OUT, default <repo>/build/lab), made there by the lab's own scripts if missing or stale.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm runs=3 kernels=cloud,generic out=$repo/build/bench
bench_options vmm runs kernels out -- "$@"
bench_positive runs
read -r -a flavours <<<"${kernels//,/ }"
[ ${#flavours[@]} -gt 0 ] || bench_die "--kernels '$kernels': no kernel named"
for flavour in "${flavours[@]}"; do
  case $flavour in
    cloud | generic) ;;
    *) bench_die "--kernels $kernels: '$flavour' is not one of the lab's kernels (cloud, generic)" ;;
  esac
done
bench_lab_setup
command -v gcc >/dev/null || lab_die "gcc not found"


# --- inputs: the lab's kernels, busybox disk initramfs and root images ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
for flavour in "${flavours[@]}"; do lab_build_l2 "$lab/kernels" "$lab" "$flavour" >/dev/null; done

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_base "$root"
bench_l1_add_qemu "$root"
bench_l1_add_stamp "$root"
bench_l1_each_boot "$root"
for flavour in "${flavours[@]}"; do
  l2=$root/bench/l2/$flavour
  mkdir -p "$l2"
  cp "$lab/kernels/$flavour/vmlinuz" "$l2/vmlinuz"
  cp "$lab/l2-$flavour-disk.cpio.gz" "$l2/initrd-disk.cpio.gz"
  cp "$lab/root-$flavour.img.gz" "$l2/root.img.gz"
  lab_copy_module_tree "$lab/kernels/$flavour/modules" \
    "$l2/package/lib/modules/$(cat "$lab/kernels/$flavour/version")" "${lab_oneline_modules[@]}"
done
cp "$here/lab_disk_boot.sh" "$root/bench/lab_disk_boot.sh"
bench_l1_init "$root" /bench/lab_disk_boot.sh benchruns=BENCH_RUNS benchkernels=BENCH_KERNELS
l1_cpio=$out/l1-disk-boot.cpio
lab_pack_cpio "$root" "$l1_cpio" # uncompressed: gunzip under TCG costs L1 about a second
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$lab/kernels/cloud/vmlinuz" "$l1_cpio" "benchruns=$runs benchkernels=$kernels"
# L1 boot + every L2 boot at its worst (stamp's 90 s limit, the image's unpacking); silence past the
# stall limit means L1 is wedged.
boots=$((3 * ${#flavours[@]} * runs))
log=$out/l1-disk-boot-console.log
bench_watch_other_qemu
bench_boot_l1 "$log" BENCH-END '^BENCH-' $((180 + boots * 100)) 180 "$runs boots per way and kernel" \
  "${l1_command[@]}"
results=$out/disk_boot_results.txt
grep '^BENCH-RESULT ' "$log" >"$results" || true

# --- the table ---
kinds=()
for flavour in "${flavours[@]}"; do kinds+=("$flavour-built" "$flavour-busybox" "$flavour-qemu"); done
bench_stamp_counts "${kinds[@]}"
bench_describe
{
  echo "vmm disk boot benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: $bench_l1_what"
  echo "L2: 1 vCPU, 512 MiB (vmm's defaults); each boot a fresh copy of the lab's ext4 root image, to its"
  echo "/sbin/init, which writes a file and powers off"
  echo "  built:   vmm --kernel K --disk IMG --modules PKG (vmm builds the initramfs from the kernel"
  echo "           package's modules, PKG; it composes \"console=ttyS0 panic=-1 root=/dev/vda rw\")"
  echo "  busybox: vmm --kernel K --initrd l2-<kernel>-disk.cpio.gz --disk IMG --cmdline \"console=ttyS0"
  echo "           panic=-1 root=/dev/vda rw\" (the lab's busybox initramfs)"
  echo "  QEMU:    -M microvm,rtc=on, the same initramfs, disk and command line"
  echo "reference: $("$qemu" --version | head -n1)"
  echo "$runs boots per way and kernel, in an order rotated from round to round, in one L1 boot; medians of the"
  echo "boots that reached /sbin/init and exited 0"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  [ -n "$skew_note" ] && echo "note: $skew_note"
  for flavour in "${flavours[@]}"; do
    echo
    case $(grep "^CONFIG_EXT4_FS=" "$lab/kernels/$flavour/config" || true) in
      *=m) ext4="ext4 a module" ;;
      *) ext4="ext4 built in" ;;
    esac
    echo "Debian $(cat "$lab/kernels/$flavour/version") ($flavour, $ext4): built $(count_ok "$flavour-built")/$runs," \
      "busybox $(count_ok "$flavour-busybox")/$runs, QEMU $(count_ok "$flavour-qemu")/$runs counted"
    sed -n "s/^BENCH-INITRAMFS $flavour: /built initramfs: /p" "$log"
    bench_table 34 "$flavour-built=vmm built" "$flavour-busybox=vmm busybox" "$flavour-qemu=QEMU busybox" \
      "$flavour-built/$flavour-busybox=built/busybox" "$flavour-built/$flavour-qemu=built/QEMU" -- \
      early_marker_ms:"kernel's 'Linux version' (ms):%.0f" marker_ms:"disk's /sbin/init (ms):%.0f" \
      exit_ms:"process exit, whole run (ms):%.0f" l2_uptime_s:"L2 uptime at /sbin/init (s):%.2f" \
      vcpu_start_ms:"vmm start to guest entry (ms):%.0f"
  done
  echo
  echo "times: from just before fork/exec of the VMM (stamp) to the kernel's first printk, to the disk's"
  echo "/sbin/init's first line (VMM-L2-ROOTFS-UP) and to the VMM's exit after the guest's poweroff; L2 uptime:"
  echo "the guest's own clock at /sbin/init; vmm start to guest entry: vmm's -vv log (static init to KVM_RUN),"
  echo "the built initramfs's making included."
  echo
  bench_per_boot BENCH "$log"
} | tee "$out/disk_boot.txt"
exclude=""
for kind in "${kinds[@]}"; do [ "$(count_ok "$kind")" -gt 0 ] || exit 1; done
