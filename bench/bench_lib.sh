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
# bench_options NAME... -- ARG...: each --NAME VALUE among ARGs sets the variable NAME (a dash in NAME
# is an underscore in the variable's); a NAME listed as NAME+ may be given more than once, each VALUE
# appended to the array NAME. -h, --help or anything else shows the usage.
bench_options() {
  local names=" " name
  while [ "$1" != -- ]; do names+="$1 "; shift; done
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) bench_usage ;;
      --*)
        name=${1#--}
        if [[ $names == *" $name "* || $names == *" $name+ "* ]]; then
          [ $# -ge 2 ] || { echo "$bench_name: $1 wants a value" >&2; bench_usage; }
          if [[ $names == *" $name+ "* ]]; then
            local -n bench_option_array=${name//-/_}
            bench_option_array+=("$2")
            unset -n bench_option_array
          else
            printf -v "${name//-/_}" %s "$2"
          fi
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
# bench_lab_setup: for the benchmarks that run in the lab's L1, after their options: vmm (--vmm),
# each vmm_baseline (--vmm-baseline, where a script has it) and out (--out) made absolute, out
# created, qemu found; lab is the lab's build directory, where the kernels are. The vmm binaries a
# run compares, one column each: vmm_kinds (their kinds in the result lines and their names in L1's
# /usr/local/bin: vmm, then vmm-baseline, vmm-baseline2, ...), vmm_paths (the binaries), vmm_heads
# (the columns' headings: "vmm", "vmm (baseline)", ...), vmm_short (in a ratio's heading: "vmm",
# "baseline", ...), vmm_kinds_list (the kinds, comma-separated, for L1's command line).
bench_lab_setup() {
  lab=${VMM_LAB_OUT:-$repo/build/lab}
  [ -x "$vmm" ] || lab_die "--vmm $vmm: no such executable (cmake --build <build dir> --target vmm)"
  vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
  vmm_kinds=(vmm) vmm_paths=("$vmm") vmm_heads=(vmm) vmm_short=(vmm)
  local i n
  for i in ${vmm_baseline[@]+"${!vmm_baseline[@]}"}; do
    [ -x "${vmm_baseline[i]}" ] || lab_die "--vmm-baseline ${vmm_baseline[i]}: no such executable"
    vmm_baseline[i]=$(cd "$(dirname "${vmm_baseline[i]}")" && pwd)/$(basename "${vmm_baseline[i]}")
    n=$((i + 1))
    [ "$n" -gt 1 ] || n="" # the first baseline has no number, the next are 2, 3, ...
    vmm_kinds+=("vmm-baseline$n") vmm_paths+=("${vmm_baseline[i]}")
    vmm_heads+=("vmm (baseline${n:+ $n})") vmm_short+=("baseline${n:+ $n}")
  done
  vmm_kinds_list=$(IFS=,; echo "${vmm_kinds[*]}")
  qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
}
# bench_l1_base ROOT [MODULE...]: the start of an L1 initramfs in ROOT: busybox, the kvm modules (and
# MODULEs), each vmm binary as /usr/local/bin/<its kind> (vmm as /usr/local/bin/vmm).
bench_l1_base() {
  local root=$1 i
  shift
  lab_busybox_root "$root"
  lab_add_modules "$root" "$lab/kernels/cloud/modules" "${lab_l1_modules[@]}" "$@"
  for i in "${!vmm_kinds[@]}"; do
    lab_add_binary "$root" "${vmm_paths[i]}" "/usr/local/bin/${vmm_kinds[i]}"
  done
}
# bench_l1_root ROOT L2_INITRD [MODULE...]: bench_l1_base, and the L2 guest: the lab's cloud kernel
# as /bench/l2/vmlinuz, L2_INITRD as /bench/l2/initrd.cpio.gz.
bench_l1_root() {
  local root=$1 initrd=$2
  shift 2
  bench_l1_base "$root" "$@"
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
# bench_l1_each_boot ROOT: /bench/each_boot.sh in ROOT, which a bench's L1 script sources: each_boot
# RUNS KINDS calls the script's run_one KIND RUN for RUN = 1..RUNS, each round QEMU first (if a vmm
# boot wedges L1, the reference numbers before it remain), then each vmm of KINDS (vmm_kinds_list),
# their order rotated by one from one round to the next, so that no vmm always boots right after
# QEMU.
bench_l1_each_boot() {
  cat >"$1/bench/each_boot.sh" <<'L1'
each_boot() { # names of their own: run_one's variables are global too
  each_runs=$1 each_kinds=$(echo "$2" | tr , ' ') each_run=1
  while [ $each_run -le "$each_runs" ]; do
    run_one qemu $each_run
    for each_kind in $each_kinds; do run_one "$each_kind" $each_run; done
    # shellcheck disable=SC2086 # a word per kind
    each_kinds=$(each_rotate $each_kinds)
    each_run=$((each_run + 1))
  done
}
each_rotate() { each_first=$1; shift; echo "$@" "$each_first"; }
L1
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
# bench_describe: sets cpu_model (this machine's), vmm_rev (the commit of the checkout --vmm was
# built in: bench_revision's) and vmm_dirty (" + uncommitted changes" if that checkout's tracked
# files differ from it, else empty).
bench_describe() {
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  bench_revision "${vmm:-$repo/.}"
  vmm_rev=$revision vmm_dirty=$revision_dirty
}
# bench_revision PATH: sets revision, the short commit of the git checkout PATH is in (this
# checkout's if PATH is in none), and revision_dirty, " + uncommitted changes" if that checkout's
# tracked files differ from it, else empty.
bench_revision() {
  local dir
  dir=$(dirname "$1")
  git -C "$dir" rev-parse --git-dir >/dev/null 2>&1 || dir=$repo
  revision=$(git -C "$dir" rev-parse --short HEAD 2>/dev/null || echo '?')
  revision_dirty=""
  if git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then
    revision_dirty=" + uncommitted changes"
  fi
}
# bench_baselines: a line per --vmm-baseline for the table's head: its heading, its commit
# (bench_revision's) and its path; nothing without one.
bench_baselines() {
  local i
  for ((i = 1; i < ${#vmm_kinds[@]}; i++)); do
    bench_revision "${vmm_paths[i]}"
    echo "${vmm_heads[i]}: vmm at $revision$revision_dirty (${vmm_paths[i]})"
  done
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
# bench_table WIDTH COLUMN... -- NAME:LABEL[:FORMAT]...: a header line, then a line per NAME: its
# LABEL (WIDTH wide) and a cell per COLUMN, under its heading. A COLUMN is KIND=HEADING, the median
# of NAME over KIND's boots (printed with printf's FORMAT if given: %.0f), or KIND_A/KIND_B=HEADING,
# A's median over B's; a cell is as wide as its heading, and at least 10.
# shellcheck disable=SC2059 # printf's format is built from the headings
bench_table() {
  local width=$1 format spec row name label value_format value cells specs=() heads=()
  shift
  while [ "$1" != -- ]; do specs+=("${1%%=*}") heads+=("${1#*=}"); shift; done
  shift
  format="%-${width}s"
  for spec in "${heads[@]}"; do format+=" %$((${#spec} > 10 ? ${#spec} : 10))s"; done
  format+="\n"
  printf "$format" "" "${heads[@]}"
  for row; do
    name=${row%%:*} label=${row#*:} value_format=%s
    if [[ $label == *:* ]]; then value_format=${label##*:} label=${label%:*}; fi
    cells=()
    for spec in "${specs[@]}"; do
      if [[ $spec == */* ]]; then
        cells+=("$(ratio "$(med "${spec%/*}" "$name")" "$(med "${spec#*/}" "$name")")")
      else
        value=$(med "$spec" "$name")
        [ "$value" = - ] || printf -v value "$value_format" "$value"
        cells+=("$value")
      fi
    done
    printf "$format" "$label" "${cells[@]}"
  done
}
# bench_vmm_columns REF HEAD SHORT: sets columns, bench_table's COLUMNs that compare the vmms
# (bench_lab_setup's vmm_kinds) with the reference kind REF (its column headed HEAD, in a ratio's
# heading SHORT): each vmm's medians, REF's, each vmm's over REF's, then vmm's over each baseline's.
bench_vmm_columns() {
  local ref=$1 head=$2 short=$3 i
  columns=()
  for i in "${!vmm_kinds[@]}"; do columns+=("${vmm_kinds[i]}=${vmm_heads[i]}"); done
  columns+=("$ref=$head")
  for i in "${!vmm_kinds[@]}"; do columns+=("${vmm_kinds[i]}/$ref=${vmm_short[i]}/$short"); done
  for ((i = 1; i < ${#vmm_kinds[@]}; i++)); do columns+=("vmm/${vmm_kinds[i]}=vmm/${vmm_short[i]}"); done
}
# count_ok KIND: how many of KIND's boots count (each such line has its status).
count_ok() { field "$1" status | wc -l; }
# bench_counted RUNS REF SHORT: "vmm 3/3, QEMU 3/3": how many of RUNS boots counted, per vmm (their
# headings) and for the reference kind REF (SHORT).
bench_counted() {
  local runs=$1 ref=$2 short=$3 i text=""
  for i in "${!vmm_kinds[@]}"; do text+="${vmm_heads[i]} $(count_ok "${vmm_kinds[i]}")/$runs, "; done
  echo "$text$short $(count_ok "$ref")/$runs"
}
# bench_all_counted REF: true if every vmm and the reference kind REF have a boot that counted.
bench_all_counted() {
  local kind
  for kind in "${vmm_kinds[@]}" "$1"; do [ "$(count_ok "$kind")" -gt 0 ] || return 1; done
}
# bench_per_boot PREFIX LOG: the table's end: each boot's line (from $results), marked * if it is
# one of $skewed's (bench_watch_other_qemu), then the failed boots' console tails from L1's console
# LOG, if any.
bench_per_boot() {
  echo "per boot:"
  awk -v prefix="$1-RESULT " -v skewed=" ${skewed:-} " 'index($0, prefix) == 1 {
      $0 = substr($0, length(prefix) + 1); id = $1 "/" substr($2, 5)
      print (index(skewed, " " id " ") ? "* " : "  ") $0
    }' "$results"
  if grep -q '^--- ' "$2"; then
    echo
    echo "failed boots:"
    grep -E '^(--- |  \| )' "$2"
  fi
}

# --- boots timed by tools/stamp (boot_time.sh, disk_boot.sh) ---
# bench_l1_add_stamp ROOT: tools/stamp, compiled into $out, as ROOT/bench/stamp, and the L1 side's
# helpers for a boot under it, lab_stamp.sh, as ROOT/bench/lab_stamp.sh.
bench_l1_add_stamp() {
  gcc -O2 -static -Wall -Wextra -o "$out/stamp" "$here/tools/stamp.c"
  mkdir -p "$1/bench"
  cp "$out/stamp" "$1/bench/stamp"
  cp "$here/lab_stamp.sh" "$1/bench/lab_stamp.sh"
}
# bench_watch_other_qemu: lab_boot_l1's hooks (and bench_boot_l1's) that note the boots during which
# another QEMU ran on this machine: such a boot shared the cores. Sets skewed, those boots as
# KIND/RUN ("qemu/2 vmm/2"), each known by the BENCH-RESULT line that ends it, and other_pids, those
# QEMUs' pids.
# shellcheck disable=SC2317 # the hooks are called by lab_boot_l1 and bench_boot_l1
bench_watch_other_qemu() {
  bench_l1_start() { skewed="" other_pids="" seen_other=0; }
  lab_l1_poll() {
    local pids
    pids=$(lab_other_qemu | { grep -vx "$l1_pid" || true; } | xargs)
    if [ -n "$pids" ]; then
      seen_other=1
      case " $other_pids " in *" $pids "*) ;; *) other_pids="${other_pids:+$other_pids }$pids" ;; esac
    fi
  }
  lab_l1_line() {
    echo "  $1"
    case $1 in
      BENCH-RESULT*)
        # This boot ran since the previous result line (within one 2 s poll).
        [ "$seen_other" -eq 0 ] || skewed="${skewed:+$skewed }$(echo "$1" | awk '{ sub("run=", "", $3); print $2 "/" $3 }')"
        seen_other=0 ;;
    esac
  }
}
# bench_stamp_counts KIND...: field (above) for stamp's result lines, "BENCH-RESULT KIND run=N
# NAME=VALUE ...": a boot counts when it exited 0 and reached the marker, and is not in $exclude
# ("qemu/2 vmm/2"; a value of -1 was not measured). Sets exclude to $skewed when each KIND still has
# a boot that counts without them, and skew_note, what the table says about the skewed boots
# (empty if none).
bench_stamp_counts() {
  local kind
  exclude="" skew_note=""
  field() {
    awk -v kind="$1" -v name="$2" -v exclude=" $exclude " '
      $2 == kind && !index(exclude, " " $2 "/" substr($3, 5) " ") {
        delete f
        for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        if (f["status"] == "0" && f["marker_ms"] + 0 >= 0 && (name in f) && f[name] + 0 >= 0) print f[name]
      }' "$results"
  }
  [ -n "${skewed:-}" ] || return 0
  skew_note="another QEMU (pid $other_pids) shared the cores during the boots marked * ($skewed)"
  exclude=$skewed
  for kind; do
    if [ "$(count_ok "$kind")" -eq 0 ]; then
      exclude=""
      skew_note="$skew_note: no clean boot left for a VMM, so the medians include them and are skewed"
      return 0
    fi
  done
  skew_note="$skew_note: the medians leave them out"
}
