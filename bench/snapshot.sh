#!/usr/bin/env bash
# Snapshot benchmark (issue 13): restore to ready against a cold boot and against QEMU's -incoming,
# snapshot time for 256 MiB and 1 GiB guests against QEMU's migration to a file, the memory of 1, 4
# and 16 clones of one snapshot, and (with --vmm-baseline) the boot time and memory overhead of
# another vmm build beside this one, all in one boot of the nested lab's L1. Builds an L1 initramfs
# of its own (busybox, kvm modules, the vmm binaries, QEMU + microvm firmware, the cloud kernel and
# the lab's L2 initramfs, bench/tools/stamp and qmp, the lab's uds and kvm-hold,
# bench/lab_snapshot.sh), boots it once and prints the tables; see bench/README.md.
#
# usage: snapshot.sh [--vmm PATH] [--vmm-baseline PATH]... [--runs N] [--clones LIST] [--out DIR]
#   --vmm PATH    the vmm binary (default: <repo>/build/vmm/vmm)
#   --vmm-baseline PATH
#                 another vmm binary (e.g. the build before guest RAM became a memfd, 78325e6): its
#                 cold boots alternate with the others', in a column of their own (may be repeated)
#   --runs N      cold boots per VMM, restores per VMM, snapshots per VMM and size (default 3)
#   --clones LIST how many clones to restore at once, comma-separated (default 1,4,16)
#   --out DIR     where the initramfs, logs and snapshot.txt go (default: <repo>/build/bench)
# The kernels come from the lab's build directory ($VMM_LAB_OUT, default <repo>/build/lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

