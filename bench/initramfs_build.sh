#!/usr/bin/env bash
# Initramfs build time: how long vmm takes to build its initramfs in memory for Debian's cloud and
# generic kernels (issue 12: under 50 ms of vmm's start-up). Runs on the host, no KVM: builds
# vmm_boot, compiles tools/initramfs_bench.cpp against it (vmm's internal libraries, not the
# installed API), and times `--runs` builds per kernel in one process; see bench/README.md.
#
# usage: initramfs_build.sh [--build DIR] [--runs N] [--out DIR]
#   --build DIR    vmm's CMake build directory (default: <repo>/build); vmm_boot is built there first
#   --runs N       builds per kernel (default 50)
#   --out DIR      where the table and the raw lines go (default: <build>/bench)
# The kernels come from the lab's cache (<repo>/build/lab/kernels, or $VMM_LAB_OUT/kernels), fetched
# by guest-tests/linux/fetch-kernels.sh when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

build=$repo/build runs=50 out=""
bench_options build runs out -- "$@"
bench_positive runs
[ -f "$build/CMakeCache.txt" ] || bench_die "--build $build: not a CMake build directory"
build=$(cd "$build" && pwd)
out=${out:-$build/bench}
mkdir -p "$out"
out=$(cd "$out" && pwd)
kernels=${VMM_LAB_OUT:-$repo/build/lab}/kernels

"$lab_scripts/fetch-kernels.sh" "$kernels" >/dev/null
echo "initramfs_build: building vmm_boot in $build"
cmake --build "$build" -j2 --target vmm_boot >"$out/initramfs-build.log" 2>&1 ||
  { tail -n 30 "$out/initramfs-build.log"; bench_die "building vmm_boot failed (log: $out/initramfs-build.log)"; }
work=$(mktemp -d /tmp/vmm-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
# The same optimisation as the build's libraries are compiled with matters less than theirs: the
# tool only calls them.
# shellcheck disable=SC2046 # pkg-config's flags are words
g++ -std=c++20 -O2 -Wall -Wextra -Werror -I"$repo" -o "$work/initramfs_bench" \
  "$here/tools/initramfs_bench.cpp" "$build/boot/libvmm_boot.a" "$build/base/libvmm_floor.a" \
  $(pkg-config --cflags --libs fmt spdlog liblzma libzstd) -pthread ||
  bench_die "compiling tools/initramfs_bench.cpp failed"

bench_describe
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$work/initramfs_bench" "$runs" "$kernels" cloud generic | tee "$out/initramfs_results.txt"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# field NAME LINE: the value of NAME=... in a result line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
{
  echo "vmm initramfs build benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($build_type build)"
  echo "machine: $(nproc) CPUs, $cpu_model, kernel $(uname -r); load average $load_before at the start, $load_after at the end"
  echo "$runs builds per kernel in one process, root filesystem ext4; no QEMU counterpart (QEMU takes an initramfs, it never builds one)"
  echo
  echo "| kernel | modules | archive (KiB) | first build (ms) | fresh memory: median (ms) | max (ms) | touched memory: median (ms) | max (ms) | copy as large into fresh memory: median (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  while read -r line; do
    echo "| $(field flavour "$line") ($(field release "$line")) | $(field modules "$line") |" \
      "$(($(field bytes "$line") / 1024)) | $(field first_ms "$line") |" \
      "$(field fresh_median_ms "$line") | $(field fresh_max_ms "$line") |" \
      "$(field touched_median_ms "$line") | $(field touched_max_ms "$line") |" \
      "$(field copy_median_ms "$line") |"
  done <"$out/initramfs_results.txt"
} | tee "$out/initramfs_build.txt"
