#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/*_fuzz.cpp, see docs/FUZZING.md) for a bounded time:
#   1. configures (clang, -DVMM_FUZZ=ON) and builds the fuzz build if needed,
#   2. replays the saved crash inputs under tests/fuzz/regressions/<target>/ (none may fail),
#   3. fuzzes each target for --seconds from a temporary copy of tests/fuzz/corpus/<target>/ (the
#      repository is not modified), with leak detection, and prints executions, exec/s and result.
# A crash, leak, timeout or sanitizer report fails the target; its reproducer is kept under
# build/fuzz-artifacts/<target>/. Ends with "fuzz: N targets, M failed"; exits non-zero if M > 0.
#
# Usage: scripts/fuzz.sh [--seconds N] [--build DIR] [TARGET...]   (default: 30 s, build-fuzz)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=30
build="$root/build-fuzz"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$(realpath -m "$2"); shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for source in tests/fuzz/*_fuzz.cpp; do
    name=$(basename "$source" .cpp)
    targets+=("${name%_fuzz}")
  done
fi

artifacts="$root/build/fuzz-artifacts"
logs="$build/fuzz-logs"
work=$(mktemp -d /tmp/vmm-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== fuzz build ($build)"
if ! grep -qs '^VMM_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
  launcher=()
  command -v ccache >/dev/null &&
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DVMM_FUZZ=ON -DVMM_BUILD_TESTS=OFF -DVMM_WERROR=ON \
    "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || { echo "fuzz: configure failed" >&2; exit 1; }
fi
if ! cmake --build "$build" -j"$(nproc)" --target fuzz_targets >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  echo "fuzz: build failed" >&2
  echo "fuzz: ${#targets[@]} targets, ${#targets[@]} failed"
  exit 1
fi
mkdir -p "$logs"

# Sanitizer reports end the run (the build uses -fno-sanitize-recover), with a stack.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=0
# stat value from a -print_final_stats log.
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

for target in "${targets[@]}"; do
  binary="$build/tests/fuzz/${target}_fuzz"
  if [ ! -x "$binary" ]; then
    printf '%-16s %s\n' "$target" "FAILED (no binary $binary)"
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$artifacts/$target"
  result=ok

  # Saved crash inputs first: each must now run clean.
  regressions=()
  if [ -d "tests/fuzz/regressions/$target" ]; then
    mapfile -t regressions < <(find "tests/fuzz/regressions/$target" -type f | sort)
  fi
  if [ ${#regressions[@]} -gt 0 ] &&
    ! "$binary" -detect_leaks=1 "${regressions[@]}" >"$logs/$target.regressions.log" 2>&1; then
    result="FAILED (a regression input crashes: $logs/$target.regressions.log)"
  fi

  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null
  log="$logs/$target.log"
  "$binary" -max_total_time="$seconds" -timeout=10 -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target/" "$corpus" >"$log" 2>&1
  status=$?
  if [ $status -ne 0 ]; then
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $status; reproducer ${reproducer:-none}; log $log)"
  fi
  execs=$(final_stat number_of_executed_units "$log")
  rate=$(final_stat average_exec_per_sec "$log")
  printf '%-16s %10s execs %8s exec/s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "$result"
  if [ "$result" != ok ]; then
    failed=$((failed + 1))
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant failed' \
      "$log" "$logs/$target.regressions.log" 2>/dev/null | sed 's/^/    /'
  fi
  rmdir "$artifacts/$target" 2>/dev/null
done

echo "fuzz: ${#targets[@]} targets, ${failed} failed"
[ "$failed" -eq 0 ]
