#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Stages, in order:
#   deps           scripts/install-deps.sh (Debian's packages); the lab's Debian kernels
#                  (guest-tests/linux/fetch-kernels.sh into build/lab/kernels), which the unit
#                  tests read through $VMM_LAB_KERNELS
#   build          vmm, the unit tests and the test guests: GCC, Release (-O3), -Werror (VMM_WERROR)
#   asan build     the same with ASan+UBSan: GCC, Debug, -Werror
#   tsan build     the unit test binaries only (tests/CMakeLists.txt's vmm_unit_tests) with
#                  ThreadSanitizer: GCC, RelWithDebInfo, -Werror
#   unit           the unit tests; with them the "kvm" tests (test guests, bad input that needs KVM,
#                  least privilege, the C and C++ machine API, the installed examples) when this
#                  host's /dev/kvm can boot the hello test guest
#   asan           the same under ASan+UBSan
#   tsan           the unit tests (label "unit") under ThreadSanitizer: a race or a lock-order
#                  inversion fails its test
#   lab            the nested lab (QEMU/TCG L1 with kvm-amd): stock Debian kernels under vmm; and,
#                  when this host's /dev/kvm can't run the test guests, the "kvm" tests of both
#                  builds inside L1, each counted on its own
#   fuzz           scripts/fuzz.sh: builds the libFuzzer targets (clang, ASan+UBSan, -Werror), runs
#                  each for 10 s (--full: 60 s), and the saved regression inputs
#   lint           clang-format and clang-tidy (scripts/lint.sh)
# Compiles go through ccache when it is there (install-deps.sh installs it), so a run after a build
# of the same code on the same machine recompiles only what changed.
#
# Usage: scripts/test.sh [--full]
#   --full   fuzz each target for 60 s instead of 10 s (the default run's budget: 40 minutes on a
#            2-core machine)
# Environment: VMM_KVM_TESTS=host|lab forces where the "kvm" tests run (default: probed).
# Ends with a table of each stage's wall time, where the "kvm" tests ran, and one line
# "N passed, M failed, K skipped" (a skipped test says why in its stage's output).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
fuzz_seconds=10
case ${1:-} in
  --full) fuzz_seconds=60 ;;
  "") ;;
  -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) echo "test.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

passed=0 failed=0 skipped=0
stage_rows=()
stage_name="" stage_start=0 stage_counts=""
begin_stage() {
  stage_name=$1 stage_start=$SECONDS
  stage_counts="$passed $failed $skipped"
  echo "== $stage_name: $2"
}
end_stage() {
  local p f s
  read -r p f s <<<"$stage_counts"
  stage_rows+=("$(printf '%-16s %4d:%02d  %5d %6d %7d' "$stage_name" $(((SECONDS - stage_start) / 60)) \
    $(((SECONDS - stage_start) % 60)) $((passed - p)) $((failed - f)) $((skipped - s)))")
}
# count PASSED FAILED SKIPPED: adds to the totals.
count() { passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3)); }

# Runs ctest in a build dir and adds its counts: ctest counts a skipped test as passed, and lists
# it under "The following tests did not run".
run_ctest() {
  local dir=$1 log total fails skips
  shift
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --no-tests=error "$@" 2>&1 | tee "$log"
  total=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  fails=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  skips=$(grep -cE '^[[:space:]]*[0-9]+ - .* \((Skipped|Disabled)\)$' "$log")
  if [ -z "$total" ]; then
    echo "test.sh: ctest in $dir did not report a result" >&2
    count 0 1 0
  else
    count $((total - fails - skips)) "$fails" "$skips"
  fi
  rm -f "$log"
}

