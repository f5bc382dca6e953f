# Shared helpers for the lab's scripts, the quickstart and the benchmarks (sourced, not run).
# shellcheck shell=bash
# Everything comes from Debian's packages on the host: busybox-static, cpio, kmod, xz-utils/zstd if a
# kernel's modules are compressed.

lab_die() { echo "$(basename "$0"): $*" >&2; exit 1; }
lab_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# lab_stale TARGET INPUT...: true if TARGET is missing or older than any input.
lab_stale() {
  local target=$1 input; shift
  [ -e "$target" ] || return 0
  for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
  return 1
}

# lab_build_l2 KERNELS OUT FLAVOUR: the L2 payloads for one kernel flavour (cloud, generic) of
# fetch-kernels.sh's KERNELS, in OUT, each made only if missing or older than its inputs:
#   l2-FLAVOUR.cpio.gz       the initramfs (build-l2-initramfs.sh)
#   l2-FLAVOUR-disk.cpio.gz  the same --with-disk: virtio disk modules, root=/dev/vdX switch_root
#   l2-FLAVOUR-net.cpio.gz   the same --with-net: virtio_mmio, virtio_net (the network scenarios)
#   l2-FLAVOUR-vsock.cpio.gz the same --with-vsock: virtio_mmio, the vsock transport, tools/vsockio
#   root-FLAVOUR.img(.gz)    a 32 MiB ext4 root image (build-rootfs.sh), and gzip'd (mostly zeros)
# and the lab's tools (lab_build_tools) in OUT/tools.
lab_build_l2() {
  local kernels=$1 out=$2 flavour=$3 inputs
  inputs=("$lab_here/lib.sh" "$kernels/$flavour/package")
  lab_build_tools "$out/tools"
  if lab_stale "$out/l2-$flavour.cpio.gz" "$lab_here/build-l2-initramfs.sh" "${inputs[@]}"; then
    "$lab_here/build-l2-initramfs.sh" --kernel-dir "$kernels/$flavour" --out "$out/l2-$flavour.cpio.gz"
  fi
  if lab_stale "$out/l2-$flavour-disk.cpio.gz" "$lab_here/build-l2-initramfs.sh" "${inputs[@]}"; then
    "$lab_here/build-l2-initramfs.sh" --kernel-dir "$kernels/$flavour" --with-disk \
      --out "$out/l2-$flavour-disk.cpio.gz"
  fi
  if lab_stale "$out/l2-$flavour-net.cpio.gz" "$lab_here/build-l2-initramfs.sh" "${inputs[@]}"; then
    "$lab_here/build-l2-initramfs.sh" --kernel-dir "$kernels/$flavour" --with-net \
      --out "$out/l2-$flavour-net.cpio.gz"
  fi
  if lab_stale "$out/l2-$flavour-vsock.cpio.gz" "$lab_here/build-l2-initramfs.sh" "$out/tools/vsockio" "${inputs[@]}"; then
    "$lab_here/build-l2-initramfs.sh" --kernel-dir "$kernels/$flavour" --with-vsock \
      --file "$out/tools/vsockio:/bin/vsockio" --out "$out/l2-$flavour-vsock.cpio.gz"
  fi
  if lab_stale "$out/root-$flavour.img.gz" "$lab_here/build-rootfs.sh" "${inputs[@]}"; then
    "$lab_here/build-rootfs.sh" --kernel-dir "$kernels/$flavour" --out "$out/root-$flavour.img" --size 32M
    gzip -1 -c "$out/root-$flavour.img" >"$out/root-$flavour.img.gz"
  fi
}

# lab_build_tools OUTDIR: the lab's small static C tools (tools/*.c, gcc -static from libc6-dev) in
# OUTDIR, each compiled only if missing or older than its source or tools/relay.h:
#   vsockio  nc for vsock, in the L2 guests (--with-vsock initramfs)
#   uds      the host side of vmm's --vsock and --api-socket Unix sockets, in L1
#   kvm-hold holds an idle VM open in L1 while the lab runs (why: its source)
lab_build_tools() {
  local outdir=$1 tool
  command -v gcc >/dev/null || lab_die "gcc not found (apt-get install gcc libc6-dev)"
  mkdir -p "$outdir"
  for tool in vsockio uds kvm-hold; do
    if lab_stale "$outdir/$tool" "$lab_here/tools/$tool.c" "$lab_here/tools/relay.h"; then
      gcc -O2 -static -pthread -Wall -Wextra -Werror -o "$outdir/$tool.tmp" "$lab_here/tools/$tool.c" ||
        lab_die "cannot compile tools/$tool.c"
      mv "$outdir/$tool.tmp" "$outdir/$tool"
    fi
  done
}