vmm=$repo/build/vmm/vmm vmm_baseline=() runs=3 clones=1,4,16 out=$repo/build/bench
bench_options vmm vmm-baseline+ runs clones out -- "$@"
bench_positive runs
[[ $clones =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "snapshot: --clones '$clones': want counts like 1,4,16" >&2; exit 2; }
bench_lab_setup
command -v gcc >/dev/null || lab_die "gcc not found"

# --- inputs: the kernel (the lab's), the L2 initramfs (made here, so that it has the echo and
# ticker guests of this checkout's lib.sh), the tools ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
kernel=$lab/kernels/cloud/vmlinuz
l2=$out/l2-cloud.cpio.gz
if lab_stale "$l2" "$lab_scripts/build-l2-initramfs.sh" "$lab_scripts/lib.sh" "$lab/kernels/cloud/package"; then
  "$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --out "$l2"
fi
lab_build_tools "$out/tools"
gcc -O2 -static -Wall -Wextra -o "$out/qmp" "$here/tools/qmp.c"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bench_l1_root "$root" "$l2"
bench_l1_add_qemu "$root"
bench_l1_add_stamp "$root"
bench_l1_each_boot "$root"
cp "$out/qmp" "$out/tools/uds" "$out/tools/kvm-hold" "$here/lab_snapshot.sh" "$root/bench/"
bench_l1_init "$root" /bench/lab_snapshot.sh benchruns=BENCH_RUNS benchkinds=BENCH_KINDS benchclones=BENCH_CLONES
l1_cpio=$out/l1-snapshot.cpio
lab_pack_cpio "$root" "$l1_cpio" # uncompressed: gunzip under TCG costs L1 about a second
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
lab_wait_for_other_qemu
bench_l1_command "$kernel" "$l1_cpio" "benchruns=$runs benchkinds=$vmm_kinds_list benchclones=$clones"
# Each part at its worst (lab_snapshot.sh's limits: stamp's 90 s per boot, 120 s to a ready guest,
# 60 s to a tick after a resume, 60 s + 10 s per clone); 300 s without a line means L1 is wedged.
clone_limit=0
for n in ${clones//,/ }; do clone_limit=$((clone_limit + 90 + 10 * n)); done
l1_timeout=$((180 + (${#vmm_kinds[@]} + 3) * runs * 95 + 240 + 4 * (150 + runs * 90) + clone_limit))
log=$out/l1-snapshot-console.log
bench_watch_other_qemu
bench_boot_l1 "$log" BENCH-END '^(BENCH-|--- |  \| )' "$l1_timeout" 300 \
  "$runs boots, restores and snapshots per VMM; clones $clones" "${l1_command[@]}"
results=$out/snapshot_results.txt
grep '^BENCH-RESULT ' "$log" >"$results" || true

# --- the tables ---
# A measurement counts unless its line says failed, has a status other than 0 or never saw its
# marker, or it shared the cores with another QEMU (bench_watch_other_qemu's $skewed). NAME_mib is
# NAME_kib / 1024; answer_ms is the echo's own time, from the line typed to the answer.
exclude=${skewed:-}
field() {
  awk -v kind="$1" -v name="$2" -v exclude=" $exclude " '
    $2 == kind && !/ failed/ && !index(exclude, " " $2 "/" substr($3, 5) " ") {
      delete f
      for (i = 3; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      if ((("status" in f) && f["status"] != "0") || (("marker_ms" in f) && f["marker_ms"] < 0)) next
      if (name ~ /_mib$/) {
        k = substr(name, 1, length(name) - 4) "_kib"
        if ((k in f) && f[k] >= 0) printf "%.10g\n", f[k] / 1024
      } else if (name == "answer_ms") {
        if (("sent_ms" in f) && f["sent_ms"] >= 0) printf "%.10g\n", f["marker_ms"] - f["sent_ms"]
      } else if ((name in f) && f[name] >= 0) {
        print f[name]
      }
    }' "$results"
}
# fmt FORMAT VALUE: VALUE with printf's FORMAT, "-" as it is.
# shellcheck disable=SC2059 # the format is the caller's
fmt() { if [ "$2" = - ]; then echo -; else printf "$1" "$2"; fi; }
# fraction A B: A / B to three decimals (the restore's share of a cold boot), "-" if either is missing.
fraction() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f", a / b }'; }
# row LABEL FORMAT A B: a line of a two-column table, A, B and A/B.
row() { printf '%-44s %10s %12s %10s\n' "$1" "$(fmt "$2" "$3")" "$(fmt "$2" "$4")" "$(ratio "$3" "$4")"; }
counted() { field "$1" "$2" | wc -l; }

bench_describe
qemu_version=$("$qemu" --version | head -n1)
l2_kernel=$(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?')
{
  echo "vmm snapshot benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  bench_baselines
  echo "nested lab: $bench_l1_what"
  echo "L2: Debian $l2_kernel, the lab's busybox initramfs, 1 vCPU; reference: $qemu_version, -M microvm,rtc=on"
  echo "$runs runs of each; medians of those that succeeded"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  [ -n "${skewed:-}" ] && echo "note: another QEMU (pid $other_pids) shared the cores during $skewed: left out of the medians"
  echo
  echo "Restore to ready: the echo guest (vmmtest=echo, 256 MiB) answers a line typed on its console;"
  echo "ms from the VMM's exec (stamp) to the answer. Cold boot: typed when it says it is ready;"
  echo "restore: typed at once, into vmm --restore DIR / QEMU -incoming \"exec:cat FILE\"."
  printf '%-44s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  cold_v=$(med boot-vmm marker_ms) cold_q=$(med boot-qemu marker_ms)
  restore_v=$(med restore-vmm marker_ms) restore_q=$(med restore-qemu marker_ms)
  row "cold boot to the answer (ms)" %.0f "$cold_v" "$cold_q"
  row "restore to the answer (ms)" %.0f "$restore_v" "$restore_q"
  printf '%-44s %10s %12s\n' "restore / cold boot (goal: at most 0.05)" \
    "$(fraction "$restore_v" "$cold_v")" "$(fraction "$restore_q" "$cold_q")"
  row "answer after the line, booted guest (ms)" %.1f "$(med boot-vmm answer_ms)" "$(med boot-qemu answer_ms)"
  row "RSS at the answer, restored (MiB)" %.1f "$(med restore-vmm rss_mib)" "$(med restore-qemu rss_mib)"
  row "RSS at the answer, cold boot (MiB)" %.1f "$(med boot-vmm rss_mib)" "$(med boot-qemu rss_mib)"
  row "the snapshot on L1's tmpfs (MiB)" %.1f "$(med echo-snapshots vmm_mib)" "$(med echo-snapshots qemu_mib)"
  echo "counted: cold boots vmm $(counted boot-vmm marker_ms)/$runs, QEMU $(counted boot-qemu marker_ms)/$runs;" \
    "restores vmm $(counted restore-vmm marker_ms)/$runs, QEMU $(counted restore-qemu marker_ms)/$runs"
  echo
  echo "Snapshot time: the ticker guest (vmmtest=ticker: a line every 0.2 s) from its 6th tick; ms from"
  echo "the request's exec to its exit: vmm snapshot --api-socket S --paused DIR against QMP stop, then"
  echo "migrate \"exec:cat >FILE\" until query-migrate says completed (bench/tools/qmp); resumed after each."
  printf '%-44s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  for mib in 256 1024; do
    size="$mib MiB"
    [ "$mib" = 1024 ] && size="1 GiB"
    row "snapshot, $size guest (ms)" %.0f "$(med "snapshot-vmm-$mib" ms)" "$(med "snapshot-qemu-$mib" ms)"
    printf '%-44s %10s %12s\n' "  QEMU's own total-time (ms)" "" "$(fmt %.0f "$(med "snapshot-qemu-$mib" qemu_total_ms)")"
    row "  the snapshot on L1's tmpfs (MiB)" %.1f "$(med "snapshot-vmm-$mib" disk_mib)" "$(med "snapshot-qemu-$mib" disk_mib)"
    row "  the running guest's RSS before (MiB)" %.1f "$(med "ticker-vmm-$mib" rss_mib)" "$(med "ticker-qemu-$mib" rss_mib)"
  done
  echo
  one=$(med ticker-vmm-256 rss_kib)
  echo "Clones: N vmm --restore of the 256 MiB ticker snapshot at once; their smaps_rollup summed once each"
  echo "has printed two ticks; against one cold-booted 256 MiB ticker guest's RSS ($(fmt %.1f "$(med ticker-vmm-256 rss_mib)") MiB)."
  echo "All of L1's memory for them is the snapshot's files (on L1's tmpfs: its RAM, once) plus each"
  echo "clone's own (Anonymous: its copies of the guest pages it wrote, vmm's own memory): \"file + anon\"."
  printf '%-7s %9s %10s %10s %13s %8s %10s %16s %8s\n' clones ticking "RSS, sum" "PSS, sum" "PSS per clone" "/ one" \
    "anon, sum" "file + anon / N" "/ one"
  for n in ${clones//,/ }; do
    total=$(awk -v f="$(med "clones-$n" snapshot_kib)" -v d="$(med "clones-$n" anon_kib)" -v n="$n" \
      'BEGIN { if (f == "-" || d == "-") print "-"; else print (f + d) / n }')
    printf '%-7s %9s %10s %10s %13s %8s %10s %16s %8s\n' "$n" "$(fmt %.1fs "$(med "clones-$n" ticking_s)")" \
      "$(fmt %.1f "$(med "clones-$n" rss_mib)")" "$(fmt %.1f "$(med "clones-$n" pss_mib)")" \
      "$(fmt %.1f "$(med "clones-$n" pss_per_clone_mib)")" "$(ratio "$(med "clones-$n" pss_per_clone_kib)" "$one")" \
      "$(fmt %.1f "$(med "clones-$n" anon_mib)")" \
      "$(fmt %.1f "$(awk -v v="$total" 'BEGIN { print v == "-" ? "-" : v / 1024 }')")" "$(ratio "$total" "$one")"
  done
  echo "(MiB; ticking: from the restores' start until each clone printed two ticks; / one: over that RSS)"
  echo
  echo "Cold boots of the echo guest (boot_time.sh's measures, to the answer instead of /init's marker);"
  echo "L1's transparent huge pages: $(sed -n 's/^BENCH-START .* thp=\([^ ]*\) shmem_thp=\([^ ]*\).*/anonymous \1, shmem \2/p' "$log" | head -n1)"
  # vmm-shmem-thp: vmm again, booted with L1's shmem THP at "advise" (lab_snapshot.sh).
  kinds=("${vmm_kinds[@]}") heads=("${vmm_heads[@]}") shorts=("${vmm_short[@]}") thp=0
  if grep -q '^BENCH-RESULT boot-vmm-shmem-thp ' "$results"; then
    kinds+=(vmm-shmem-thp) heads+=("vmm, shmem THP") shorts+=("shmem THP") thp=1
  fi
  columns=()
  for i in "${!kinds[@]}"; do columns+=("boot-${kinds[i]}=${heads[i]}"); done
  columns+=("boot-qemu=QEMU microvm")
  for i in "${!kinds[@]}"; do columns+=("boot-${kinds[i]}/boot-qemu=${shorts[i]}/QEMU"); done
  for ((i = 1; i < ${#vmm_kinds[@]}; i++)); do
    columns+=("boot-vmm/boot-${vmm_kinds[i]}=vmm/${vmm_short[i]}")
    [ "$thp" = 0 ] || columns+=("boot-vmm-shmem-thp/boot-${vmm_kinds[i]}=shmem THP/${vmm_short[i]}")
  done
  bench_table 40 "${columns[@]}" -- \
    early_marker_ms:"kernel's 'Linux version' (ms)":%.0f marker_ms:"the answer (ms)":%.0f \
    exit_ms:"process exit (ms)":%.0f overhead_mib:"memory overhead at the answer (MiB)":%.1f \
    maxrss_mib:"peak RSS (MiB)":%.1f l2_uptime_s:"L2 kernel's uptime at /init (s)":%.2f \
    vcpu_start_ms:"vmm start to guest entry (ms)":%.1f
  echo
  bench_per_boot BENCH "$log"
} | tee "$out/snapshot.txt"
[ "$(counted restore-vmm marker_ms)" -gt 0 ] && [ "$(counted boot-vmm marker_ms)" -gt 0 ]
