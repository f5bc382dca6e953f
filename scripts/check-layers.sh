#!/usr/bin/env bash
# Fails on an #include that points up or sideways in the layers (docs/ARCHITECTURE.md):
#   base/      the floor: includes base/ only
#   devices/   devices/ and base/  (never the machine, boot/ or firmware/)
#   boot/      boot/ and base/     (never devices/)
#   firmware/  firmware/ and base/ (builds tables from plain descriptions, not device objects)
# vmm/ (the machine, the CLI, the library) sits on top and may include all of them.
# Usage: check-layers.sh [ROOT]   (default: this checkout; the test points it at a sample tree)
set -uo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
declare -A allowed=(
  [base]="base"
  [devices]="devices base"
  [boot]="boot base"
  [firmware]="firmware base"
)
status=0
for layer in "${!allowed[@]}"; do
  [ -d "$layer" ] || continue
  # file:line:#include "top/..." for every quoted include whose path has a folder.
  while IFS=: read -r file line text; do
    target=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^/"]*\)\/.*/\1/p' <<<"$text")
    [ -n "$target" ] || continue
    case " ${allowed[$layer]} " in
      *" $target "*) ;;
      *)
        echo "$file:$line: $layer/ may not include $target/ (allowed: ${allowed[$layer]// /, }): $text"
        status=1
        ;;
    esac
  done < <(grep -rn --include='*.cpp' --include='*.hpp' --include='*.h' --include='*.c' \
    '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*/' "$layer")
done
[ "$status" = 0 ] && echo "layers: every include in base/, devices/, boot/ and firmware/ points down"
exit "$status"
