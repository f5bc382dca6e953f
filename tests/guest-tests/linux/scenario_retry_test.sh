#!/usr/bin/env bash
# guest-tests/linux/scenarios.sh's retries (its result() and the loop over the scenarios, taken from
# the script and run on fake scenarios): a scenario that fails twice passes on its third run, one that
# always fails runs three times and fails, the reruns stop when the L1's budget of them is spent, and
# with LAB_REPEAT every result stands.
set -u
script=$(cd "$(dirname "$0")/../../.." && pwd)/guest-tests/linux/scenarios.sh
# shellcheck source=tests/guest-tests/linux/expect.sh
. "$(dirname "$0")/expect.sh"
# run_scenarios [RETRIES_LEFT]: the fakes a (fails on its first two runs), b (always fails) and
# c (passes), through scenarios.sh's own code; prints its lines, then "END passed failed skipped".
run_scenarios() {
  sh -c '
    prefix="" passed=0 failed=0 skipped=0
    show_console() { :; }
    logfile() { echo /dev/null; }
    eval "$(sed -n "/^try=1 last_try=1 /,/^}\$/p" "$1")"
    [ -n "$2" ] && retries_left=$2
    runs_of_a=0
    scenario_a() { runs_of_a=$((runs_of_a + 1)); [ $runs_of_a -ge 3 ] && result a PASS "run $runs_of_a" || result a FAIL "run $runs_of_a"; }
    scenario_b() { result b FAIL always; }
    scenario_c() { result c PASS ok; }
    all_scenarios="a b c"
    selected() { :; }
    eval "$(sed -n "/^  for s in \$all_scenarios; do\$/,/^  done\$/p" "$1")"
    echo "END $passed $failed $skipped"
  ' sh "$script" "${1:-}"
}

out=$(run_scenarios)
expect "a scenario's failed run is a retry" 'LAB-RETRY a FAIL run 1' "$out"
expect "  ... and so is its second" 'LAB-RETRY a FAIL run 2' "$out"
expect "  ... and it passes on its third" 'LAB-RESULT a PASS run 3 on a third try' "$out"
expect "one that always fails runs three times" 3 "$(grep -c '^LAB-\(RETRY\|RESULT\) b FAIL always$' <<<"$out")"
expect "  ... and fails" 'LAB-RESULT b FAIL always' "$out"
expect "a pass is a pass" 'LAB-RESULT c PASS ok' "$out"
expect "the count" 'END 2 1 0' "$out"

out=$(run_scenarios 1)
expect "with one rerun left, the first failure gets it" 'LAB-RETRY a FAIL run 1' "$out"
expect "  ... and then stands, saying why" 'LAB-RESULT a FAIL run 2 (not run again: all 6 reruns of this L1 spent)' "$out"
expect_not "  ... as does a later one" 'LAB-RETRY b .*' "$out"
expect "  ... the count" 'END 1 2 0' "$out"

out=$(LAB_REPEAT=2 run_scenarios)
expect_not "with --repeat every result stands" 'LAB-RETRY .*' "$out"
expect "  ... each run counted" 'END 2 4 0' "$out"

all_checks_passed "scenarios.sh retries"
