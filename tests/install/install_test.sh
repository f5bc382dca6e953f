#!/usr/bin/env bash
# Installs a built vmm into a temporary prefix and uses it as a library user would:
#   - the prefix holds exactly the documented files, and only public headers, each compiling alone;
#   - libvmm.so has its SONAME and exports only the public API;
#   - examples/ (a separate CMake project) builds against it with find_package(vmm), and
#     examples/boot.c also with `cc $(pkg-config --cflags --libs vmm)`;
#   - every example, and the installed vmm command, boots the hello test guest (boot_examples.sh;
#     skipped, exit 77, when /dev/kvm can't be opened: everything before that has still been
#     checked; with VMM_KVM_TESTS_IN_LAB=1 the boot is staged for the nested lab instead).
# Usage: install_test.sh BUILD_DIR SOURCE_DIR LIBDIR HELLO_IMAGE VERSION [EXTRA_FLAGS]
# EXTRA_FLAGS (e.g. -fsanitize=address,undefined) go to every compile and link of the examples;
# CC and CXX (default cc, c++) are the compilers, as for CMake.
set -euo pipefail
cc=${CC:-cc}
cxx=${CXX:-c++}
build=$1 source=$2 libdir=$3 hello=$4 version=$5 extra_flags=${6:-}
# A fixed folder in the build, so the nested lab can find what it boots (see the end).
work=$build/install-test
rm -rf "$work"
mkdir -p "$work"
keep_work=0
trap '[ "$keep_work" = 1 ] || rm -rf "$work"' EXIT
prefix=$work/prefix

step() { echo "== $*"; }
fail() {
  echo "install_test: FAILED: $*" >&2
  exit 1
}

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || {
  cat "$work/install.log"
  fail "cmake --install"
}
expected=(
  bin/vmm
  include/vmm/machine.hpp include/vmm/machine_config.hpp include/vmm/vmm.h
  "$libdir/libvmm.a" "$libdir/libvmm.so" "$libdir/libvmm.so.0" "$libdir/libvmm.so.$version"
  "$libdir/cmake/vmm/vmmConfig.cmake" "$libdir/cmake/vmm/vmmConfigVersion.cmake"
  "$libdir/cmake/vmm/vmmTargets.cmake" "$libdir/pkgconfig/vmm.pc"
)
for file in "${expected[@]}"; do
  [ -e "$prefix/$file" ] || fail "$file is not installed"
done
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./vmm/machine.hpp ./vmm/machine_config.hpp ./vmm/vmm.h " ] ||
  fail "installed headers are not exactly the public ones: $headers"

step "each public header compiles on its own against the prefix alone"
for header in machine.hpp machine_config.hpp vmm.h; do
  echo "#include <vmm/$header>" | "$cxx" -std=c++20 -Wall -Wextra -Werror -fsyntax-only \
    -I"$prefix/include" -x c++ - || fail "vmm/$header does not compile alone as C++20"
done
echo "#include <vmm/vmm.h>" | "$cc" -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only \
  -I"$prefix/include" -x c - || fail "vmm/vmm.h does not compile alone as C99"

step "libvmm.so: SONAME and exported symbols"
so=$prefix/$libdir/libvmm.so
# (Captured first: grep -q closing the pipe early would fail the pipeline under pipefail.)
headers_of_so=$(objdump -p "$so")
grep -q 'SONAME *libvmm\.so\.0$' <<<"$headers_of_so" || fail "libvmm.so has no SONAME libvmm.so.0"
exported=$(nm -D --defined-only "$so")
grep -q ' T vmm_machine_create$' <<<"$exported" || fail "vmm_machine_create is not exported"
internal=$(nm -DC --defined-only "$so" |
  grep -v -E ' (vmm_[a-z_]+|vmm::Machine::.*|vmm::MachineExit::.*)$' |
  grep -v -E ' vmm::(validate|restore)_config\(.*$' |
  grep -v -E ' (_init|_fini|__bss_start|_edata|_end)$' || true)
[ -z "$internal" ] || fail "libvmm.so exports internals:"$'\n'"$internal"

step "examples/ with find_package(vmm)"
cmake -S "$source/examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$extra_flags" \
  -DCMAKE_CXX_FLAGS="$extra_flags" -DCMAKE_EXE_LINKER_FLAGS="$extra_flags" \
  >"$work/configure.log" || {
  cat "$work/configure.log"
  fail "configuring examples/"
}
cmake --build "$work/examples" -j2 >"$work/build.log" 2>&1 || {
  cat "$work/build.log"
  fail "building examples/"
}
libs=$(ldd "$work/examples/boot_c")
grep -q "$prefix/$libdir/libvmm.so.0" <<<"$libs" ||
  fail "boot_c does not load the installed libvmm.so:"$'\n'"$libs"
libs=$(ldd "$work/examples/boot_c_static")
if grep -q libvmm <<<"$libs"; then fail "boot_c_static loads libvmm.so"; fi

step "examples/boot.c with pkg-config"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion vmm)" = "$version" ] || fail "pkg-config --modversion vmm"
# shellcheck disable=SC2046,SC2086  # pkg-config's output is meant to be split into arguments
"$cc" -std=c99 -Wall -Wextra -Werror $extra_flags -o "$work/boot_c_pc" "$source/examples/boot.c" \
  $(pkg-config --cflags --libs vmm) || fail "cc \$(pkg-config --cflags --libs vmm)"

# The boot step: staged for the nested lab when scripts/test.sh runs the "kvm" tests there
# (VMM_KVM_TESTS_IN_LAB=1: this host's /dev/kvm can't run the test guests; the work folder stays,
# and its run.sh boots the examples inside L1, see tests/CMakeLists.txt), else run here.
boot=(sh "$source/tests/install/boot_examples.sh" "$work" "$prefix" "$libdir" "$hello")
if [ "${VMM_KVM_TESTS_IN_LAB:-0}" = 1 ] && [ -n "$extra_flags" ]; then
  echo "install_test: skipped booting the examples: this host can't, and the nested lab boots only the normal build's (this one's, with $extra_flags, are too large for L1)"
  exit 77
elif [ "${VMM_KVM_TESTS_IN_LAB:-0}" = 1 ]; then
  cp "$source/tests/install/boot_examples.sh" "$work/boot_examples.sh"
  boot[1]=$work/boot_examples.sh
  printf '%q ' exec "${boot[@]}" >"$work/run.sh"
  # What the boot needs stays (the programs, libvmm.so, the vmm command): L1 holds it in memory.
  rm -rf "$work/examples/CMakeFiles" "$prefix/include" "$prefix/$libdir"/*.a "$prefix/$libdir/cmake" \
    "$prefix/$libdir/pkgconfig"
  keep_work=1
  echo "install_test: all passed here; booting the examples is left to the nested lab ($work/run.sh)"
# [ -c ] first: as root, the redirection would create a regular file where /dev/kvm is missing.
elif [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then
  step "booting the hello guest"
  "${boot[@]}" || fail "booting the examples"
  echo "install_test: all passed"
else
  echo "install_test: skipped booting the examples: /dev/kvm can't be opened"
  exit 77
fi
