# The checks the lab scripts' tests share (sourced, bash): each prints "ok: WHAT" or "FAIL: WHAT"
# with the output it searched, and counts the failures; all_checks_passed NAME ends the test.
fails=0
expect() {  # expect WHAT PATTERN OUTPUT: OUTPUT has a line matching PATTERN (grep -x)
  if grep -qx -- "$2" <<<"$3"; then echo "ok: $1"; else echo "FAIL: $1: no line '$2' in:"; echo "$3"; fails=$((fails + 1)); fi
}
expect_not() {  # expect_not WHAT PATTERN OUTPUT: no line of OUTPUT matches PATTERN
  if grep -qx -- "$2" <<<"$3"; then echo "FAIL: $1: a line '$2' in:"; echo "$3"; fails=$((fails + 1)); else echo "ok: $1"; fi
}
all_checks_passed() {  # all_checks_passed NAME: says so and succeeds, or fails
  [ "$fails" -eq 0 ] && echo "$1: all checks passed"
  [ "$fails" -eq 0 ]
}
