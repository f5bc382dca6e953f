#!/usr/bin/env bash
# Boot benchmark: vmm against QEMU -M microvm, side by side in one boot of the nested lab's L1.
# Builds an L1 initramfs of its own (busybox, kvm modules, vmm, QEMU + microvm firmware, the cloud
# kernel and the lab's L2 initramfs, bench/tools/stamp, bench/lab_bench_init.sh), boots it once, and
# prints the medians of N boots of each VMM and their ratios; see bench/README.md.
#
# usage: boot_time.sh [--vmm PATH] [--runs N] [--out DIR]
#   --vmm PATH  the vmm binary (default: <repo>/build/vmm/vmm)
#   --runs N    boots per VMM (default 3)
#   --out DIR   where the initramfs, logs and boot_time.txt go (default: <repo>/build/bench)
# The kernels and the L2 initramfs come from the lab's build directory ($VMM_LAB_OUT, default
# <repo>/build/lab), made there by the lab's own scripts if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
lab_scripts=$repo/guest-tests/linux
. "$lab_scripts/lib.sh"

vmm=$repo/build/vmm/vmm runs=3 out=$repo/build/bench
lab=${VMM_LAB_OUT:-$repo/build/lab}
usage() { sed -n '7,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --vmm) vmm=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "boot_time: unknown argument '$1'" >&2; usage ;;
  esac
done
case $runs in '' | *[!0-9]* | 0) echo "boot_time: --runs $runs: want a positive number" >&2; exit 2 ;; esac
[ -x "$vmm" ] || lab_die "--vmm $vmm: no such executable (cmake --build <build dir> --target vmm)"
vmm=$(cd "$(dirname "$vmm")" && pwd)/$(basename "$vmm")
qemu=$(command -v qemu-system-x86_64) || lab_die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
command -v gcc >/dev/null || lab_die "gcc not found"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- inputs: kernels and L2 initramfs (the lab's), the stamp tool ---
"$lab_scripts/fetch-kernels.sh" "$lab/kernels" >/dev/null
l2=$lab/l2-cloud.cpio.gz
if [ ! -s "$l2" ]; then
  "$lab_scripts/build-l2-initramfs.sh" --kernel-dir "$lab/kernels/cloud" --out "$l2"
fi
kernel=$lab/kernels/cloud/vmlinuz
gcc -O2 -static -Wall -Wextra -o "$out/stamp" "$here/tools/stamp.c"

# --- the L1 initramfs ---
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lab_busybox_root "$root"
lab_add_modules "$root" "$lab/kernels/cloud/modules" "${lab_l1_modules[@]}"
lab_add_binary "$root" "$vmm" /usr/local/bin/vmm
lab_add_binary "$root" "$qemu" /usr/bin/qemu-system-x86_64
mkdir -p "$root/usr/share/qemu" "$root/bench/l2"
cp "${lab_qemu_firmware[@]}" "$root/usr/share/qemu/"
cp "$kernel" "$root/bench/l2/vmlinuz"
cp "$l2" "$root/bench/l2/initrd.cpio.gz"
cp "$out/stamp" "$root/bench/stamp"
cp "$here/lab_bench_init.sh" "$root/bench/lab_bench_init.sh"
lab_write_l1_init_start "$root"
cat >>"$root/init" <<'INIT'
echo # the firmware leaves the cursor mid-line; the bench's lines must start one
BENCH_RUNS=$(sed -n 's/.*benchruns=\([0-9]*\).*/\1/p' /proc/cmdline)
export BENCH_RUNS
sh /bench/lab_bench_init.sh
poweroff -f
INIT
chmod +x "$root/init"
l1_cpio=$out/l1-bench.cpio
lab_pack_cpio "$root" "$l1_cpio" # uncompressed: gunzip under TCG costs L1 about a second
rm -rf "$root"
trap - EXIT

# --- boot L1 once (retried once if L1 itself crashes) ---
# Another lab's QEMU would share the 2 cores with this one and skew both: wait for it to end.
lab_wait_for_other_qemu

l1_command=(qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC -smp 2 -m 2048 -nographic -no-reboot
  -kernel "$kernel" -initrd "$l1_cpio" -append "console=ttyS0 panic=-1 quiet benchruns=$runs")
# L1 boot + every L2 boot at its worst (stamp's 90 s limit); silence past the stall limit means L1
# is wedged.
l1_timeout=$((180 + 2 * runs * 95))
l1_stall_limit=180
log=$out/l1-console.log
# Boots during which another QEMU was running ("qemu/2 vmm/2"), and those QEMUs' pids: such a boot
# shared the cores, so the table flags it. lab_boot_l1 calls these hooks (lib.sh).
skewed="" other_pids="" seen_other=0
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
      [ $seen_other -eq 1 ] && skewed="${skewed:+$skewed }$(echo "$1" | awk '{ sub("run=", "", $3); print $2 "/" $3 }')"
      seen_other=0 ;;
  esac
}
boot_l1() {
  local start=$SECONDS
  echo "boot_time: booting L1 ($runs boots per VMM; host timeout ${l1_timeout}s; console log $log)"
  skewed="" other_pids="" seen_other=0
  lab_boot_l1 "$log" '^BENCH-' "$l1_timeout" "$l1_stall_limit" "${l1_command[@]}"
  echo "boot_time: L1 ran $((SECONDS - start))s, QEMU exit status $l1_status${l1_killed:+ (stopped: $l1_killed)}"
}
l1_finished() { grep -q '^BENCH-END' "$log"; }
l1_crash_reason() { lab_l1_crash_reason "$log" BENCH-END; }

