#!/usr/bin/env bash
# The nested lab: boots Debian's cloud kernel as L1 under QEMU (TCG, an AMD CPU model with SVM), where
# kvm-amd gives a real /dev/kvm; inside it, vmm (and/or QEMU -M microvm, the reference) boots stock
# Debian kernels as L2 guests, one scenario after another (scenarios.sh). One L1 boot runs them all.
#
# usage: run-lab.sh [--vmm PATH] [--out DIR] [--only SCENARIO,...] [--with-qemu-reference]
#                   [--vmm-args ARGS] [--repeat N] [--host-tests LIST]... [--shell]
#   --vmm PATH             the vmm binary under test
#   --out DIR              build directory (default: $VMM_LAB_OUT or <repo>/build/lab); .debs are cached there
#   --only a,b             run only these scenarios (all_scenarios in scenarios.sh lists them, README.md
#                          says what each checks; vmm's own ones are skipped for QEMU)
#   --with-qemu-reference  also run every scenario with QEMU -M microvm (results named qemu/<scenario>);
#                          without --vmm, only those: this validates the lab itself
#   --vmm-args "ARGS"      extra vmm arguments for every L2 run (e.g. "--log-level debug"; no commas)
#   --repeat N             run each scenario N times in a row (to catch a rare failure; default 1)
#   --host-tests LIST      first run a build's "kvm" tests in L1 (LIST: its lab_host_tests.txt), for a
#                          host whose /dev/kvm can't run the test guests; results host/<name>/<test>
#   --shell                instead of the scenarios, boot one L2 guest with a shell on this terminal
#                          (its root filesystem on a virtio disk: build-rootfs.sh's image)
# Prints every LAB-RESULT line and ends with "N passed, M failed[, K skipped]"; exits 0 only if no
# scenario failed and at least one passed. An L1 crash (its kernel panics, or its QEMU dies, before
# LAB-END, or goes silent) is not a vmm failure: L1 is booted again, at most four times, for what had
# no result yet (the scenarios without one, the host-test programs from the one cut short).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=guest-tests/linux/lib.sh
. "$here/lib.sh"

out=${VMM_LAB_OUT:-$repo/build/lab} vmm="" vmm_args="" only="" repeat=1 qemu_ref=0 shell=0 host_tests=()
usage() { sed -n '6,/^# Prints every/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --vmm) vmm=$2; shift 2 ;;
    --vmm-args) vmm_args=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --host-tests) host_tests+=("$(realpath -m "$2")"); shift 2 ;;
    --with-qemu-reference) qemu_ref=1; shift ;;
    --shell) shell=1; shift ;;
    -h | --help) usage ;;
    *) echo "run-lab: unknown argument '$1'" >&2; usage ;;
  esac
done
case $repeat in '' | *[!0-9]* | 0) echo "run-lab: --repeat $repeat: give a whole number of at least 1" >&2; usage ;; esac
[ -n "$vmm" ] || [ $qemu_ref -eq 1 ] || { echo "run-lab: give --vmm PATH and/or --with-qemu-reference" >&2; usage; }
if [ -n "$vmm" ]; then
  [ -x "$vmm" ] || { echo "run-lab: --vmm $vmm: no such executable"; echo "0 passed, 1 failed"; exit 1; }
  vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
fi
command -v qemu-system-x86_64 >/dev/null || {
  echo "run-lab: qemu-system-x86_64 not found (scripts/install-deps.sh installs qemu-system-x86)"
  echo "0 passed, 1 failed"
  exit 1
}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Build what is missing or older than its inputs.
"$here/fetch-kernels.sh" "$out/kernels"
for flavour in cloud generic; do
  lab_build_l2 "$out/kernels" "$out" "$flavour"
done
l1_args=(--kernels "$out/kernels" --l2 "$out" --out "$out/l1.cpio")
[ -n "$vmm" ] && l1_args+=(--vmm "$vmm")
[ $qemu_ref -eq 1 ] && l1_args+=(--with-qemu)
for list in "${host_tests[@]}"; do l1_args+=(--host-tests "$list"); done
l1_inputs=("$here/build-l1-initramfs.sh" "$here/lib.sh" "$here/scenarios.sh")
for flavour in cloud generic; do
  l1_inputs+=("$out/l2-$flavour.cpio.gz" "$out/l2-$flavour-disk.cpio.gz" "$out/l2-$flavour-net.cpio.gz"
    "$out/l2-$flavour-vsock.cpio.gz" "$out/root-$flavour.img.gz")
