#!/usr/bin/env bash
# Machine API benchmark: how fast one process creates, boots and tears down machines with libvmm's
# C++ API, against the vmm command (and QEMU -M microvm where it can run the guest), on this host's
# /dev/kvm with the hello test guest. Installs the build into a temporary prefix, builds
# bench/tools/machine_bench.cpp against it with find_package(vmm), and prints a table; see
# bench/README.md.
#
# usage: machine_api.sh [--build DIR] [--runs N] [--machines M] [--threads T] [--repeats R] [--out DIR]
#   --build DIR    vmm's CMake build directory (default: <repo>/build); vmm, libvmm and the test
#                  guests are built there first
#   --runs N       timed boots per repeat for each way of starting a machine (default 20)
#   --machines M   machines per rate measurement, and processes per processes/s figure (default 50)
#   --threads T    threads for the parallel rates (default: nproc)
#   --repeats R    repeats of the whole set, alternating (default 3)
#   --out DIR      where the table, the raw lines and the bench build go (default: <build>/bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench_lib.sh"

build=$repo/build runs=20 machines=50 threads=$(nproc) repeats=3 out=""
bench_options build runs machines threads repeats out -- "$@"
bench_positive runs machines threads repeats
[ -f "$build/CMakeCache.txt" ] || bench_die "--build $build: not a CMake build directory"
build=$(cd "$build" && pwd)
out=${out:-$build/bench}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# -c first: opening a missing /dev/kvm read-write would create it as a plain file.
if ! [ -c /dev/kvm ] || ! (exec 3<>/dev/kvm) 2>/dev/null; then
  bench_die "/dev/kvm can't be opened: this benchmark runs guests on it directly"
fi
command -v gcc >/dev/null || bench_die "gcc not found"

# --- build: vmm, libvmm, the test guests; install; the bench program against the install ---
echo "machine_api: building vmm, libvmm and the test guests in $build"
cmake --build "$build" -j2 --target vmm libvmm libvmm_shared test_guests >"$out/build.log" 2>&1 ||
  { tail -n 30 "$out/build.log"; bench_die "building vmm failed (log: $out/build.log)"; }