retry_note=""
boot_l1
if ! l1_finished; then
  retry_note="L1 crashed on the first attempt ($(l1_crash_reason)); retried once (log kept in $log.1)"
  echo "boot_time: $retry_note"
  mv "$log" "$log.1"
  boot_l1
fi
if ! l1_finished; then
  retry_note="${retry_note:+$retry_note; }L1 did not finish ($(l1_crash_reason)): the table has only the boots before that"
  echo "boot_time: $retry_note"
fi
grep -A40 '^--- ' "$log" | grep -E '^(--- |  \| )' >"$out/failures.txt" || true
grep '^BENCH-RESULT ' "$log" >"$out/results.txt" || true

# --- the table ---
# field KIND NAME: that field of every successful boot (status 0, marker seen), one per line;
# boots in $exclude ("qemu/2 vmm/2") are left out.
exclude=""
field() {
  awk -v kind="$1" -v name="$2" -v exclude=" $exclude " '
    $2 == kind && !index(exclude, " " $2 "/" substr($3, 5) " ") {
      delete f
      for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      if (f["status"] == "0" && f["marker_ms"] + 0 >= 0 && (name in f) && f[name] + 0 >= 0) print f[name]
    }' "$out/results.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { field "$1" "$2" | median; }
count_ok() { field "$1" status | wc -l; }
kib_to_mib() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v }'; }
secs() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v }'; }

# Boots that shared the cores with another QEMU are left out of the medians if each VMM still has
# a clean one.
skew_note=""
if [ -n "$skewed" ]; then
  skew_note="another QEMU (pid $other_pids) shared the cores during the boots marked * ($skewed)"
  exclude=$skewed
  if [ "$(count_ok vmm)" -gt 0 ] && [ "$(count_ok qemu)" -gt 0 ]; then
    skew_note="$skew_note: the medians leave them out"
  else
    exclude=""
    skew_note="$skew_note: no clean boot left for a VMM, so the medians include them and are skewed"
  fi
fi
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
l2_kernel=$(cat "$lab/kernels/cloud/version" 2>/dev/null || echo '?')
qemu_version=$("$qemu" --version | head -n1)
vmm_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
vmm_dirty=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' + uncommitted changes' || true)
{
  echo "vmm boot benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); vmm at $vmm_rev$vmm_dirty ($vmm)"
  echo "machine: $(nproc) CPUs, $cpu_model"
  echo "nested lab: L1 = QEMU TCG (-cpu EPYC, 2 vCPUs, 2 GiB), L2 under kvm-amd in L1"
  echo "L2: Debian $l2_kernel, the lab's busybox initramfs, 1 vCPU, 256 MiB, \"console=ttyS0 panic=-1 vmmtest=marker\""
  echo "reference: $qemu_version, -M microvm,rtc=on"
  echo "$runs boots per VMM, alternating in one L1 boot; medians of the successful boots (vmm $(count_ok vmm)/$runs, QEMU $(count_ok qemu)/$runs counted)"
  [ -n "$retry_note" ] && echo "note: $retry_note"
  [ -n "$skew_note" ] && echo "note: $skew_note"
  echo
  printf '%-34s %10s %12s %10s\n' "" vmm "QEMU microvm" vmm/QEMU
  for row in first_output_ms:"first serial output (ms)" early_marker_ms:"kernel's 'Linux version' (ms)" \
    marker_ms:"L2 /init marker (ms)" exit_ms:"process exit (ms)"; do
    name=${row%%:*} label=${row#*:}
    v=$(med vmm "$name") q=$(med qemu "$name")
    printf '%-34s %10s %12s %10s\n' "$label" "$(ms "$v")" "$(ms "$q")" "$(ratio "$v" "$q")"
  done
  for row in overhead_kib:"memory overhead at marker (MiB)" maxrss_kib:"peak RSS (MiB)"; do
    name=${row%%:*} label=${row#*:}
    v=$(kib_to_mib "$(med vmm "$name")") q=$(kib_to_mib "$(med qemu "$name")")
    printf '%-34s %10s %12s %10s\n' "$label" "$v" "$q" "$(ratio "$v" "$q")"
  done
  v=$(med vmm l2_uptime_s) q=$(med qemu l2_uptime_s)
  printf '%-34s %10s %12s %10s\n' "L2 kernel's uptime at /init (s)" "$(secs "$v")" "$(secs "$q")" "$(ratio "$v" "$q")"
  v=$(med vmm vcpu_start_ms)
  printf '%-34s %10s\n' "vmm start to guest entry (ms)" "$(awk -v v="$v" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v }')"
  echo
  echo "times: from just before fork/exec of the VMM (stamp); memory: smaps Rss at the marker minus the"
  echo "guest-RAM mapping's Rss; L2 uptime: the guest's own clock when its /init ran; the vmm start"
  echo "time is its own -vv log (static init to KVM_RUN)."
  grep '^BENCH-FIRST-LINE ' "$log" | sed 's/^BENCH-FIRST-LINE /first console line, /' || true
  echo
  echo "per boot:"
  awk -v skewed=" $skewed " '{
      sub(/^BENCH-RESULT /, ""); id = $1 "/" substr($2, 5)
      print (index(skewed, " " id " ") ? "* " : "  ") $0
    }' "$out/results.txt"
  if [ -s "$out/failures.txt" ]; then
    echo
    echo "failed boots:"
    cat "$out/failures.txt"
  fi
} | tee "$out/boot_time.txt"
exclude=""
[ "$(count_ok vmm)" -gt 0 ] && [ "$(count_ok qemu)" -gt 0 ]