done
l1_inputs+=("$out/tools/uds")
[ -n "$vmm" ] && l1_inputs+=("$vmm")
# With host tests, always: their programs are many files, and packing is quick.
if [ ${#host_tests[@]} -gt 0 ] || [ "$(cat "$out/l1.args" 2>/dev/null)" != "${l1_args[*]}" ] ||
  lab_stale "$out/l1.cpio" "${l1_inputs[@]}"; then
  "$here/build-l1-initramfs.sh" "${l1_args[@]}"
  echo "${l1_args[*]}" >"$out/l1.args"
fi

kinds=""
[ -n "$vmm" ] && kinds=vmm
[ $qemu_ref -eq 1 ] && kinds=${kinds:+$kinds,}qemu
# The lab's parameters ride on L1's command line (its /init reads them); spaces become commas.
vmm_args=$(echo "$vmm_args" | xargs | tr ' ' ',')
append="console=ttyS0 panic=-1 quiet labvmm=$kinds${only:+ labonly=$only}${vmm_args:+ labvmmargs=$vmm_args} labrepeat=$repeat"
# The L1 command of the DESIGN's lab recipe (verified by hand).
# shellcheck disable=SC2054 # commas belong to QEMU's option values
# With host tests, L1 holds their programs in its initramfs (hundreds of MiB for an ASan build, twice
# while the kernel unpacks it): 4 GiB instead of 2.
l1_memory=2048
[ ${#host_tests[@]} -gt 0 ] && l1_memory=4096
l1_command=(qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC -smp 2 -m "$l1_memory" -nographic -no-reboot
  -kernel "$out/kernels/cloud/vmlinuz" -initrd "$out/l1.cpio")

if [ $shell -eq 1 ]; then
  echo "lab: booting L1 (Ctrl-A x quits QEMU); the L2 guest's shell follows"
  exec "${l1_command[@]}" -append "$append labmode=shell"
fi

# As many as scenarios.sh defines (its all_scenarios line), or as many as --only names.
n_scenarios=$(sed -n 's/^all_scenarios="\(.*\)"$/\1/p' "$here/scenarios.sh" | wc -w)
[ -n "$only" ] && n_scenarios=$(echo "$only" | tr ',' '\n' | grep -c .)
n_kinds=$(echo "$kinds" | tr ',' '\n' | grep -c .)
# L1 boot + each scenario at its worst (scenarios.sh's hard timeouts: 90 s for most, 180 s for
# net-tcp, twice 120 s for net-two-guests) would still fit, in the mean.
# Each host-test list gets up to 20 minutes (its programs' own limit is 15 each).
l1_timeout=$((180 + 120 * n_scenarios * n_kinds * repeat + 1200 * ${#host_tests[@]}))

log=$out/l1-console.log
lab_lines='^(LAB-|--- |  \| )'
# The longest an L1 may go without printing a lab line: scenarios.sh bounds each scenario (at most
# 240 s: net-two-guests' two guests), so silence past this means L1 itself is wedged.
l1_stall_limit=270
# A host test prints its line when it ends. Their own liveness bounds are 4 minutes there
# (host-tests.sh), so a test that hangs fails by itself before L1 counts as wedged; the scenarios'
# 240 s must still fit too. (An L1 that wedges with both CPUs stuck stops its heartbeat and is
# stopped sooner: lib.sh's lab_boot_l1.)
[ ${#host_tests[@]} -gt 0 ] && l1_stall_limit=300
# Runs L1 once with kernel command line APPEND, logging its console to $log and showing the lab's own
# lines as they come (lib.sh's lab_boot_l1).
boot_l1() {
  local start=$SECONDS
  echo "lab: booting L1 ($kinds; host timeout ${l1_timeout}s; console log $log)"
  lab_boot_l1 "$log" "$lab_lines" "$l1_timeout" "$l1_stall_limit" "${l1_command[@]}" -append "$1"
  echo "lab: L1 ran $((SECONDS - start))s, QEMU exit status $l1_status${l1_killed:+ (stopped: $l1_killed)}"
}
l1_finished() { grep -q '^LAB-END' "$log"; }
l1_crash_reason() { lab_l1_crash_reason "$log" LAB-END; }
# The results of a crashed L1's console log that stand: each scenario's, and the host tests' of each
# program that ended (its LAB-HOST-DONE line); a program cut short runs again, whole.
kept_results() {
  awk '/^LAB-RESULT host\// { pending = pending $0 "\n"; next }
       /^LAB-HOST-DONE / { printf "%s", pending; pending = ""; next }
       /^LAB-RESULT / { print }' "$1"
}
# The lines that are the lab's bookkeeping, not results, are not shown.
lab_l1_line() { case $1 in LAB-HOST-DONE*) ;; *) echo "$1" ;; esac; }

# An L1 that crashes is booted again, at most four times, for what has no result yet. (It happens: now
# and then L1 goes silent with vmm's tests or scenarios running, its vCPUs busy and nothing on its
# console, and lib.sh's lab_l1_diagnose records what QEMU was doing at the end of its log; or its
# kernel panics, a stack guard page hit in its KVM path. One lab run was seen to crash L1 three times:
# each new boot costs only its own start, the results so far stand.)
max_boots=5
boots=1
rm -f "$log".[0-9]
boot_l1 "$append"
while ! l1_finished && [ $boots -lt $max_boots ]; do
  reason=$(l1_crash_reason)
  mv "$log" "$log.$boots"
  kept=$(for ((i = 1; i <= boots; i++)); do kept_results "$log.$i"; done)
  # Keys: <vmm>/<scenario>. The host tests start at the first program that has not ended.
  done_keys=$(echo "$kept" | awk '/^LAB-RESULT / && $2 !~ /^host\// { n = $2; if (n !~ /\//) n = "vmm/" n; print n }' | paste -sd, -)
  host_from=$(cat "$log".[0-9] | awk '/^LAB-HOST-DONE / && $2 > last { last = $2 } END { print last + 1 }')
  echo "lab: L1 crashed (not a vmm failure: $reason; log kept in $log.$boots); booting it again for" \
    "what has no result yet, keeping the $(echo "$kept" | grep -c '^LAB-RESULT') results it reported"
  boots=$((boots + 1))
  boot_l1 "$append${done_keys:+ labdone=$done_keys} labhost=$host_from"
done

results=$({ for ((i = 1; i < boots; i++)); do kept_results "$log.$i"; done; cat "$log"; } 2>/dev/null | grep '^LAB-RESULT ' || true)
passed=$(echo "$results" | grep -c '^LAB-RESULT [^ ]* PASS' || true)
failed=$(echo "$results" | grep -c '^LAB-RESULT [^ ]* FAIL' || true)
skipped=$(echo "$results" | grep -c '^LAB-RESULT [^ ]* SKIP' || true)
if [ ${#host_tests[@]} -gt 0 ]; then
  host_count() { echo "$results" | grep -c "^LAB-RESULT host/[^ ]* $1" || true; }
  echo "lab: host tests: $(host_count PASS) passed, $(host_count FAIL) failed, $(host_count SKIP) skipped"
fi
# (host-tests.sh and scenarios.sh run a failed test up to twice more: what L1 glitched, not vmm, passes
# then.)
echo "$results" | sed -n 's/^LAB-RESULT \([^ ]*\) .* on a second try$/lab: \1 failed once (LAB-RETRY, above) and passed on a second try/p'
echo "$results" | sed -n 's/^LAB-RESULT \([^ ]*\) .* on a third try$/lab: \1 failed twice (LAB-RETRY, above) and passed on a third try/p'
if ! l1_finished; then
  echo "lab: L1 crashed $boots times, the last: $(l1_crash_reason); what had no result did not run; see $log"
  failed=$((failed + 1))
fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
  echo "lab: no scenario passed or failed (all skipped, or none ran); that is no pass. See $log"
  failed=1
fi
echo "$results" | grep '^LAB-RESULT [^ ]* SKIP' | sed 's/^LAB-RESULT /lab: skipped /' || true
echo "$passed passed, $failed failed$([ "$skipped" -gt 0 ] && echo ", $skipped skipped")"
[ "$failed" -eq 0 ]
