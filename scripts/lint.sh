#!/usr/bin/env bash
# clang-format and clang-tidy over every C/C++ source the project owns. Needs a configured build
# directory for compile_commands.json (default: build). Exits non-zero on any finding.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
status=0

mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.c')
if ! clang-format --dry-run -Werror "${sources[@]}"; then
  echo "lint: clang-format would change the files above (run clang-format -i on them)"
  status=1
fi

# clang-tidy reads the flags of each translation unit from the build's compilation database;
# the freestanding guests are C built by custom commands and are not in it.
mapfile -t units < <(git ls-files '*.cpp')
if ! printf '%s\n' "${units[@]}" |
    xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet 2>/dev/null; then
  echo "lint: clang-tidy found problems (above)"
  status=1
fi
[ "$status" -eq 0 ] && echo "lint: clean (${#sources[@]} files formatted, ${#units[@]} units checked)"
exit "$status"
