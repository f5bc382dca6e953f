#!/bin/sh
# Runs, inside the nested lab's L1 (busybox sh), the host's "kvm"-labelled tests: the ones that boot
# the test guests on a /dev/kvm, when the host's own can't run them (scripts/test.sh decides). L1's
# kvm-amd is a real KVM. The list is tests/CMakeLists.txt's lab_host_tests.txt, less its copy lines
# (build-l1-initramfs.sh put every file at the path it has on the host):
#   gtest NAME PROGRAM   each GoogleTest test is one result: LAB-RESULT host/NAME/<Suite.Test> ...
#   run NAME COMMAND...  one result, LAB-RESULT host/NAME: status 0 passes, 77 skips, else fails
# A failure shows the test's own output below its result line ("  | "). A program that crashes or
# overruns HOST_TEST_TIMEOUT fails the test it was in (or, between tests, host/NAME). A GoogleTest
# test that fails is reported as LAB-RETRY host/NAME/<Suite.Test> FAIL (with its output) and run
# again alone, up to three runs in all (HOST_TEST_TRIES); the last gives its result, "on a second
# try" (or third) if a later run passes. Why: L1 glitches now and then under TCG (the hello guest
# triple-faulted halfway through a line it prints, in tests that pass in every other run; a scenario
# was seen to glitch on two runs in a row), and a glitch should not fail the whole suite. Ends with
# LAB-HOST-TESTS-END <passed> <failed> <skipped>. After each program's results: LAB-HOST-DONE <its
# number in LIST>, so that a new L1 after one that crashed can start at the next (FIRST).
# Usage: host-tests.sh LIST [FIRST]
list=$1 first=${2:-1}
HOST_TEST_TIMEOUT=${HOST_TEST_TIMEOUT:-900}
HOST_TEST_TRIES=3
# At most this many reruns per L1 boot, so that a build that fails many tests for real can't triple
# the lab's time (a hung test costs its whole timeout each run); past it, a first failure stands.
HOST_TEST_RETRY_BUDGET=${HOST_TEST_RETRY_BUDGET:-6}
# Here every exit costs tens of microseconds and the tests' own code runs under TCG: their liveness
# bounds stretch 4 times, and the create-and-destroy leak check makes 200 machines, not 1000
# (tests/integration/guest_run.hpp).
export VMM_TEST_TIME_SCALE=4
export VMM_TEST_CREATE_DESTROY_ROUNDS=200

# to_results KIND NAME TRY: the program's output, then "HOST-TEST-EXIT <status>", turned into result
# lines as they come (KIND gtest: one per test; run: one for the program). Busybox's timeout leaves
# its child killed by SIGTERM: status 143. Before the last try, a failed GoogleTest test is a
# LAB-RETRY line and its name goes to $retry (and to $spent, the reruns granted so far); on a later
# try (that test alone), a pass says which.
retry=${TMPDIR:-/tmp}/host-tests.retry
spent=${TMPDIR:-/tmp}/host-tests.spent
to_results() {
  awk -v kind="$1" -v name="$2" -v try="$3" -v last="$HOST_TEST_TRIES" -v retry="$retry" \
    -v spent="$spent" -v budget="$HOST_TEST_RETRY_BUDGET" \
    -v left="$((HOST_TEST_RETRY_BUDGET - $(wc -l <"$spent")))" -v limit="$HOST_TEST_TIMEOUT" '
    function show(   i, from) {
      from = n > 40 ? n - 39 : 1
      if (from > 1) print "  | (" from - 1 " earlier lines left out)"
      for (i = from; i <= n; i++) print "  | " out[i]
    }
    function result(test, verdict, detail,   tag) {
      tag = "LAB-RESULT"
      if (verdict == "FAIL" && test != "" && try < last) {
        if (left > 0) {
          left--
          tag = "LAB-RETRY"
          print test >>retry
          print test >>spent
        } else {
          detail = detail " (not run again: all " budget " reruns of this L1 spent)"
        }
      }
      if (verdict == "PASS" && try > 1) detail = detail " on a " (try == 2 ? "second" : "third") " try"
      print tag " host/" name (test == "" ? "" : "/" test) " " verdict (detail == "" ? "" : " " detail)
      fflush()
      count[verdict]++
    }
    # A skip says why on the line before its [  SKIPPED ] line.
    function last_line(   i) {
      for (i = n; i > 0; i--) if (out[i] !~ /^[[:space:]]*$/ && out[i] !~ /: Skipped$/) return out[i]
      return ""
    }
    kind == "gtest" && /^\[ RUN      \] / { test = $4; n = 0; next }
    kind == "gtest" && /^\[ +(OK|FAILED|SKIPPED) +\] [^ ]+(, where .*)? \([0-9]+ ms\)$/ && test != "" {
      verdict = $2 == "OK" ? "PASS" : $2 == "FAILED" ? "FAIL" : "SKIP"
      sub(/,$/, "", $4)
      result($4, verdict, verdict == "SKIP" ? last_line() : $(NF - 1) " " $NF)
      if (verdict == "FAIL") show()
      test = ""; n = 0; next
    }
    /^HOST-TEST-EXIT / {
      status = $2
      why = status == 143 ? "overran " limit " s" : "exited with status " status
      if (kind == "run") {
        if (status == 0) result("", "PASS", "")
        else if (status == 77) result("", "SKIP", n ? out[n] : "")
        else { result("", "FAIL", why); show() }
      } else if (test != "") { result(test, "FAIL", "the program " why " during this test"); show() }
      else if (status != 0 && count["FAIL"] == 0) { result("", "FAIL", "the program " why); show() }
      next
    }
    { out[++n] = $0 }
  '
}

results=${TMPDIR:-/tmp}/host-tests.results
: >"$results"
: >"$spent"
echo "LAB-HOST-TESTS-START $(grep -cE '^(gtest|run) ' "$list") programs"
program=0
while read -r kind name command; do
  # shellcheck disable=SC2086 # the command is a list of words
  case $kind in
    gtest) set -- $command --gtest_color=no ;;
    run) set -- $command ;;
    *) continue ;;
  esac
  program=$((program + 1))
  [ "$program" -ge "$first" ] || continue
  : >"$retry"
  { timeout "$HOST_TEST_TIMEOUT" "$@" </dev/null 2>&1; echo "HOST-TEST-EXIT $?"; } |
    to_results "$kind" "$name" 1 | tee -a "$results"
  try=2
  while [ -s "$retry" ] && [ $try -le $HOST_TEST_TRIES ]; do
    mv "$retry" "$retry.this"
    : >"$retry"
    # (A later --gtest_filter overrides the list's own.)
    while read -r test; do
      { timeout "$HOST_TEST_TIMEOUT" "$@" --gtest_filter="$test" </dev/null 2>&1; echo "HOST-TEST-EXIT $?"; } |
        to_results "$kind" "$name" $try | tee -a "$results"
    done <"$retry.this"
    try=$((try + 1))
  done
  echo "LAB-HOST-DONE $program"
done <"$list"
count() { grep -c "^LAB-RESULT [^ ]* $1" "$results"; }
echo "LAB-HOST-TESTS-END $(count PASS) $(count FAIL) $(count SKIP)"
