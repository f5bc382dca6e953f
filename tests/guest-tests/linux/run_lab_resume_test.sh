#!/usr/bin/env bash
# guest-tests/linux/run-lab.sh's handling of an L1 that crashes, on fake L1 boots (its part from
# l1_finished() on, with boot_l1 replaced): a new boot gets the scenarios already done and the first
# host-test program that had not ended; what the crashed boots reported stands, a program cut short
# counts only from its rerun; after five crashed boots the lab fails, saying so.
set -u
here=$(cd "$(dirname "$0")/../../.." && pwd)/guest-tests/linux
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/guest-tests/linux/expect.sh
. "$(dirname "$0")/expect.sh"
# run_tail BOOTS...: run-lab.sh's tail with boot N printing file BOOTS[N] as its console (and its
# command line into $work/appends). Prints the output, then "status N".
run_tail() {
  local boots=("$@")
  : >"$work/appends"
  (
    set -euo pipefail
    # shellcheck source=guest-tests/linux/lib.sh
    . "$here/lib.sh"
    log=$work/l1-console.log append="labvmm=vmm" host_tests=(list) n=0
    boot_l1() {
      echo "$1" >>"$work/appends"
      cp "${boots[$n]}" "$log"
      n=$((n + 1))
      l1_status=0 l1_killed="L1's heartbeat stopped for 60 s (its kernel is stuck)"
      grep -q '^LAB-END' "$log" && l1_killed=""
      return 0
    }
    boot_l1 "$append"
    eval "$(sed -n '/^l1_finished() {/,$p' "$here/run-lab.sh" | grep -v '^boot_l1 "\$append"$')"
  ) 2>&1
  echo "status $?"
}

cat >"$work/boot1" <<'B'
LAB-RESULT host/one/T.a PASS (1 ms)
LAB-HOST-DONE 1
LAB-RESULT host/two/T.b PASS (1 ms)
B
cat >"$work/boot2" <<'B'
LAB-RESULT host/two/T.b PASS (2 ms)
LAB-RESULT host/two/T.c PASS (2 ms)
LAB-HOST-DONE 2
LAB-RESULT boot-cloud PASS status=0
B
cat >"$work/boot3" <<'B'
LAB-RESULT disk-root PASS status=0 on a second try
LAB-RESULT net-tcp PASS status=0 on a third try
LAB-END 2 0 0
B
out=$(run_tail "$work/boot1" "$work/boot2" "$work/boot3")
appends=$(cat "$work/appends")
expect "the first crash is said, with its reason" "lab: L1 crashed (not a vmm failure: L1's heartbeat stopped for 60 s (its kernel is stuck); log kept in $work/l1-console.log.1); booting it again for what has no result yet, keeping the 1 results it reported" "$out"
expect "the second boot starts at the program cut short" "labvmm=vmm labhost=2" "$appends"
expect "the third boot skips the scenario done and both programs" "labvmm=vmm labdone=vmm/boot-cloud labhost=3" "$appends"
expect "the program cut short counts once, from its rerun" "lab: host tests: 3 passed, 0 failed, 0 skipped" "$out"
expect "a pass on a second try is named" "lab: disk-root failed once (LAB-RETRY, above) and passed on a second try" "$out"
expect "a pass on a third try is named" "lab: net-tcp failed twice (LAB-RETRY, above) and passed on a third try" "$out"
expect "all six results count" "6 passed, 0 failed" "$out"
expect "and the lab passes" "status 0" "$out"

out=$(run_tail "$work/boot1" "$work/boot1" "$work/boot1" "$work/boot1" "$work/boot1" "$work/boot1")
expect "five crashed boots fail the lab, saying so" "lab: L1 crashed 5 times, the last: L1's heartbeat stopped for 60 s (its kernel is stuck); what had no result did not run; see $work/l1-console.log" "$out"
expect "  ... after a fourth boot" "lab: L1 crashed (not a vmm failure.*4); .*" "$out"
expect_not "  ... and no sixth" "lab: L1 crashed (not a vmm failure.*5); .*" "$out"
expect "  ... with a failing status" "status 1" "$out"

all_checks_passed "run-lab.sh resume"