launcher=()
if command -v ccache >/dev/null; then
  # Paths below the checkout are hashed relative to it, so another clone of the same code hits.
  export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=true
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# build DIR CMAKE_ARGS... [-- TARGETS...]: configures (-Werror, ccache; a new build folder with
# Ninja: one that scripts/quickstart.sh configured keeps its generator, which CMake can't change)
# and builds it: everything, or only TARGETS.
build() {
  local dir=$1 generator=() args=() targets=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  [ $# -gt 0 ] && targets=(--target "$@")
  [ -e "$dir/CMakeCache.txt" ] || generator=(-G Ninja)
  cmake -S "$root" -B "$dir" "${generator[@]}" -DVMM_WERROR=ON "${launcher[@]}" "${args[@]}" >/dev/null &&
    cmake --build "$dir" -j"$jobs" "${targets[@]}"
}

begin_stage deps "Debian packages, and the lab's Debian kernels (the unit tests read them too)"
scripts/install-deps.sh || count 0 1 0
# The lab stage would fetch them anyway (into the same cache); fetched first, the unit tests check
# the initramfs builder against their real modules trees ($VMM_LAB_KERNELS; unset, they skip).
if guest-tests/linux/fetch-kernels.sh build/lab/kernels; then
  # The ELF vmlinux, as build-l1-initramfs.sh extracts it for the lab.
  [ -s build/lab/kernels/cloud/vmlinux ] ||
    guest-tests/linux/extract-vmlinux.sh build/lab/kernels/cloud/vmlinuz build/lab/kernels/cloud/vmlinux
  export VMM_LAB_KERNELS=$root/build/lab/kernels
else
  echo "test.sh: fetching the lab's kernels failed: the unit tests on real kernels will skip" >&2
  count 0 1 0
fi
end_stage

begin_stage build "GCC, Release (-O3)"
built=0
if build build -DCMAKE_BUILD_TYPE=Release; then built=1; else echo "test.sh: build failed" >&2; count 0 1 0; fi
end_stage

begin_stage "asan build" "GCC, Debug, ASan+UBSan"
sanitize_built=0
if build build-asan -DCMAKE_BUILD_TYPE=Debug -DVMM_SANITIZE=ON; then
  sanitize_built=1
else
  echo "test.sh: sanitizer build failed" >&2
  count 0 1 0
fi
end_stage

# ThreadSanitizer excludes ASan, so it is a third build; only the unit test binaries (label "unit"),
# to keep it cheap: the list is tests/CMakeLists.txt's vmm_unit_tests.
begin_stage "tsan build" "GCC, RelWithDebInfo, ThreadSanitizer: the unit test binaries"
tsan_built=0
if build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMM_TSAN=ON -- floor_tests devices_tests \
  boot_tests firmware_tests machine_tests security_tests; then
  tsan_built=1
else
  echo "test.sh: ThreadSanitizer build failed" >&2
  count 0 1 0
fi
end_stage

# Where the "kvm" tests run: on this host when its /dev/kvm boots the hello test guest, else in L1.
kvm_where=${VMM_KVM_TESTS:-}
kvm_why=""
if [ -z "$kvm_where" ] && [ $built -eq 1 ]; then
  probe=$(timeout 60 build/vmm/vmm --kernel build/guest-tests/hello.bzImage --memory 64M \
    --serial stdio --cmdline "console=ttyS0 exit=7" --timeout 30 --debug-exit 2>&1)
  probe_status=$?
  if [ $probe_status -eq 7 ]; then
    kvm_where=host
  else
    kvm_where=lab
    kvm_why=$(echo "$probe" | grep -m1 'vmm:' || echo "the hello guest exited with status $probe_status")
  fi
fi
[ "$kvm_where" = host ] || kvm_where=lab
# ctest's label regex of what runs here: the lab and, when they run in the lab, the "kvm" tests.
leave_out=lab
[ "$kvm_where" = lab ] && leave_out='lab|kvm'
echo "test.sh: the \"kvm\" tests run on $([ "$kvm_where" = host ] && echo "this host's /dev/kvm" || echo "the lab's L1: this host can't boot the test guests (${kvm_why:-VMM_KVM_TESTS=lab})")"
[ "$kvm_where" = lab ] && export VMM_KVM_TESTS_IN_LAB=1

if [ $built -eq 1 ]; then
  begin_stage unit "unit tests$([ "$kvm_where" = host ] && echo ' and the "kvm" tests')"
  run_ctest build -LE "$leave_out" -j"$jobs"
  end_stage
fi

if [ $sanitize_built -eq 1 ]; then
  begin_stage asan "the same under ASan+UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest build-asan -LE "$leave_out" -j"$jobs"
  end_stage
fi

if [ $tsan_built -eq 1 ]; then
  begin_stage tsan "the unit tests under ThreadSanitizer"
  # Left out, each counted as skipped: tests whose "guest" is a thread of the test writing the
  # rings in guest RAM. SplitQueue orders its ring accesses against the guest with standalone
  # fences, which TSan does not model, so it reports every ring access (and the net one then runs
  # for 10 minutes).
  tsan_out='^(RacingGuestTest|VirtioNetConcurrencyTest)\.'
  while read -r name; do
    echo "test.sh: tsan: skipped $name: its guest is a thread writing the rings (fences TSan can't see)"
    count 0 0 1
  done < <(ctest --test-dir build-tsan -N -L unit -R "$tsan_out" | sed -n 's/^ *Test *#[0-9]*: //p')
  # A report fails its test (TSan's exit status 66); deadlock reports show both lock stacks.
  TSAN_OPTIONS=second_deadlock_stack=1 run_ctest build-tsan -L unit -E "$tsan_out" -j"$jobs"
  end_stage
fi

if [ $built -eq 1 ]; then
  begin_stage lab "stock Debian kernels under vmm$([ "$kvm_where" = lab ] && echo ', and the "kvm" tests') in the nested lab"
  lab_args=(--vmm build/vmm/vmm --out build/lab)
  if [ "$kvm_where" = lab ]; then
    lab_args+=(--host-tests build/lab_host_tests.txt)
    [ $sanitize_built -eq 1 ] && lab_args+=(--host-tests build-asan/lab_host_tests.txt)
  fi
  lab_log=$(mktemp)
  guest-tests/linux/run-lab.sh "${lab_args[@]}" 2>&1 | tee "$lab_log"
  if read -r p f s < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed\(, \([0-9]*\) skipped\)\{0,1\}$/\1 \2 \4/p' "$lab_log" | tail -1); then
    count "$p" "$f" "${s:-0}"
  else
    echo "test.sh: the lab did not report a result" >&2
    count 0 1 0
  fi
  kvm_in_lab=$(sed -n 's/^lab: host tests: //p' "$lab_log")
  rm -f "$lab_log"
  end_stage
fi

begin_stage fuzz "every target for ${fuzz_seconds} s, then the regression inputs"
fuzz_log=$(mktemp)
scripts/fuzz.sh --seconds "$fuzz_seconds" 2>&1 | tee "$fuzz_log"
if read -r n f < <(sed -n 's/^fuzz: \([0-9]*\) targets, \([0-9]*\) failed$/\1 \2/p' "$fuzz_log"); then
  count $((n - f)) "$f" 0
else
  count 0 1 0
fi
rm -f "$fuzz_log"
end_stage

begin_stage lint "clang-format, clang-tidy"
if scripts/lint.sh build; then count 1 0 0; else count 0 1 0; fi
end_stage

echo
echo "== stage times (wall; passed, failed, skipped as counted in that stage)"
printf '%-16s %7s  %5s %6s %7s\n' stage time passed failed skipped
printf '%s\n' "${stage_rows[@]}"
printf '%-16s %4d:%02d\n' total $((SECONDS / 60)) $((SECONDS % 60))
if [ "$kvm_where" = host ]; then
  echo "the \"kvm\" tests ran on this host's /dev/kvm (unit and asan stages)"
else
  echo "the \"kvm\" tests ran in the lab's L1 (${kvm_in_lab:-none ran}): this host can't boot the test guests (${kvm_why:-VMM_KVM_TESTS=lab})"
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