# Populates ROOT with the static busybox and one symlink per applet, plus the mount points an /init needs.
lab_busybox_root() {
  local root=$1 busybox applet
  busybox=$(command -v busybox) || lab_die "busybox not found (apt-get install busybox-static)"
  # It runs in guests with no libc: it must be the static build.
  { ldd "$busybox" 2>&1 || true; } | grep -q 'not a dynamic executable' ||
    lab_die "$busybox is not statically linked (apt-get install busybox-static)"
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,root,lib/modules,usr/bin,usr/sbin}
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  # The kernel opens /dev/console before /init runs; Debian kernels' built-in initramfs has the node,
  # make it here too when we can (root), so /init has a console either way.
  if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
    mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true
  fi
}

# The module file (relative to MODDIR) for a module name; '-' and '_' are interchangeable in names.
lab_module_path() {
  local moddir=$1 name=${2//-/_}
  awk -F: -v n="$name" '{
      f = $1; sub(/.*\//, "", f); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", f); gsub(/-/, "_", f)
      if (f == n) { print $1; exit }
    }' "$moddir/modules.dep"
}

# Prints the module files (relative to MODDIR) of the named modules and of everything they depend on
# (modules.dep), each once, dependencies first: an order insmod can follow. Built-in modules
# (modules.builtin) are skipped.
lab_module_closure() {
  local moddir=$1; shift
  local -A seen=()
  _lab_closure_one() {
    local name=${1//-/_} rel deps dep base
    [ -z "${seen[$name]:-}" ] || return 0
    seen[$name]=1
    if grep -qE "/${name//_/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; then return 0; fi
    rel=$(lab_module_path "$moddir" "$name")
    [ -n "$rel" ] || lab_die "module $name not found in $moddir/modules.dep"
    deps=$(awk -F': *' -v m="$rel" '$1 == m {print $2; exit}' "$moddir/modules.dep")
    for dep in $deps; do
      base=${dep##*/}
      _lab_closure_one "${base%%.ko*}"
    done
    echo "$rel"
  }
  for name in "$@"; do _lab_closure_one "$name"; done
}

# Copies the named modules and everything they depend on from MODDIR into ROOT/lib/modules,
# decompressed, and appends them to ROOT/lib/modules/load-order in an order insmod can follow.
lab_add_modules() {
  local root=$1 moddir=$2 rel base; shift 2
  touch "$root/lib/modules/load-order"
  while read -r rel; do
    base=${rel##*/}
    case $base in
      *.ko.xz) xz -dc "$moddir/$rel" >"$root/lib/modules/${base%.xz}" ;;
      *.ko.zst) zstd -qdc "$moddir/$rel" >"$root/lib/modules/${base%.zst}" ;;
      *.ko.gz) gzip -dc "$moddir/$rel" >"$root/lib/modules/${base%.gz}" ;;
      *) cp "$moddir/$rel" "$root/lib/modules/$base" ;;
    esac
    echo "${base%%.ko*}.ko" >>"$root/lib/modules/load-order"
  done < <(lab_module_closure "$moddir" "$@")
}

# lab_copy_module_tree MODDIR DEST NAME...: a kernel package's modules folder cut down to the named
# modules and their dependencies, at their places, with modules.dep, .builtin, .softdep and .alias:
# what vmm's --modules reads (the whole tree would not fit in L1's memory).
# The modules the one-line boot's --modules folder keeps: what vmm's built initramfs takes, and
# crc32c, which ext4 asks the crypto API for by name (a soft dependency).
lab_oneline_modules=(virtio_mmio virtio_blk virtio_net vmw_vsock_virtio_transport pvpanic_mmio ext4 crc32c_generic
  virtio_console virtiofs overlay)

lab_copy_module_tree() {
  local moddir=$1 dest=$2 rel; shift 2
  mkdir -p "$dest"
  cp "$moddir/modules.dep" "$moddir/modules.builtin" "$moddir/modules.softdep" "$moddir/modules.alias" "$dest/"
  while read -r rel; do
    mkdir -p "$dest/$(dirname "$rel")"
    cp "$moddir/$rel" "$dest/$rel"
  done < <(lab_module_closure "$moddir" "$@")
}

# Packs ROOT into a newc cpio archive OUT (the format the kernel unpacks as an initramfs), gzip'd if
# OUT ends in .gz. (Uncompressed suits the big L1 archive: under TCG, gunzip costs L1 about a second.)
lab_pack_cpio() {
  local root=$1 out=$2
  command -v cpio >/dev/null || lab_die "cpio not found (apt-get install cpio)"
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
    case $out in *.gz) gzip -6 ;; *) cat ;; esac >"$out.tmp"
  mv "$out.tmp" "$out"
}

# Shell code for an /init: loads every module of /lib/modules/load-order, reporting failures. Module
# parameters on the kernel command line (NAME.PARAM=VALUE, NAME as the module's file has it, e.g.
# virtio_net.csum=0) go to that module's insmod, as modprobe would pass them: the kernel applies
# them only to built-in code.
# shellcheck disable=SC2034,SC2016 # used by the scripts that source this; expands in the guest
lab_init_load_modules='
if [ -s /lib/modules/load-order ]; then
  while read -r m; do
    params=""
    for w in $(cat /proc/cmdline); do
      case $w in "${m%.ko}".*=*) params="$params ${w#*.}" ;; esac
    done
    # shellcheck disable=SC2086 # a list of words
    insmod "/lib/modules/$m" $params || echo "init: insmod $m$params failed"
  done </lib/modules/load-order
