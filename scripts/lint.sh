#!/usr/bin/env bash
# clang-format and clang-tidy over every C/C++ source the project owns. Needs a configured build
# directory for compile_commands.json (default: build). Exits non-zero on any finding.
#
# clang-tidy is the slow part (minutes on two cores), so a unit it passed is remembered in
# ${XDG_CACHE_HOME:-~/.cache}/vmm/clang-tidy under a key made of everything its verdict depends on:
# clang-tidy's version, the .clang-tidy files, the unit's compile command (paths relative to the
# checkout), the unit itself and the project's headers it includes: those the build's last compile
# of it read (Ninja's deps log), or every header the project owns where the build has no valid
# record of the unit. A change to one header then re-checks only the units that include it. Only
# passes are remembered; a unit with findings is checked again every time. VMM_LINT_CACHE=off
# turns the cache off.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${1:-build}
status=0

mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.c')
if ! clang-format --dry-run -Werror "${sources[@]}"; then
  echo "lint: clang-format would change the files above (run clang-format -i on them)"
  status=1
fi

# Includes point down the layers only (devices/ never includes the machine, and so on).
scripts/check-layers.sh || status=1

# clang-tidy reads the flags of each translation unit from the build's compilation database;
# the freestanding guests are C built by custom commands and are not in it.
[ -s "$build/compile_commands.json" ] || {
  echo "lint: $build/compile_commands.json is missing (configure the build first)"
  exit 1
}
mapfile -t units < <(git ls-files '*.cpp')
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmm/clang-tidy
to_check=("${units[@]}")
declare -A command_of key_of
if [ "${VMM_LINT_CACHE:-on}" != off ]; then
  mkdir -p "$cache"
  tool=$({
    clang-tidy --version
    git ls-files -z '.clang-tidy' '*/.clang-tidy' | xargs -0 cat
  } | sha256sum | cut -d' ' -f1)
  every_header=$(git ls-files -z '*.hpp' '*.h' | xargs -0 cat | sha256sum | cut -d' ' -f1)
  # Each unit's project headers from the deps log: a record is the object's line, then its
  # dependencies (paths as the build saw them), the source first. Only valid (not stale) records.
  declare -A headers_of
  if [ -e "$build/build.ninja" ] && deps=$(ninja -C "$build" -t deps 2>/dev/null); then
    while IFS=$'\t' read -r unit headers; do
      headers_of[$unit]=$headers
    done < <(awk -v build="$build" -v root="$root" '
      function rel(path) {  # relative to the checkout, or "" when outside it
        if (path !~ /^\//) path = build "/" path
        if (path !~ /^\//) path = root "/" path
        n = split(path, parts, "/"); depth = 0
        for (i = 1; i <= n; i++) {
          if (parts[i] == "" || parts[i] == ".") continue
          if (parts[i] == "..") { if (depth > 0) depth--; continue }
          stack[++depth] = parts[i]
        }
        out = ""; for (i = 1; i <= depth; i++) out = out "/" stack[i]
        return index(out, root "/") == 1 ? substr(out, length(root) + 2) : ""
      }
      /^[^ ]/ { if (unit != "") print unit "\t" list; valid = ($0 ~ /\(VALID\)$/); unit = ""; list = ""; next }
      valid && /^    / {
        path = rel(substr($0, 5))
        if (path == "") next
        if (unit == "") unit = path
        else if (path ~ /\.(h|hpp)$/) list = list " " path
      }
      END { if (unit != "") print unit "\t" list }' <<<"$deps")
  fi
  # Each unit's compile command, keyed by its path relative to the checkout.
  while IFS=$'\t' read -r file command; do
    command_of[${file#"$root"/}]=${command//$root/}
  done < <(sed -n -e 's/^  "command": "\(.*\)",$/\1/p' -e 's/^  "file": "\(.*\)",\{0,1\}$/\1/p' \
    "$build/compile_commands.json" | paste - - | awk -F'\t' '{ print $2 "\t" $1 }')
  to_check=()
  for unit in "${units[@]}"; do
    if [ -n "${headers_of[$unit]+set}" ]; then
      # shellcheck disable=SC2086 # the list is space-separated paths the project owns
      headers=$({ echo "${headers_of[$unit]}"; cat /dev/null ${headers_of[$unit]} 2>/dev/null; } |
        sha256sum | cut -d' ' -f1)
    else
      headers=$every_header
    fi
    key_of[$unit]=$({ echo "$tool" "$headers" "${command_of[$unit]:-}"; cat "$unit"; } |
      sha256sum | cut -d' ' -f1)
    [ -e "$cache/${key_of[$unit]}" ] || to_check+=("$unit")
  done
  echo "lint: clang-tidy: $((${#units[@]} - ${#to_check[@]})) of ${#units[@]} units unchanged since they last passed"
fi
# One unit per call, so a pass can be remembered per unit; a unit's findings print together.
check_unit() {
  local out
  if out=$(clang-tidy -p "$build" --quiet "$1" 2>/dev/null); then
    echo "ok $1"
  else
    printf '%s\n' "$out" >&2
    echo "fail $1"
  fi
}
export -f check_unit
export build
tidy_failed=0
if [ ${#to_check[@]} -gt 0 ]; then
  while read -r verdict unit; do
    if [ "$verdict" = ok ]; then
      [ -n "${key_of[$unit]:-}" ] && : >"$cache/${key_of[$unit]}"
    else
      tidy_failed=$((tidy_failed + 1))
    fi
  done < <(printf '%s\0' "${to_check[@]}" | xargs -0 -P "$(nproc)" -n 1 bash -c 'check_unit "$1"' _)
fi
if [ "$tidy_failed" -gt 0 ]; then
  echo "lint: clang-tidy found problems in $tidy_failed units (above)"
  status=1
fi
[ "$status" -eq 0 ] && echo "lint: clean (${#sources[@]} files formatted, ${#units[@]} units checked)"
exit "$status"
