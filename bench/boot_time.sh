#!/usr/bin/env bash
# Boot benchmark: vmm against QEMU -M microvm, side by side in one boot of the nested lab's L1.
# Builds an L1 initramfs of its own (busybox, kvm modules, vmm, QEMU + microvm firmware, the cloud
# kernel and the lab's L2 initramfs, bench/tools/stamp, bench/lab_bench_init.sh), boots it once, and
# prints the medians of N boots of each VMM and their ratios; see bench/README.md.
#
# usage: boot_time.sh [--vmm PATH] [--runs N] [--out DIR]
#   --vmm PATH  the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N    boots per VMM (default 3)
#   --out DIR   where the initramfs, logs and boot_time.txt go (default: <repo>/build/bench)
# The kernels and the L2 initramfs come from the lab's build directory ($VMM_LAB_OUT, default
# <repo>/build/lab), made there by the lab's own scripts if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm runs=3 out=$repo/build/bench
bench_options vmm runs out -- "$@"
bench_positive runs
bench_lab_setup
command -v gcc >/dev/null || lab_die "gcc not found"

# --- inputs: kernels and L2 initramfs (the lab's), the stamp tool ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
l2=$lab/l2-cloud.cpio.gz
if [ ! -s "$l2" ]; then
  "$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --out "$l2"
fi
kernel=$lab/kernels/cloud/vmlinuz

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$l2"
bench_l1_add_qemu "$root"
bench_l1_add_stamp "$root"
cp "$here/lab_bench_init.sh" "$root/bench/lab_bench_init.sh"
bench_l1_init "$root" /bench/lab_bench_init.sh benchruns=BENCH_RUNS
l1_cpio=$out/l1-bench.cpio
lab_pack_cpio "$root" "$l1_cpio" # uncompressed: gunzip under TCG costs L1 about a second
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
# Another lab's QEMU would share the 2 cores with this one and skew both: wait for it to end.
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" "benchruns=$runs"
# L1 boot + every L2 boot at its worst (stamp's 90 s limit); silence past the stall limit means L1
# is wedged.
l1_timeout=$((180 + 2 * runs * 95))
l1_stall_limit=180
log=$out/l1-console.log
# Boots that shared the cores with another QEMU are flagged in the table (bench_lib.sh).
bench_watch_other_qemu
bench_boot_l1 "$log" BENCH-END '^BENCH-' "$l1_timeout" "$l1_stall_limit" "$runs boots per VMM" "${l1_command[@]}"
grep -A40 '^--- ' "$log" | grep -E '^(--- |  \| )' >"$out/failures.txt" || true
results=$out/results.txt
grep '^BENCH-RESULT ' "$log" >"$results" || true

# --- the table ---
# Boots that shared the cores with another QEMU are left out of the medians if each VMM still has
# a clean one.
bench_stamp_counts vmm qemu
kib_to_mib() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1024 }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v }'; }
secs() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v }'; }

bench_describe
l2_kernel=$(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?')
qemu_version=$("$qemu" --version | head -n1)
{
  echo "vmm boot benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $l2_kernel, the lab's busybox initramfs, 1 vCPU, 256 MiB, \"console=ttyS0 panic=-1 vmmtest=marker\""
  echo "reference: $qemu_version, -M microvm,rtc=on"
  echo "$runs boots per VMM, alternating in one L1 boot; medians of the successful boots (vmm $(count_ok vmm)/$runs, QEMU $(count_ok qemu)/$runs counted)"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  [ -n "$skew_note" ] && echo "note: $skew_note"
  echo
  printf '%-34s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  for row in first_output_ms:"first serial output (ms)" early_marker_ms:"kernel's 'Linux version' (ms)" \
    marker_ms:"L2 /init marker (ms)" exit_ms:"process exit (ms)"; do
    name=${row%%:*} label=${row#*:}
    v=$(med vmm "$name") q=$(med qemu "$name")
    printf '%-34s %10s %12s %10s\n' "$label" "$(ms "$v")" "$(ms "$q")" "$(ratio "$v" "$q")"
  done
  for row in overhead_kib:"memory overhead at marker (MiB)" maxrss_kib:"peak RSS (MiB)"; do
    name=${row%%:*} label=${row#*:}
    v=$(kib_to_mib "$(med vmm "$name")") q=$(kib_to_mib "$(med qemu "$name")")
    printf '%-34s %10s %12s %10s\n' "$label" "$v" "$q" "$(ratio "$v" "$q")"
  done
  v=$(med vmm l2_uptime_s) q=$(med qemu l2_uptime_s)
  printf '%-34s %10s %12s %10s\n' "L2 kernel's uptime at /init (s)" "$(secs "$v")" "$(secs "$q")" "$(ratio "$v" "$q")"
  v=$(med vmm vcpu_start_ms)
  printf '%-34s %10s\n' "vmm start to guest entry (ms)" "$(awk -v v="$v" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v }')"
  echo
  echo "times: from just before fork/exec of the VMM (stamp); memory: smaps Rss at the marker minus the"
  echo "guest-RAM mapping's Rss; L2 uptime: the guest's own clock when its /init ran; the vmm start"
  echo "time is its own -vv log (static init to KVM_RUN)."
  grep '^BENCH-FIRST-LINE ' "$log" | sed 's/^BENCH-FIRST-LINE /first console line, /' || true
  echo
  bench_per_boot BENCH "$log"
} | tee "$out/boot_time.txt"
exclude=""
[ "$(count_ok vmm)" -gt 0 ] && [ "$(count_ok qemu)" -gt 0 ]
