# A boot under bench/tools/stamp, inside the nested lab's L1 (busybox sh; sourced by the benchmarks'
# L1 scripts, lab_bench_init.sh and lab_disk_boot.sh, from where bench_lib.sh's bench_l1_add_stamp
# puts it). A boot is stamp_boot, then stamp_report with the script's own fields.
# shellcheck shell=sh disable=SC2034 # console and errlog are for the scripts that source this

STAMP=/bench/stamp
STAMP_EARLY_MARKER="Linux version" # the kernel's first printk: the same point in the boot for every VMM
L2_TIMEOUT=60                      # vmm --timeout
STAMP_TIMEOUT=$((L2_TIMEOUT + 30)) # stamp kills the VMM (SIGKILL) past this, QEMU included

# stamp_boot KIND RUN MARKER MEM_MIB COMMAND...: one L2 boot, COMMAND (a VMM with MEM_MIB of guest
# RAM) under stamp, timed to MARKER on its console. The console goes to /tmp/KIND-RUN.console
# ($console), its stderr to /tmp/KIND-RUN.stderr ($errlog); sets fields, stamp's numbers (empty if
# stamp failed), and kind, run and marker. With STAMP_SEND set, stamp types that line on the
# guest's console (stamp's --send): at once, or once STAMP_SEND_AFTER appears on it; else the
# VMM's stdin is /dev/null.
stamp_boot() {
  kind=$1 run=$2 marker=$3 mem=$4
  console=/tmp/$1-$2.console errlog=/tmp/$1-$2.stderr
  shift 4
  if [ -n "${STAMP_SEND_AFTER:-}" ]; then
    set -- --send "$STAMP_SEND" --send-after "$STAMP_SEND_AFTER" -- "$@"
  elif [ -n "${STAMP_SEND:-}" ]; then
    set -- --send "$STAMP_SEND" -- "$@"
  else
    set -- -- "$@"
  fi
  "$STAMP" --marker "$marker" --early-marker "$STAMP_EARLY_MARKER" --guest-mem "$mem" \
    --log "$console" --timeout "$STAMP_TIMEOUT" "$@" </dev/null >"/tmp/$kind-$run.stamp" 2>"$errlog"
  fields=$(sed -n 's/^STAMP //p' "/tmp/$kind-$run.stamp")
}

# vmm_vcpu_start_ms: vmm's own -vv log ($errlog) line "+X ms: starting N vCPU(s)": X, from its static
# initialisation to just before the first KVM_RUN; -1 if the log has none.
vmm_vcpu_start_ms() {
  vcpu=$(sed -n 's/.*debug: +\([0-9.]*\) ms: starting [0-9]* vCPU.*/\1/p' "$errlog" | head -n1)
  echo "${vcpu:--1}"
}

# stamp_report EXTRA: the boot's line, "BENCH-RESULT KIND run=RUN <stamp's fields> EXTRA" (EXTRA:
# " name=value ..."), or "BENCH-RESULT KIND run=RUN stamp-failed"; a boot that did not exit 0 or
# reach the marker is followed by its evidence, the tails of its console and stderr.
stamp_report() {
  if [ -z "$fields" ]; then
    echo "BENCH-RESULT $kind run=$run stamp-failed"
  else
    echo "BENCH-RESULT $kind run=$run $fields$1"
  fi
  case " $fields " in
    *" status=0 "*) grep -q "$marker" "$console" && return 0 ;;
  esac
  echo "--- $kind run $run: last lines of the L2 console ---"
  tail -n 25 "$console" 2>/dev/null | sed 's/^/  | /'
  echo "--- $kind run $run: last lines of its stderr ---"
  tail -n 15 "$errlog" 2>/dev/null | sed 's/^/  | /'
  echo "--- end ---"
}