fi'

# The modules an L2 guest needs to use a virtio-mmio disk as its root (ext4) on the kernel of
# KERNEL_DIR: virtio_mmio and virtio_blk are modules in Debian's kernels; ext4 is built into the cloud
# kernel and a module in the generic one, which then also needs crc32c_generic (ext4 asks the crypto
# API for "crc32c" by name, which only modprobe could resolve). Built-in ones are skipped when added.
lab_disk_modules() {
  local kernel_dir=$1 list="virtio_mmio virtio_blk"
  if grep -q '^CONFIG_EXT4_FS=m' "$kernel_dir/config"; then list="$list ext4 crc32c_generic"; fi
  echo "$list"
}

# shellcheck disable=SC2034 # used by the scripts that source this
# The modules that give L1 a /dev/kvm (dependencies are added from modules.dep).
lab_l1_modules=(irqbypass kvm kvm_amd)
# shellcheck disable=SC2034 # used by the scripts that source this
# What L1 needs to give L2 guests a network: taps (tun) on a bridge (bridge; stp and llc come along).
lab_l1_net_modules=(tun bridge)
# shellcheck disable=SC2034 # used by the scripts that source this
# What QEMU -M microvm reads besides its libraries (strace of a microvm boot with -kernel).
lab_qemu_firmware=(/usr/share/qemu/bios-microvm.bin /usr/share/qemu/linuxboot_dma.bin)

# lab_write_l1_init_start ROOT: the start of L1's /init, the same for the lab and the benchmark:
# mounts, the console as stdio, then the kvm modules in load-order.
lab_write_l1_init_start() {
  cat >"$1/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
exec </dev/console >/dev/console 2>&1
$lab_init_load_modules
INIT
}

