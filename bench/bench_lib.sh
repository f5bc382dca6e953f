# Shared helpers for the benchmark scripts (sourced, not run, with `here` set to bench/): options
# and usage; for the nested-lab ones, the common part of L1's initramfs and /init and L1's boot with
# its one retry; the machine and vmm revision a table names, the tables' medians and ratios. Brings in
# the lab's guest-tests/linux/lib.sh.
# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the scripts that source it

repo=$(cd "$here/.." && pwd)
lab_scripts=$repo/guest-tests/linux
# shellcheck source=guest-tests/linux/lib.sh
. "$lab_scripts/lib.sh"
bench_name=$(basename "$0" .sh)
bench_die() { echo "$bench_name: $*" >&2; exit 1; }

# --- options ---
# bench_usage: the script's "# usage:" comment line and the indented lines under it, on stderr.
bench_usage() {
  awk '/^# usage:/ { p = 1 } p && !/^# (usage:|  )/ { exit } p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
# bench_options NAME... -- ARG...: each --NAME VALUE among ARGs sets the variable NAME; -h, --help
# or anything else shows the usage.
bench_options() {
  local names=" "
  while [ "$1" != -- ]; do names+="$1 "; shift; done
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) bench_usage ;;
      --*)
        if [[ $names == *" ${1#--} "* ]]; then
          [ $# -ge 2 ] || { echo "$bench_name: $1 wants a value" >&2; bench_usage; }
          printf -v "${1#--}" %s "$2"
          shift 2
          continue
        fi ;;
    esac
    echo "$bench_name: unknown argument '$1'" >&2
    bench_usage
  done
}
# bench_positive NAME...: each variable NAME (option --NAME) must hold a positive whole number.
bench_positive() {
  local name
  for name; do
    case ${!name} in
      '' | *[!0-9]* | 0) echo "$bench_name: --$name '${!name}': want a positive whole number" >&2; exit 2 ;;
    esac
  done
}

# --- the nested lab ---
# bench_lab_setup: for the benchmarks that run in the lab's L1, after their options: vmm (--vmm)
# and out (--out) made absolute, out created, qemu found; lab is the lab's build directory, where
# the kernels are.
bench_lab_setup() {
  lab=${VMM_LAB_OUT:-$repo/build/lab}
  [ -x "$vmm" ] || lab_die "--vmm $vmm: no such executable (cmake --build <build dir> --target vmm)"
  vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
  qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
}
# bench_l1_root ROOT L2_INITRD [MODULE...]: the start of an L1 initramfs in ROOT: busybox, the kvm
# modules (and MODULEs), vmm as /usr/local/bin/vmm, and the L2 guest: the lab's cloud kernel as
# /bench/l2/vmlinuz, L2_INITRD as /bench/l2/initrd.cpio.gz.
bench_l1_root() {
  local root=$1 initrd=$2
  shift 2
  lab_busybox_root "$root"
  lab_add_modules "$root" "$lab/kernels/cloud/modules" "${lab_l1_modules[@]}" "$@"
  lab_add_binary "$root" "$vmm" /usr/local/bin/vmm
  mkdir -p "$root/bench/l2"
  cp "$lab/kernels/cloud/vmlinuz" "$root/bench/l2/vmlinuz"
  cp "$initrd" "$root/bench/l2/initrd.cpio.gz"
}
# bench_l1_add_qemu ROOT: the reference VMM, QEMU with microvm's firmware, in the L1 initramfs ROOT.
bench_l1_add_qemu() {
  lab_add_binary "$1" "$qemu" /usr/bin/qemu-system-x86_64
  mkdir -p "$1/usr/share/qemu"
  cp "${lab_qemu_firmware[@]}" "$1/usr/share/qemu/"
}
# bench_l1_tcp_peers DIR: L1's side of the TCP transfers (net_throughput.sh's, and
# vsock_throughput.sh's for scale) in DIR, each run by nc -e with the connection as stdin and stdout:
# serve.sh sends $MIB MiB of zeros, take.sh counts what arrives in whole 64 KiB blocks (dd's "N+M
# records in", in /tmp/take.dd), ack.sh tells the guest when take is done; serve and take note when
# they started and ended (L1's clock) in /tmp/serve.time and /tmp/take.time.
bench_l1_tcp_peers() {
  cat >"$1/serve.sh" <<'L1'
#!/bin/sh
s=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/zero bs=64k count=$((MIB * 16)) 2>/dev/null
echo "$s $(cut -d' ' -f1 /proc/uptime)" >/tmp/serve.time
L1
  cat >"$1/take.sh" <<'L1'
#!/bin/sh
s=$(cut -d' ' -f1 /proc/uptime)
dd iflag=fullblock bs=64k of=/dev/null 2>/tmp/take.dd
echo "$s $(cut -d' ' -f1 /proc/uptime)" >/tmp/take.time
L1
  cat >"$1/ack.sh" <<'L1'
#!/bin/sh
i=0
while [ ! -e /tmp/take.time ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e /tmp/take.time ]; then echo taken; else echo timeout; fi
L1
  chmod +x "$1/serve.sh" "$1/take.sh" "$1/ack.sh"
}
# bench_l1_init ROOT SCRIPT PARAM=VAR...: L1's /init in ROOT: lib.sh's start, then the value of each
# PARAM=value on the kernel command line exported as VAR, sh SCRIPT (the bench's L1 side), poweroff.
bench_l1_init() {
  local root=$1 script=$2 pair vars=""
  shift 2
  lab_write_l1_init_start "$root"
  {
    echo "echo # the firmware leaves the cursor mid-line; the bench's lines must start one"
    # shellcheck disable=SC2016 # expands in L1
    printf '%s\n' 'for word in $(cat /proc/cmdline); do' '  case $word in'
    for pair; do
      echo "    ${pair%%=*}=*) ${pair#*=}=\${word#*=} ;;"
      vars+=" ${pair#*=}"
    done
    printf '%s\n' '  esac' 'done' "export$vars" "sh $script" 'poweroff -f'
  } >>"$root/init"
  chmod +x "$root/init"
}
# bench_l1_command KERNEL INITRD PARAMS: sets l1_command, L1's QEMU (bench_l1_what says what it is)
# booting KERNEL and INITRD with PARAMS after the console options on its command line.
bench_l1_what="L1 = QEMU TCG (-cpu EPYC, 2 vCPUs, 2 GiB), L2 under kvm-amd in L1"
bench_l1_command() {
  # shellcheck disable=SC2054 # commas belong to QEMU's option values
  l1_command=(qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC -smp 2 -m 2048 -nographic -no-reboot
    -kernel "$1" -initrd "$2" -append "console=ttyS0 panic=-1 quiet $3")
}
# The bench's lines, as lab_boot_l1 shows them while L1 runs (a script may redefine it after this).
lab_l1_line() { echo "  $1"; }
# Called before each L1 boot (a script may redefine it: state kept per boot by its lab_l1_* hooks).
bench_l1_start() { :; }
# bench_boot_l1 LOG END LINES TIMEOUT STALL WHAT COMMAND...: lib.sh's lab_boot_l1 LOG LINES TIMEOUT
# STALL COMMAND..., and once more if L1 crashed before printing its END line (the first console kept
# in LOG.1): a crashed L1 is the lab's failure, not a VMM's. WHAT ("3 boots per VMM") goes in the
# progress line. Sets retry_note, what the table should say about it (empty if L1 finished at once).
bench_boot_l1() {
  local log=$1 end=$2 lines=$3 timeout=$4 stall=$5 what=$6
  shift 6
  local attempt
  retry_note=""
  for attempt in 1 2; do
    local start=$SECONDS
    echo "$bench_name: booting L1 ($what; host timeout ${timeout}s; console log $log)"
    bench_l1_start
    lab_boot_l1 "$log" "$lines" "$timeout" "$stall" "$@"
    echo "$bench_name: L1 ran $((SECONDS - start))s, QEMU exit status $l1_status${l1_killed:+ (stopped: $l1_killed)}"
    grep -q "^$end" "$log" && return 0
    [ "$attempt" -eq 2 ] && break
    retry_note="L1 crashed on the first attempt ($(lab_l1_crash_reason "$log" "$end")); retried once (log kept in $log.1)"
    echo "$bench_name: $retry_note"
    mv "$log" "$log.1"
  done
  retry_note="${retry_note:+$retry_note; }L1 did not finish ($(lab_l1_crash_reason "$log" "$end")): the table has only the boots before that"
  echo "$bench_name: $retry_note"
}

