#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. installs the Debian packages it needs (scripts/install-deps.sh),
#   2. builds vmm, the unit tests and the test guests (-Wall -Wextra -Werror),
#   3. runs the unit tests and the test guests on this host's /dev/kvm,
#   4. boots stock Debian kernels with vmm in the nested lab (tests labelled "lab"),
#   5. rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs 3. again,
#   6. runs every libFuzzer target for a bounded time, and the saved crash reproducers
#      (scripts/fuzz.sh: clang, ASan+UBSan; any crash, leak or UB report fails),
#   7. checks clang-format and clang-tidy over every source (scripts/lint.sh).
# Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

scripts/install-deps.sh || exit 1

passed=0
failed=0
# Runs ctest in a build dir and adds its counts to the totals.
run_ctest() {
  local dir=$1
  shift
  local log
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --no-tests=error "$@" 2>&1 | tee "$log"
  local total fails
  total=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  fails=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  if [ -z "$total" ]; then
    echo "test.sh: ctest in $dir did not report a result" >&2
    failed=$((failed + 1))
  else
    passed=$((passed + total - fails))
    failed=$((failed + fails))
  fi
  rm -f "$log"
}

build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" "$@" >/dev/null && cmake --build "$dir" -j"$jobs"
}

echo "== build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
  echo "== unit and host-KVM tests"
  run_ctest build -LE lab -j"$jobs"
  echo "== nested lab (stock Debian kernels under vmm)"
  run_ctest build -L lab -V
else
  echo "test.sh: build failed" >&2
  failed=$((failed + 1))
fi

echo "== ASan + UBSan build"
if build build-asan -DCMAKE_BUILD_TYPE=Debug -DVMM_SANITIZE=ON; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest build-asan -LE lab -j"$jobs"
else
  echo "test.sh: sanitizer build failed" >&2
  failed=$((failed + 1))
fi

echo "== fuzz (every target for 30 s, then the regression inputs)"
if scripts/fuzz.sh --seconds 30; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "== lint (clang-format, clang-tidy)"
if scripts/lint.sh build; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