# Copies the dynamically linked executable BIN to ROOT at the same path (or DEST), with every shared
# library ldd lists for it and the dynamic loader, each at the path the loader will look for it.
lab_add_binary() {
  local root=$1 bin=$2 dest=${3:-$2} lib
  [ -x "$bin" ] || lab_die "$bin: not an executable"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$bin" "$root$dest"
  for lib in $({ ldd "$bin" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# lab_append_guest_init FILE: appends what an L2 guest's init does after its mounts: it reads
# vmmtest=<scenario> from the kernel command line and acts on it (the L2 initramfs's /init and the
# root image's /sbin/init share it, so every scenario can run from either). Each scenario prints its
# VMM-L2-* lines and powers off.
lab_append_guest_init() {
  cat >>"$1" <<'INIT'
halt_with() { # poweroff -f or reboot -f; if it returns, the VMM missed the request: say so, then wait
  "$@"
  echo "VMM-L2-ERROR: '$*' returned"
  while :; do sleep 3600; done
}
wait_for_block() { # wait_for_block DEV: a virtio disk's node appears once its driver probed it
  i=0
  while [ ! -b "$1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  [ -b "$1" ] || echo "VMM-L2-ERROR: no $1 after 5 s"
}
print_disks() { # one line per virtio disk: size in 512-byte sectors, read-only flag, serial
  for d in /sys/block/vd*; do
    [ -e "$d" ] || continue
    echo "VMM-L2-DISK ${d##*/} sectors=$(cat "$d/size") ro=$(cat "$d/ro") serial=$(cat "$d/serial" 2>/dev/null)"
  done
}
cmdline_value() { # cmdline_value NAME: the value of NAME=VALUE on the kernel command line
  for w in $(cat /proc/cmdline); do
    case $w in "$1"=*) echo "${w#*=}"; return ;; esac
  done
}
net_up() { # eth0 (the first virtio-net device) gets vmmnet=ADDR/PREFIX, and a default route via vmmgw=
  addr=$(cmdline_value vmmnet) gw=$(cmdline_value vmmgw)
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if [ ! -e /sys/class/net/eth0 ]; then
    echo "VMM-L2-ERROR: no eth0 after 5 s (interfaces: $(echo /sys/class/net/* | sed 's|/sys/class/net/||g'))"
    return 1
  fi
  ip link set lo up
  if [ -z "$addr" ] || ! ip addr add "$addr" dev eth0 || ! ip link set eth0 up; then
    echo "VMM-L2-ERROR: cannot configure eth0 with vmmnet='$addr'"
    return 1
  fi
  [ -z "$gw" ] || ip route add default via "$gw" || echo "VMM-L2-ERROR: no default route via $gw"
  echo "VMM-L2-NET-UP eth0 $addr mac=$(cat /sys/class/net/eth0/address)" \
    "csum=$(cat /sys/module/virtio_net/parameters/csum) gso=$(cat /sys/module/virtio_net/parameters/gso)"
}
net_ping() { # net_ping ADDR: 3 pings; VMM-L2-NET-PING=ADDR,ok,<avg ms> or ADDR,failed
  # -W: the first reply may wait for the peer's ARP (and, on a fresh tap, the bridge port)
  if ping -c 3 -W 10 "$1" >/tmp/ping.out 2>&1; then
    echo "VMM-L2-NET-PING=$1,ok,$(sed -n 's|.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*|\1|p' /tmp/ping.out)"
  else
    echo "VMM-L2-NET-PING=$1,failed"
    sed 's/^/  ping: /' /tmp/ping.out
  fi
}
vsock_up() { # waits for the virtio-vsock device's driver to bind; VMM-L2-VSOCK-UP cid=<our CID>
  i=0
  while ! ls -d /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/virtio* >/dev/null 2>&1 &&
    [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if ! cid=$(vsockio cid); then
    echo "VMM-L2-ERROR: no vsock device after 5 s (virtio devices: $(echo /sys/bus/virtio/devices/* | sed 's|/sys/bus/virtio/devices/||g'))"
    return 1
  fi
  echo "VMM-L2-VSOCK-UP cid=$cid"
}
# A fifo held open read-write is a stdin that never ends: busybox nc shuts its sending half down when
# its stdin ends, and nc -l exits when the other side does, so a receiver's stdin must not end first.
hold_stdin() { [ -p /tmp/hold ] || mkfifo /tmp/hold; exec 3<>/tmp/hold; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
seconds_since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }
scenario=$(sed -n 's/.*vmmtest=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "VMM-L2-UP scenario=${scenario:-none} kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
case $scenario in
  marker)
    echo VMM-L2-MARKER
    halt_with poweroff -f ;;
  cpus)
    echo "VMM-L2-CPUS=$(grep -c '^processor' /proc/cpuinfo)"
    # Without ACPI (acpi=off) a PC has no way to power off: it reboots instead.
    if [ -d /sys/firmware/acpi ]; then halt_with poweroff -f; else halt_with reboot -f; fi ;;
  poweroff)
    halt_with poweroff -f ;;
  reboot)
    halt_with reboot -f ;;
  panic)
    if ls /sys/bus/platform/drivers/pvpanic-mmio/ 2>/dev/null | grep -q ':'; then
      echo "VMM-L2-PVPANIC=bound"
    else
      echo "VMM-L2-PVPANIC=unbound ($(cat /etc/pvpanic))"
    fi
    echo 1 >/proc/sys/kernel/sysrq
    echo c >/proc/sysrq-trigger
    halt_with false ;;
  echo)
    stty -echo 2>/dev/null
    echo VMM-L2-ECHO-READY
    read -r line
    echo "VMM-L2-ECHO:$line"
    halt_with poweroff -f ;;
  rtc)
    echo "VMM-L2-RTC=$(cat /sys/class/rtc/rtc0/since_epoch 2>/dev/null)"
    halt_with poweroff -f ;;
  disk-root | "")
    # Run from the root image's /sbin/init; with no vmmtest= at all, booted as a user would (vmm
    # --kernel K --disk IMG). Read-write: writes a file the lab reads back from the image, then
    # remounts / read-only, which checkpoints ext4's journal: the image is clean at power-off.
    # Read-only: the write must be refused.
    root=$(awk '$2 == "/" && $1 != "rootfs" { print $1 "," $3 "," substr($4, 1, 2) }' /proc/mounts | tail -n1)
    echo "VMM-L2-ROOT=$root"
    case $root in
      *,ro)
        if echo x 2>/dev/null >/lab-disk-root.txt; then echo VMM-L2-ROOT-WRITE=accepted; else echo VMM-L2-ROOT-WRITE=refused; fi ;;
      *)
        echo "vmm-lab disk-root: written by the L2 guest" >/lab-disk-root.txt
        sync
        mount -o remount,ro / && echo VMM-L2-DISK-SYNCED ;;
    esac
    halt_with poweroff -f ;;
  disks)
    wait_for_block /dev/vda
    print_disks
    halt_with poweroff -f ;;
  disk-ro)
    # The kernel refuses writes to a disk whose device offers VIRTIO_BLK_F_RO (EPERM).
    wait_for_block /dev/vda
    print_disks
    if dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/tmp/dd.err; then
      echo VMM-L2-DISK-WRITE=accepted
    else
      echo "VMM-L2-DISK-WRITE=refused ($(grep -v records /tmp/dd.err | head -n1))"
    fi
    halt_with poweroff -f ;;
  disk-read)
    # Reads the whole of /dev/vda, cold (nothing of it cached yet), timed by this clock: the
    # disk-rate-limit scenario compares the rate with the disk's limit. With vmmreads=N, N times,
    # 3 s apart, the cache dropped before each: the scenario changes the limit in between.
    wait_for_block /dev/vda
    reads=$(sed -n 's/.*vmmreads=\([0-9]*\).*/\1/p' /proc/cmdline)
    n=1
    while :; do
      t=$(uptime_s)
      bytes=$(dd if=/dev/vda bs=64k 2>/dev/null | wc -c)
      echo "VMM-L2-DISK-READ bytes=$bytes seconds=$(seconds_since "$t")"
      [ "$n" -ge "${reads:-1}" ] && break
      n=$((n + 1))
      sleep 3
      echo 3 >/proc/sys/vm/drop_caches
    done
    halt_with poweroff -f ;;
  blkbench)
    # bench/tools/blkbench on /dev/vda; its arguments ride on the command line (blkbench=a,b,...).
    wait_for_block /dev/vda
    # shellcheck disable=SC2046 # a list of words
    /bin/blkbench $(sed -n 's/.*blkbench=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ') /dev/vda
    echo "VMM-L2-BLKBENCH-STATUS=$?"
    halt_with poweroff -f ;;
  net-mac)
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    echo "VMM-L2-NET-MAC=$(cat /sys/class/net/eth0/address 2>/dev/null)"
    halt_with poweroff -f ;;
  net-ping)
    # Pings every address of vmmpeer= (comma-separated); with vmmrelease=ADDR, then sends a line to
    # ADDR's port 5003, where another guest's net-wait waits for it.
    if net_up; then
      for peer in $(cmdline_value vmmpeer | tr ',' ' '); do net_ping "$peer"; done
      release=$(cmdline_value vmmrelease)
      if [ -n "$release" ]; then
        echo "hello-from-$(cmdline_value vmmnet | cut -d/ -f1)" | nc -w 10 "$release" 5003 &&
          echo "VMM-L2-NET-RELEASED=$release"
      fi
    fi
    halt_with poweroff -f ;;
  net-wait)
    # Waits for one line on TCP port 5003 (from another guest's net-ping), prints it, powers off.
    if net_up; then
      hold_stdin
      echo VMM-L2-NET-READY
      echo "VMM-L2-NET-GOT=$(nc -l -p 5003 </tmp/hold)"
    fi
    halt_with poweroff -f ;;
  net-tcp)
    # vmmnetmib= MiB each way with the peer (vmmpeer=, port 5001 serves them, port 5002 takes ours),
    # checked by md5 on both ends (cheaper than sha256 where the CPU is emulated): L1 compares.
    peer=$(cmdline_value vmmpeer) mib=$(cmdline_value vmmnetmib)
    if net_up; then
      net_ping "$peer"
      hold_stdin
      t=$(uptime_s)
      sum=$(nc "$peer" 5001 </tmp/hold | md5sum | cut -d' ' -f1)
      echo "VMM-L2-NET-RX seconds=$(seconds_since "$t")"
      echo "VMM-L2-NET-RX-MD5=$sum"
      dd if=/dev/urandom of=/tmp/tx bs=1M count="$mib" 2>/dev/null
      echo "VMM-L2-NET-TX-MD5=$(md5sum </tmp/tx | cut -d' ' -f1)"
      t=$(uptime_s)
      nc "$peer" 5002 </tmp/tx && echo "VMM-L2-NET-TX seconds=$(seconds_since "$t")"
      rm -f /tmp/tx
      # What virtio_net counted: rx_length_errors are received packets it dropped for buffers
      # missing or too long (a device that publishes a packet's buffers piecemeal).
      stats=""
      for counter in rx_length_errors rx_dropped rx_errors tx_dropped tx_errors; do
        stats="$stats $counter=$(cat /sys/class/net/eth0/statistics/$counter)"
      done
      echo "VMM-L2-NET-STATS$stats"
    fi
    halt_with poweroff -f ;;
  netbench)
    # bench/net_throughput.sh: netbench=MIB,PINGS. Pings vmmpeer=, then reads MIB MiB from its port
    # 5001 and sends MIB MiB to its port 5002, dd doing the socket I/O (nc -e: nc's own 8 KiB copy
    # loop would cost more than the network), timed by this clock. The send ends when the peer's
    # port 5003 says it has it all: powering off earlier would lose what is still in flight.
    peer=$(cmdline_value vmmpeer) args=$(cmdline_value netbench)
    NETBENCH_MIB=${args%%,*}
    if net_up; then
      ping -c "${args#*,}" -i 0.2 -W 10 "$peer" >/tmp/ping.out 2>&1
      rtt=$(sed -n 's|.*min/avg/max = \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\).*|min=\1 avg=\2 max=\3|p' /tmp/ping.out)
      echo "VMM-L2-NETBENCH-PING ${rtt:-failed} $(grep -o '[0-9]* packets received' /tmp/ping.out)"
      # dd counts what it reads in whole 64 KiB blocks (fullblock): "N+M records in"
      printf '#!/bin/sh\ndd iflag=fullblock bs=64k of=/dev/null 2>/tmp/rx.dd\n' >/tmp/rx.sh
      printf '#!/bin/sh\ndd if=/dev/zero bs=64k count=%s 2>/dev/null\n' $((NETBENCH_MIB * 16)) >/tmp/tx.sh
      chmod +x /tmp/rx.sh /tmp/tx.sh
      hold_stdin
      t=$(uptime_s)
      nc "$peer" 5001 -e /tmp/rx.sh
      echo "VMM-L2-NETBENCH-RX blocks=$(sed -n 's/ records in//p' /tmp/rx.dd) seconds=$(seconds_since "$t")"
      t=$(uptime_s)
      nc "$peer" 5002 -e /tmp/tx.sh
      nc "$peer" 5003 </tmp/hold >/tmp/ack
      echo "VMM-L2-NETBENCH-TX seconds=$(seconds_since "$t") ack=$(cat /tmp/ack)"
    fi
    halt_with poweroff -f ;;
  vsock)
    # vmm --vsock: vmmvsockmib= MiB each way over vsock. First L1 -> guest: we listen on port 5000
    # (vsockio says so on the console: L1 waits for that line) and answer with the md5 of what we
    # got; then guest -> L1: random bytes to the host (CID 2), port 6000, where L1 answers with
    # its md5. The answers prove delivery: neither sender quits, nor do we power off, before it.
    mib=$(cmdline_value vmmvsockmib)
    if vsock_up; then
      [ -p /tmp/answer ] || mkfifo /tmp/answer
      # shellcheck disable=SC2094 # the fifo is read and written on purpose
      vsockio -v listen 5000 </tmp/answer | md5sum | cut -d' ' -f1 | tee /tmp/rx.md5 >/tmp/answer
      echo "VMM-L2-VSOCK-RX-MD5=$(cat /tmp/rx.md5)"
      dd if=/dev/urandom of=/tmp/tx bs=1M count="$mib" 2>/dev/null
      echo "VMM-L2-VSOCK-TX-MD5=$(md5sum </tmp/tx | cut -d' ' -f1)"
      echo "VMM-L2-VSOCK-TX-ANSWER=$(vsockio -v connect 2 6000 </tmp/tx)"
      rm -f /tmp/tx
    fi
    halt_with poweroff -f ;;
  vsockbench)
    # bench/vsock_throughput.sh: vsockbench=MIB. L1 sends MIB MiB of zeros to our port 5000 (we
    # count them, timed by vsockio from accept to end of stream: this clock), then we send MIB MiB
    # of zeros to the host's port 6000, timed until L1 answers with the byte count it read.
    mib=$(cmdline_value vsockbench)
    if vsock_up; then
      vsockio -v listen 5000 </dev/null >/dev/null 2>/tmp/rx.err &
      pid=$!
      i=0
      while ! grep -q listening /tmp/rx.err && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
      echo VMM-L2-VSOCKBENCH-LISTENING
      wait $pid
      echo "VMM-L2-VSOCKBENCH-RX $(tail -n1 /tmp/rx.err)"
      dd if=/dev/zero bs=64k count=$((mib * 16)) 2>/dev/null | vsockio -v connect 2 6000 >/tmp/ack 2>/tmp/tx.err
      echo "VMM-L2-VSOCKBENCH-TX ack=$(cat /tmp/ack) $(tail -n1 /tmp/tx.err)"
    fi
    halt_with poweroff -f ;;
  ticker)
    # The control socket's scenarios: our clocks every ~0.2 s, "VMM-L2-TICK <n> <uptime> <epoch>", for
    # vmmticks= ticks (default 300), while L1 pauses, resumes and stops us. Kernel messages stay
    # off the console: one printed mid-line (the clocksource watchdog warns after a pause) would
    # split a tick's line.
    dmesg -n 1
    n=0 ticks=$(cmdline_value vmmticks)
    while [ $n -lt "${ticks:-300}" ]; do
      read -r up _ </proc/uptime
      echo "VMM-L2-TICK $n $up $(date +%s)"
      n=$((n + 1))
      sleep 0.2
    done
    halt_with poweroff -f ;;
  resume)
    # snapshot-disk-net: on a root disk, with eth0 up, we write a file (and the same bytes to vdb, a
    # snapshot=on disk) and sync it, open a TCP
    # connection to L1 (vmmpeer=, port 5010) and hold it: a counter every ~0.2 s, on the console
    # ("VMM-L2-TICK <n> <uptime> <epoch>") and on the connection ("tick <n>"). L1 snapshots us, kills
    # the vmm and restores us somewhere along the way. At tick 50 we check the file, close the
    # connection, remount / read-only and power off.
    dmesg -n 1
    net_up || halt_with poweroff -f
    head -c 262144 /dev/urandom >/lab-resume.bin
    sum=$(md5sum </lab-resume.bin | cut -d' ' -f1)
    sync
    # The same bytes on the second disk, a snapshot=on one: its overlay must come back with us.
    dd if=/lab-resume.bin of=/dev/vdb bs=65536 conv=fsync 2>/dev/null || echo "VMM-L2-ERROR: cannot write /dev/vdb"
    echo "VMM-L2-RESUME-FILE $sum"
    mkfifo /tmp/tcp
    nc "$(cmdline_value vmmpeer)" 5010 </tmp/tcp &
    exec 3>/tmp/tcp
    n=0
    while [ $n -lt 50 ]; do
      read -r up _ </proc/uptime
      echo "VMM-L2-TICK $n $up $(date +%s)"
      echo "tick $n" >&3
      n=$((n + 1))
      sleep 0.2
    done
    exec 3>&-
    # Read back from the disks themselves, not the page cache.
    sync
    echo 3 >/proc/sys/vm/drop_caches
    echo "VMM-L2-RESUME-CHECK file=$([ "$(md5sum </lab-resume.bin | cut -d' ' -f1)" = "$sum" ] && echo intact || echo changed)" \
      "overlay=$([ "$(head -c 262144 /dev/vdb | md5sum | cut -d' ' -f1)" = "$sum" ] && echo intact || echo changed)"
    sync
    mount -o remount,ro / && echo VMM-L2-DISK-SYNCED
    halt_with poweroff -f ;;
  clone)
    # The clones scenario: we wait (snapshotted here) for one console line, the clone's number N,
    # which L1 sends through the restored vmm's stdin. Then each clone takes an address and a MAC of
    # its own, waits for the RNG reseed a new VM Generation ID triggers, prints the ID and random
    # bytes, pings L1, and waits a few seconds (L1 measures the clones' memory) before powering off.
    dmesg -n 1
    ip link set lo up
    echo "VMM-L2-CLONE-READY"
    read -r n
    ip link set eth0 address "02:00:00:00:01:0$n"
    ip addr add "10.0.2.$((40 + n))/24" dev eth0
    ip link set eth0 up
    i=0
    while ! dmesg | grep -q "virtual machine fork" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    reseeded=no
    dmesg | grep -q "virtual machine fork" && reseeded=yes
    id=$(dd if=/dev/mem bs=16 skip=$((0xfd000 / 16)) count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    random=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "VMM-L2-CLONE n=$n vmgenid=$id random=$random reseeded=$reseeded"
    net_ping "$(cmdline_value vmmpeer)"
    sleep 8
    halt_with poweroff -f ;;
  shell)
    echo
    echo "  vmm: Debian $(uname -r) is up ($(grep -c '^processor' /proc/cpuinfo) vCPU, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB)."
    root_fs=$(awk '$2 == "/" && $1 != "rootfs" { print $1 " (" $3 ", " substr($4, 1, 2) ")" }' /proc/mounts | tail -n1)
    [ -n "$root_fs" ] && echo "  The root filesystem is $root_fs, a virtio-blk disk."
    echo "  This is a busybox shell on the serial console. 'poweroff -f' (or Ctrl-D) powers the guest off."
    echo
    setsid cttyhack sh -l
    halt_with poweroff -f ;;
  *)
    echo "VMM-L2-ERROR: unknown vmmtest='$scenario'"
    halt_with poweroff -f ;;