# --- the table ---
# bench_describe: sets cpu_model (this machine's), vmm_rev (the checkout's commit) and vmm_dirty
# (" + uncommitted changes" if tracked files differ from it, else empty).
bench_describe() {
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  vmm_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
  vmm_dirty=""
  if git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then
    vmm_dirty=" + uncommitted changes"
  fi
}
# field KIND NAME: NAME's value in each line "<PREFIX>-RESULT KIND run=.. NAME=VALUE .." of the
# file $results but a failed boot's, one per line; "-" (no value) is left out. A script whose lines
# say otherwise which boots count redefines it.
field() {
  awk -v kind="$1" -v name="$2" '$2 == kind && !/ failed/ {
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name && kv[2] != "-") print kv[2] }
    }' "$results"
}
# The median of the numbers on stdin, "-" if none; of an even count, the mean of the middle two, to
# ten significant digits (full precision for the ratios and later rounding, never "1e+06").
median() {
  sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.10g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { field "$1" "$2" | median; }
# ratio A B: A / B to two decimals, "-" if either is missing ("-" or empty) or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
# bench_table WIDTH KIND_A HEAD_A KIND_B HEAD_B HEAD_RATIO NAME:LABEL...: a header line, then per
# NAME its LABEL (WIDTH wide), the medians of NAME for KIND_A and KIND_B and A/B, under the headings.
# shellcheck disable=SC2059 # printf's format is built from WIDTH
bench_table() {
  local width=$1 kind_a=$2 head_a=$3 kind_b=$4 head_b=$5 head_ratio=$6 row a b
  shift 6
  local format="%-${width}s %10s %${#head_b}s %10s\n" # column B as wide as its heading
  printf "$format" "" "$head_a" "$head_b" "$head_ratio"
  for row; do
    a=$(med "$kind_a" "${row%%:*}") b=$(med "$kind_b" "${row%%:*}")
    printf "$format" "${row#*:}" "$a" "$b" "$(ratio "$a" "$b")"
  done
}
# count_ok KIND: how many of KIND's boots count (each such line has its status).
count_ok() { field "$1" status | wc -l; }
# bench_per_boot PREFIX LOG: the table's end: each boot's line (from $results), then the failed
# boots' console tails from L1's console LOG, if any.
bench_per_boot() {
  echo "per boot:"
  sed "s/^$1-RESULT /  /" "$results"
  if grep -q '^--- ' "$2"; then
    echo
    echo "failed boots:"
    grep -E '^(--- |  \| )' "$2"
  fi
}
