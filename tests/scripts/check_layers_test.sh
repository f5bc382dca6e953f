#!/usr/bin/env bash
# scripts/check-layers.sh on sample trees: one whose includes all point down passes, and each kind
# of upward or sideways include fails, naming the file and the rule.
set -u
check=$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-layers.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
tree() {  # tree NAME FILE INCLUDE...: a sample tree whose FILE includes each INCLUDE
  local dir=$work/$1 file=$2
  shift 2
  mkdir -p "$dir/base/util" "$dir/$(dirname "$file")"
  echo '#pragma once' >"$dir/base/util/error.hpp"
  for include in "$@"; do echo "#include \"$include\""; done >"$dir/$file"
  echo "$dir"
}
expect() {  # expect pass|fail NAME OUTPUT-PATTERN ROOT
  local out status
  out=$("$check" "$4" 2>&1)
  status=$?
  if { [ "$1" = pass ] && [ $status = 0 ]; } || { [ "$1" = fail ] && [ $status != 0 ]; }; then
    if grep -q -- "$3" <<<"$out"; then echo "ok: $2"; return; fi
  fi
  echo "FAIL: $2 (status $status): $out"
  fails=$((fails + 1))
}
expect pass "downward includes pass" "points down" \
  "$(tree down devices/virtio/block.cpp base/util/error.hpp devices/bus.hpp)"
expect fail "devices/ including the machine fails" "devices/virtio/net.cpp:1: devices/ may not include vmm/" \
  "$(tree dev-up devices/virtio/net.cpp vmm/machine/machine.hpp)"
expect fail "boot/ including devices/ fails" "boot/ may not include devices/" \
  "$(tree boot-side boot/elf.cpp devices/bus.hpp)"
expect fail "devices/ including boot/ fails" "devices/ may not include boot/" \
  "$(tree dev-side devices/bus.cpp boot/elf.hpp)"
expect fail "firmware/ including devices/ fails" "firmware/ may not include devices/" \
  "$(tree fw-side firmware/acpi/tables.cpp devices/bus.hpp)"
expect fail "the floor including anything above it fails" "base/ may not include devices/" \
  "$(tree floor-up base/event/event_loop.cpp devices/bus.hpp)"
[ "$fails" = 0 ]
