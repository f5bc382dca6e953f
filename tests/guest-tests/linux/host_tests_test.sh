#!/usr/bin/env bash
# guest-tests/linux/host-tests.sh (what the nested lab's L1 runs) on a fake GoogleTest program: a
# test that fails once passes on its second try, one that fails twice on its third, one that always
# fails fails after three runs, a crash mid-test is that test's failure, reruns stop when the L1's
# budget of them is spent, and a start past the first program (a new L1 after a crash) skips the
# ones before.
set -u
script=$(cd "$(dirname "$0")/../../.." && pwd)/guest-tests/linux/host-tests.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work
# shellcheck source=tests/guest-tests/linux/expect.sh
. "$(dirname "$0")/expect.sh"
# The fake: S.A passes, S.B fails on its first run only, S.C always fails, S.D crashes the program
# on its first run only, S.E fails on its first two runs. --gtest_filter=NAME runs NAME alone.
cat >"$work/fake" <<'FAKE'
#!/bin/sh
filter=all
for arg in "$@"; do case $arg in --gtest_filter=*) filter=${arg#*=} ;; esac; done
verdict() { echo "[ RUN      ] $1"; echo "output of $1"; echo "[  $2  ] $1 (5 ms)"; }
status=0
for t in S.A S.B S.C S.E S.D; do
  [ "$filter" = all ] || [ "$filter" = "$t" ] || continue
  once=$(dirname "$0")/ran-$t
  case $t in
    S.A) verdict $t "    OK" ;;
    S.B) if [ -e "$once" ]; then verdict $t "    OK"; else : >"$once"; verdict $t FAILED; status=1; fi ;;
    S.C) verdict $t FAILED; status=1 ;;
    S.D) if [ -e "$once" ]; then verdict $t "    OK"; else : >"$once"; echo "[ RUN      ] $t"; exit 139; fi ;;
    S.E) if [ -e "$once.2" ]; then verdict $t "    OK"; else
           if [ -e "$once" ]; then : >"$once.2"; else : >"$once"; fi
           verdict $t FAILED; status=1
         fi ;;
  esac
done
exit $status
FAKE
chmod +x "$work/fake"
printf 'gtest fake %s\nrun other true\n' "$work/fake" >"$work/list"

out=$(sh "$script" "$work/list")
expect "a passing test passes" 'LAB-RESULT host/fake/S.A PASS (5 ms)' "$out"
expect "a first failure is a retry, with its output" 'LAB-RETRY host/fake/S.B FAIL (5 ms)' "$out"
expect "  ... shown" '  | output of S.B' "$out"
expect "a test that fails once passes on its second try" 'LAB-RESULT host/fake/S.B PASS (5 ms) on a second try' "$out"
expect_not "  ... and is not a failure" 'LAB-RESULT host/fake/S.B FAIL.*' "$out"
expect "a test that fails twice is retried again" 'LAB-RETRY host/fake/S.E FAIL (5 ms)' "$out"
expect "  ... and passes on its third try" 'LAB-RESULT host/fake/S.E PASS (5 ms) on a third try' "$out"
expect "a test that always fails is tried three times" 3 "$(grep -c '^\(LAB-RETRY\|LAB-RESULT\) host/fake/S.C FAIL' <<<"$out")"
expect "  ... and fails" 'LAB-RESULT host/fake/S.C FAIL (5 ms)' "$out"
expect "a crash mid-test is a retry of that test" 'LAB-RETRY host/fake/S.D FAIL the program exited with status 139 during this test' "$out"
expect "  ... which then passes" 'LAB-RESULT host/fake/S.D PASS (5 ms) on a second try' "$out"
expect_not "  ... and the program is not failed as a whole" 'LAB-RESULT host/fake FAIL.*' "$out"
expect "each program's end is marked" 'LAB-HOST-DONE 1' "$out"
expect "the count: S.A, S.B, S.D, S.E and other passed; S.C failed" 'LAB-HOST-TESTS-END 5 1 0' "$out"

# With one rerun left for the whole L1, the first failure (S.B) gets it and the later ones stand.
rm -f "$work"/ran-*
out=$(HOST_TEST_RETRY_BUDGET=1 sh "$script" "$work/list")
expect "the reruns are bounded per L1: the first failure is retried" 'LAB-RESULT host/fake/S.B PASS (5 ms) on a second try' "$out"
expect "  ... a later one stands, saying why" 'LAB-RESULT host/fake/S.C FAIL (5 ms) (not run again: all 1 reruns of this L1 spent)' "$out"
expect_not "  ... and is not retried" 'LAB-RETRY host/fake/S.C .*' "$out"
expect "  ... the count: S.A, S.B and other passed" 'LAB-HOST-TESTS-END 3 3 0' "$out"

out=$(sh "$script" "$work/list" 2)
expect_not "starting at the second program skips the first" 'LAB-RESULT host/fake/.*' "$out"
expect "  ... and runs the second" 'LAB-RESULT host/other PASS' "$out"
expect "  ... numbered as in the list" 'LAB-HOST-DONE 2' "$out"

all_checks_passed "host-tests.sh"
