# The nested lab (guest-tests/linux/run-lab.sh): this host's /dev/kvm can't run a stock Linux kernel,
# so vmm boots Debian's kernels inside a QEMU L1 (TCG, -cpu EPYC) that has kvm-amd. Minutes long:
# label "lab" (`ctest -L lab` runs it alone, `ctest -LE lab` leaves it out). No skip: without
# qemu-system-x86_64 (scripts/install-deps.sh installs it) the test fails. The first run downloads
# Debian's kernel packages with apt-get (cached in the build folder).
add_test(NAME lab_linux
         COMMAND ${VMM_SOURCE_ROOT}/guest-tests/linux/run-lab.sh
                 --vmm $<TARGET_FILE:vmm> --out ${CMAKE_BINARY_DIR}/lab)
set_tests_properties(lab_linux PROPERTIES
  TIMEOUT 1800
  LABELS lab
  # L1 is a two-vCPU TCG guest: it takes the whole machine.
  RUN_SERIAL TRUE)
