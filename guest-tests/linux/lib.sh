# Shared helpers for the initramfs builders (sourced, not run).
# shellcheck shell=bash
# Everything comes from Debian's packages on the host: busybox-static, cpio, kmod, xz-utils/zstd if a
# kernel's modules are compressed.

lab_die() { echo "$(basename "$0"): $*" >&2; exit 1; }

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

# Copies the named modules and everything they depend on (modules.dep) from MODDIR into
# ROOT/lib/modules, decompressed, and appends them to ROOT/lib/modules/load-order in an order insmod
# can follow (dependencies first). Built-in modules (modules.builtin) are skipped.
lab_add_modules() {
  local root=$1 moddir=$2; shift 2
  local -A seen=()
  local name
  _lab_add_one() {
    local name=${1//-/_} rel deps dep base
    [ -z "${seen[$name]:-}" ] || return 0
    seen[$name]=1
    if grep -qE "/${name//_/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; then return 0; fi
    rel=$(lab_module_path "$moddir" "$name")
    [ -n "$rel" ] || lab_die "module $name not found in $moddir/modules.dep"
    deps=$(awk -F': *' -v m="$rel" '$1 == m {print $2; exit}' "$moddir/modules.dep")
    for dep in $deps; do
      base=${dep##*/}
      _lab_add_one "${base%%.ko*}"
    done
    base=${rel##*/}
    case $base in
      *.ko.xz) xz -dc "$moddir/$rel" >"$root/lib/modules/${base%.xz}" ;;
      *.ko.zst) zstd -qdc "$moddir/$rel" >"$root/lib/modules/${base%.zst}" ;;
      *.ko.gz) gzip -dc "$moddir/$rel" >"$root/lib/modules/${base%.gz}" ;;
      *) cp "$moddir/$rel" "$root/lib/modules/$base" ;;
    esac
    echo "${base%%.ko*}.ko" >>"$root/lib/modules/load-order"
  }
  touch "$root/lib/modules/load-order"
  for name in "$@"; do _lab_add_one "$name"; done
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

# Shell code for an /init: loads every module of /lib/modules/load-order, reporting failures.
# shellcheck disable=SC2034,SC2016 # used by the scripts that source this; expands in the guest
lab_init_load_modules='
if [ -s /lib/modules/load-order ]; then
  while read -r m; do
    insmod "/lib/modules/$m" || echo "init: insmod $m failed"
  done </lib/modules/load-order
fi'

# shellcheck disable=SC2034 # used by the scripts that source this
# The modules that give L1 a /dev/kvm (dependencies are added from modules.dep).
lab_l1_modules=(irqbypass kvm kvm_amd)
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