work=$(mktemp -d /tmp/vmm-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$out/install.log" ||
  bench_die "cmake --install $build failed (log: $out/install.log)"
cmake -S "$here" -B "$work/bench-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$out/bench-configure.log" ||
  bench_die "configuring bench/ against the installed vmm failed (log: $out/bench-configure.log)"
cmake --build "$work/bench-build" -j2 >"$out/bench-build.log" 2>&1 ||
  { cat "$out/bench-build.log"; bench_die "building machine_bench failed"; }
bench=$work/bench-build/machine_bench
vmm=$prefix/bin/vmm
gcc -O2 -static -Wall -Wextra -o "$work/stamp" "$here/tools/stamp.c"
stamp=$work/stamp
hello=$build/guest-tests/hello.bzImage
[ -f "$hello" ] || bench_die "$hello was not built"

memory_mib=128
cmdline="console=ttyS0 exit=0"
greeting="hello from the test guest"
vmm_command=("$vmm" --kernel "$hello" --memory "${memory_mib}M" --cmdline "$cmdline"
  --serial stdio --timeout 30 --debug-exit)
# isa-debug-exit turns the guest's status S into QEMU's exit status (S << 1) | 1.
# shellcheck disable=SC2054  # the commas are QEMU's, inside one argument
qemu_command=(qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -display none
  -m "$memory_mib" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$hello"
  -append "$cmdline")

# --- can QEMU run the guest on this /dev/kvm? ---
# One try, bounded: it counts only if the greeting comes and QEMU exits with the guest's status.
qemu_ok=0 qemu_note=""
if ! command -v qemu-system-x86_64 >/dev/null; then
  qemu_note="qemu-system-x86_64 is not installed"
else
  timeout 10 "${qemu_command[@]}" >"$out/qemu-probe.log" 2>&1 && status=0 || status=$?
  if [ "$status" -eq 1 ] && grep -q "$greeting" "$out/qemu-probe.log"; then
    qemu_ok=1
  elif [ "$status" -eq 124 ] && ! grep -q . <(tr -d '\r' <"$out/qemu-probe.log" | grep -v '^qemu-system-x86_64: '); then
    qemu_note="QEMU ran under -accel kvm but the guest printed nothing in 10 s and never exited: QEMU enters a bzImage through its 16-bit setup code, and the test guests have only the 64-bit entry (their setup code is 'cli; hlt')"
  else
    qemu_note="QEMU failed (exit status $status): $(tr -d '\r' <"$out/qemu-probe.log" | head -n 3 | xargs)"
  fi
fi

# --- the runs, alternating ---
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(loadavg)
raw=$out/machine_api_results.txt
: >"$raw"
# Processes per second: M processes, each booting the guest to its exit, from P loops in parallel.
procs_per_sec() {
  local name=$1 ok_status=$2 parallel=$3
  shift 3
  local start end t failed=0 pids=()
  start=$(date +%s%N)
  for ((t = 0; t < parallel; t++)); do
    (
      for ((i = t; i < machines; i += parallel)); do
        "$@" >/dev/null 2>&1 && status=0 || status=$?
        [ "$status" -eq "$ok_status" ] || { echo "machine_api: $name: a process exited $status, want $ok_status" >&2; exit 1; }
      done
    ) &
    pids+=($!)
  done
  for t in "${pids[@]}"; do wait "$t" || failed=1; done
  end=$(date +%s%N)
  [ $failed -eq 0 ] || bench_die "$name processes failed"
  awk -v n="$machines" -v p="$parallel" -v ns=$((end - start)) -v name="$name" \
    'BEGIN { printf "PROCS name=%s parallel=%d processes=%d seconds=%.3f per_sec=%.1f\n", name, p, n, ns / 1e9, n / (ns / 1e9) }'
}
for ((r = 1; r <= repeats; r++)); do
  echo "machine_api: repeat $r of $repeats (load average $(loadavg))"
  echo "LOAD repeat=$r loadavg=$(loadavg | tr ' ' ,)" >>"$raw"
  for ((i = 0; i < runs; i++)); do
    if [ $qemu_ok -eq 1 ]; then
      line=$("$stamp" --marker "$greeting" --guest-mem "$memory_mib" --timeout 30 -- \
        "${qemu_command[@]}" 2>>"$out/qemu-stderr.log")
      echo "COMMAND name=qemu repeat=$r run=$i ${line#STAMP }" >>"$raw"
    fi
    line=$("$stamp" --marker "$greeting" --guest-mem "$memory_mib" --timeout 30 -- \
      "${vmm_command[@]}" 2>>"$out/vmm-stderr.log")
    echo "COMMAND name=vmm repeat=$r run=$i ${line#STAMP }" >>"$raw"
  done
  for parallel in 1 "$threads"; do
    if [ $qemu_ok -eq 1 ]; then
      line=$(procs_per_sec qemu 1 "$parallel" "${qemu_command[@]}")
      echo "$line repeat=$r" >>"$raw"
    fi
    line=$(procs_per_sec vmm 0 "$parallel" "${vmm_command[@]}")
    echo "$line repeat=$r" >>"$raw"
    [ "$threads" -gt 1 ] || break
  done
  "$bench" --kernel "$hello" --cmdline "$cmdline" --memory "$memory_mib" --runs "$runs" \
    --machines "$machines" --threads "$threads" | sed "s/\$/ repeat=$r/" >>"$raw" ||
    bench_die "machine_bench failed"
done
load_end=$(loadavg)

# --- the table ---
# values TAG FIELD [FILTER...]: that field of every raw line starting TAG whose fields match every
# FILTER (key=value), one per line.
values() {
  local tag=$1 name=$2
  shift 2
  awk -v tag="$tag" -v name="$name" -v filters="$*" '
    $1 == tag {
      delete f
      for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      n = split(filters, fl, " ")
      for (i = 1; i <= n; i++) { split(fl[i], kv, "="); if (f[kv[1]] != kv[2]) next }
      if (name in f) print f[name]
    }' "$raw"
}
# "median (min-max)" of the values on stdin, D decimals.
spread() { sort -g | awk -v d="${1:-1}" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.*f (%.*f-%.*f)", d, m, d, v[1], d, v[NR] }'; }
# Warm machines only: run 0 is each process's first machine, reported apart.
api() { values LATENCY "$1" | paste - <(values LATENCY run) | awk '$2 != 0 { print $1 }' | median; }
api_cold() { values LATENCY "$1" run=0 | median; }
# A command's boot counts if it exited with the guest's status (QEMU: (0 << 1) | 1).
cmd() {
  local ok=0
  [ "$1" = qemu ] && ok=1
  values COMMAND "$2" name="$1" status=$ok | median
}
fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.*f", d, v }'; }
bench_describe
kvm_module=$(find /sys/module -maxdepth 1 -name 'kvm_*' -printf '%f\n' 2>/dev/null | paste -sd' ' || true)
vmm_ok=$(values COMMAND status name=vmm | grep -cx 0 || true)
vmm_all=$(values COMMAND status name=vmm | wc -l)
row() { printf '%-46s %20s %20s %12s %8s\n' "$@"; }
{
  echo "vmm machine API benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty"
  echo "machine: $(nproc) CPUs, $cpu_model, kernel $(uname -r), /dev/kvm from ${kvm_module:-?}"
  echo "load average: $load_start at the start, $load_end at the end"
  echo "guest: $(basename "$hello"), 1 vCPU, $memory_mib MiB, \"$cmdline\"; $repeats repeats of $runs boots per way, $machines machines per rate, $threads threads in parallel"
  echo "vmm command: $vmm_ok of $vmm_all boots exited 0"
  if [ $qemu_ok -eq 1 ]; then
    echo "reference: $(qemu-system-x86_64 --version | head -n1), -M microvm"
  else
    echo "no QEMU column: $qemu_note"
  fi
  echo
  echo "Latency, medians (ms); API: in one process, t0 just before Machine::create; commands: t0 just"
  echo "before fork/exec, the console read from the process's stdout"
  row "" "API" "vmm command" "API/command" "QEMU"
  q() { [ $qemu_ok -eq 1 ] && fmt "$(cmd qemu "$1")" 1 || echo "-"; }
  row "create() returned" "$(fmt "$(api create_ms)")" "" "" ""
  row "start() returned" "$(fmt "$(api start_ms)")" "" "" ""
  a=$(api first_byte_ms) c=$(cmd vmm first_output_ms)
  row "first console byte" "$(fmt "$a")" "$(fmt "$c" 1)" "$(ratio "$a" "$c")" "$(q first_output_ms)"
  row "guest exited (wait() returned)" "$(fmt "$(api exit_ms)")" "" "" ""
  a=$(api destroy_ms) c=$(cmd vmm exit_ms)
  row "machine gone (destroyed / process exited)" "$(fmt "$(api destroy_ms)")" "$(fmt "$c" 1)" "$(ratio "$a" "$c")" "$(q exit_ms)"
  row "first machine in the process: first byte" "$(fmt "$(api_cold first_byte_ms)")" "" "" ""
  row "first machine in the process: destroyed" "$(fmt "$(api_cold destroy_ms)")" "" "" ""
  echo
  echo "Rates, per second: median over the repeats (min-max)"
  row "" "1 thread" "$threads threads" "" ""
  echo "(processes: 1 and $threads loops spawning them in parallel)"
  rate() { values RATE per_sec what="$1" threads="$2" | spread 1; }
  row "machines: create+start+exit+destroy" "$(rate full 1)" "$(rate full "$threads")" "" ""
  row "machines: create+destroy (never started)" "$(rate create 1)" "$(rate create "$threads")" "" ""
  cpu() { values RATE cpu_ms_per_machine what="$1" threads="$2" | median; }
  row "CPU ms per machine: create+start+exit+destroy" "$(fmt "$(cpu full 1)")" "$(fmt "$(cpu full "$threads")")" "" ""
  row "CPU ms per machine: create+destroy" "$(fmt "$(cpu create 1)")" "$(fmt "$(cpu create "$threads")")" "" ""
  procs() { values PROCS per_sec name="$1" parallel="$2" | spread 1; }
  row "vmm command processes, each to its exit" "$(procs vmm 1)" "$(procs vmm "$threads")" "" ""
  if [ $qemu_ok -eq 1 ]; then
    row "QEMU processes, each to its exit" "$(procs qemu 1)" "$(procs qemu "$threads")" "" ""
  fi
  echo
  echo "raw lines: $raw"
} | tee "$out/machine_api.txt"