esac
INIT
}

# lab_write_l1_net FILE: shell code for L1 (busybox) that defines l1_net_up BRIDGE ADDR/PREFIX TAP...:
# a bridge with that address and persistent taps (busybox tunctl: TUNSETIFF + TUNSETPERSIST) attached
# to it, all up; a VMM opens a tap by name (vmm --net tap=NAME, QEMU -netdev tap,ifname=NAME). Whatever
# exists already is kept, so calling it again is harmless. Needs lab_l1_net_modules loaded.
lab_write_l1_net() {
  cat >"$1" <<'NET'
l1_net_up() {
  br=$1 addr=$2
  shift 2
  ip link set lo up
  if [ ! -d "/sys/class/net/$br" ]; then
    ip link add name "$br" type bridge && ip addr add "$addr" dev "$br" || return 1
  fi
  ip link set "$br" up || return 1
  for tap in "$@"; do
    [ -d "/sys/class/net/$tap" ] || tunctl -t "$tap" >/dev/null || return 1
    [ -e "/sys/class/net/$tap/brport" ] || brctl addif "$br" "$tap" || return 1
    ip link set "$tap" up || return 1
  done
}
NET
}

# --- running L1 (the lab, the benchmarks) ---
# lab_boot_l1 LOG LINES TIMEOUT STALL COMMAND...: runs L1 (COMMAND, its QEMU) in the background with
# its console, carriage returns removed, in LOG, and polls it every 2 s: each new console line that
# matches the extended regex LINES goes to lab_l1_line. L1 is stopped when it runs for TIMEOUT
# seconds, or goes STALL seconds without such a line: a wedged L1 (seen: an L1 CPU in a soft lockup
# inside its KVM, where no signal reaches the stuck VMM; and both its CPUs looping in its kernel with
# interrupts off). L1's second serial port writes to LOG.alive: an L1 whose /init beats there (the
# lab's: its uptime every 5 s) and then stops for 60 s is stuck too, and stopped at once. If the
# calling script is stopped, so is L1.
# Sets l1_pid, l1_status (QEMU's exit status) and l1_killed (why it was stopped; empty if it ended
# by itself). The caller may redefine the hooks after sourcing this file:
#   lab_l1_line LINE   each new matching line (default: printed)
#   lab_l1_poll        at every poll, before the lines (default: nothing)
lab_l1_line() { echo "$1"; }
lab_l1_poll() { :; }
# lab_l1_diagnose MONITOR OUT: before a stalled L1 is stopped, what its QEMU was doing, written to OUT:
# each thread's state and CPU ticks, twice, 2 s apart (spinning vCPU threads, or a QEMU that sleeps),
# then three times, 1 s apart, where each vCPU is, as QEMU's monitor (the FIFOs MONITOR.in and
# MONITOR.out, read into MONITOR) sees it. No answer at all: QEMU's main loop itself is stuck.
lab_l1_diagnose() {
  local monitor=$1 out=$2 round t
  {
    echo "--- lab: L1 stalled; its QEMU (pid $l1_pid) at $(date -u +%T): thread, state, user and system ticks"
    for round in 1 2; do
      for t in /proc/"$l1_pid"/task/*; do
        echo "---   $(cat "$t/comm" 2>/dev/null) $(cut -d')' -f2 "$t/stat" 2>/dev/null | awk '{ print $1, $12, $13 }')"
      done
      [ "$round" = 1 ] && sleep 2 && echo "---   (2 s later)"
    done
  } >"$out"
  for round in 1 2 3; do
    printf 'info registers -a\n' >"$monitor.in" &
    sleep 1
  done
  echo "--- lab: QEMU's monitor, info registers -a three times (nothing: it did not answer):" >>"$out"
  grep -aE '^CPU#|^RIP|^CS |^CR0|^EFER' "$monitor" | sed 's/^/---   /' >>"$out" || true
}
lab_boot_l1() {
  local log=$1 lines=$2 timeout=$3 stall=$4; shift 4
  local start=$SECONDS last=$SECONDS shown=0 n line monitor_reader beats=0 beat=$SECONDS size
  l1_killed=""
  : >"$log"
  # QEMU's monitor on two FIFOs (QEMU opens both read-write, so nothing blocks): lab_l1_diagnose's.
  rm -f "$log.stall" "$log.monitor" "$log.monitor.in" "$log.monitor.out" "$log.alive"
  mkfifo "$log.monitor.in" "$log.monitor.out"
  "$@" -monitor "pipe:$log.monitor" -serial stdio -serial "file:$log.alive" </dev/null >"$log.raw" 2>&1 &
  l1_pid=$!
  cat "$log.monitor.out" >"$log.monitor" &
  monitor_reader=$!
  trap 'kill "$l1_pid" "$monitor_reader" 2>/dev/null' EXIT
  while :; do
    sleep 2
    tr -d '\r' <"$log.raw" >"$log"
    lab_l1_poll
    n=$(grep -cE "$lines" "$log" || true)
    if [ "$n" -gt "$shown" ]; then
      while IFS= read -r line; do lab_l1_line "$line"; done < <(grep -E "$lines" "$log" | tail -n +$((shown + 1)))
      shown=$n last=$SECONDS
    fi
    kill -0 "$l1_pid" 2>/dev/null || break
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      l1_killed="L1 did not finish within ${timeout}s"
    elif [ $((SECONDS - last)) -ge "$stall" ]; then
      l1_killed="L1 printed no lab line for ${stall}s"
      if grep -q 'soft lockup' "$log"; then l1_killed="$l1_killed, its console reports a soft lockup"; fi
    elif [ "$beats" -gt 0 ] && [ $((SECONDS - beat)) -ge 60 ]; then
      l1_killed="L1's heartbeat stopped for 60 s (its kernel is stuck)"
    fi
    size=$(stat -c %s "$log.alive" 2>/dev/null || echo 0)
    [ "$size" -gt "$beats" ] && beats=$size beat=$SECONDS
    if [ -n "$l1_killed" ]; then
      lab_l1_diagnose "$log.monitor" "$log.stall"
      kill "$l1_pid" 2>/dev/null || true
      break
    fi
  done
  l1_status=0
  wait "$l1_pid" || l1_status=$?
  kill "$monitor_reader" 2>/dev/null || true
  wait "$monitor_reader" 2>/dev/null || true
  trap - EXIT
  tr -d '\r' <"$log.raw" >"$log"
  [ -e "$log.stall" ] && cat "$log.stall" >>"$log"
  rm -f "$log.raw" "$log.stall" "$log.monitor" "$log.monitor.in" "$log.monitor.out" "$log.alive"
}

# lab_l1_crash_reason LOG END: why an L1 whose console LOG lacks the END line did not get there.
lab_l1_crash_reason() {
  if grep -v '^  | ' "$1" | grep -q 'Kernel panic'; then
    echo "L1's console says Kernel panic"
  elif [ -n "$l1_killed" ]; then
    echo "$l1_killed"
  else
    echo "L1's QEMU exited with status $l1_status before $2"
  fi
}

# Another QEMU on the machine (another lab or benchmark) shares the 2 cores: benchmarks wait for it.
lab_other_qemu() { pgrep -x qemu-system-x86 || true; }
lab_wait_for_other_qemu() {
  if [ -n "$(lab_other_qemu)" ]; then
    echo "$(basename "$0"): another QEMU is running (pid $(lab_other_qemu | xargs)); waiting for it to end"
    while [ -n "$(lab_other_qemu)" ]; do sleep 5; done
  fi
}
