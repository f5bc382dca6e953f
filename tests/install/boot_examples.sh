#!/bin/sh
# The install test's last step: every example built against the installed prefix, and the installed
# vmm command, boots the hello test guest (cmdline exit=7, with --debug-exit so that its status is
# vmm's) and must print its greeting and exit 7.
# POSIX sh: it runs on the host, or inside the nested lab's L1 (busybox) where the host's /dev/kvm
# can't run the test guests (install_test.sh stages it with everything it needs).
# Usage: boot_examples.sh WORK PREFIX LIBDIR HELLO_IMAGE
set -eu
work=$1 prefix=$2 libdir=$3 hello=$4
cmdline="console=ttyS0 exit=7"

fail() {
  echo "boot_examples: FAILED: $*" >&2
  exit 1
}
# check_boot NAME EXIT_LINE_PREFIX COMMAND...: runs COMMAND, checks its output and exit status.
check_boot() {
  name=$1 exit_prefix=$2
  shift 2
  status=0
  out=$("$@" 2>&1) || status=$?
  [ "$status" -eq 7 ] || fail "$name exited $status, want 7; output:
$out"
  echo "$out" | grep -q "hello from the test guest" || fail "$name: no greeting:
$out"
  echo "$out" | grep -q "cmdline: $cmdline" || fail "$name: no cmdline:
$out"
  if [ -n "$exit_prefix" ]; then
    echo "$out" | grep -q "^$exit_prefix: guest exited with status 7 (exit status 7)$" ||
      fail "$name: no exit line:
$out"
  fi
  echo "$name: ok"
}
check_boot boot_cpp boot_cpp "$work/examples/boot_cpp" --debug-exit "$hello" "$cmdline"
check_boot boot_c boot_c "$work/examples/boot_c" --debug-exit "$hello" "$cmdline"
check_boot boot_c_static boot_c "$work/examples/boot_c_static" --debug-exit "$hello" "$cmdline"
check_boot "boot_c (pkg-config)" boot_c env LD_LIBRARY_PATH="$prefix/$libdir" \
  "$work/boot_c_pc" --debug-exit "$hello" "$cmdline"
check_boot "installed vmm" "" "$prefix/bin/vmm" --kernel "$hello" --memory 64M \
  --serial stdio --cmdline "$cmdline" --debug-exit
echo "boot_examples: all passed"
