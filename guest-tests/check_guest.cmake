# Rejects a test guest the host can't run or vmm's loader shouldn't accept:
#   cmake -DELF=x.elf -DIMAGE=x.bzImage -DOBJDUMP=objdump -P check_guest.cmake
# 1. No instruction the emulating /dev/kvm can't execute (SSE/AVX registers, cmpxchg16b, xsave
#    family, x87 state saves).
# 2. The setup header fields of the bzImage contract (guest-tests/README.md).

function(reject reason)
  file(REMOVE ${IMAGE})
  message(FATAL_ERROR "${IMAGE}: ${reason}")
endfunction()

execute_process(COMMAND ${OBJDUMP} -d --no-show-raw-insn ${ELF}
                OUTPUT_VARIABLE disassembly RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  reject("objdump failed")
endif()
string(REGEX MATCHALL "[^\n]*(%[xyz]mm[0-9]|%mm[0-7]|cmpxchg16b|xsave|xrstor|fxsave|fxrstor|ldmxcsr|stmxcsr)[^\n]*"
       forbidden "${disassembly}")
if(forbidden)
  list(JOIN forbidden "\n" lines)
  reject("instructions the emulator can't run:\n${lines}")
endif()

file(SIZE ${IMAGE} image_size)
if(image_size LESS 1024)
  reject("only ${image_size} bytes")
endif()

# Reads `size` bytes at `offset` as a little-endian unsigned number into `out`.
function(read_le out offset size)
  math(EXPR offset "${offset}")  # file(READ OFFSET) takes decimal only
  file(READ ${IMAGE} hex OFFSET ${offset} LIMIT ${size} HEX)
  set(value 0)
  math(EXPR last "${size} - 1")
  foreach(i RANGE ${last} 0 -1)
    math(EXPR pos "${i} * 2")
    string(SUBSTRING ${hex} ${pos} 2 byte)
    math(EXPR value "(${value} << 8) + 0x${byte}")
  endforeach()
  set(${out} ${value} PARENT_SCOPE)
endfunction()

function(expect name offset size expected)
  read_le(value ${offset} ${size})
  if(NOT value EQUAL ${expected})
    reject("setup header ${name} is ${value}, expected ${expected}")
  endif()
endfunction()

expect(setup_sects 0x1f1 1 1)
expect(boot_flag 0x1fe 2 0xaa55)
expect(header 0x202 4 0x53726448)
expect(version 0x206 2 0x020f)
expect(loadflags 0x211 1 1)
expect(kernel_alignment 0x230 4 0x200000)
expect(relocatable_kernel 0x234 1 0)
expect(xloadflags 0x236 2 1)
expect(cmdline_size 0x238 4 2048)
expect(initrd_addr_max 0x22c 4 0x37ffffff)
expect(pref_address 0x258 8 0x100000)

math(EXPR payload_size "${image_size} - 0x400")
math(EXPR paragraphs "${payload_size} / 16")
math(EXPR remainder "${payload_size} % 16")
if(NOT remainder EQUAL 0)
  reject("payload size ${payload_size} is not a whole number of 16-byte paragraphs")
endif()
expect(syssize 0x1f4 4 ${paragraphs})
read_le(init_size 0x260 4)
if(init_size LESS payload_size)
  reject("init_size ${init_size} is smaller than the payload (${payload_size} bytes)")
endif()
# vmm enters at payload + 0x200: the ELF's entry must be 0x100200 (readelf-free: objdump -f).
execute_process(COMMAND ${OBJDUMP} -f ${ELF} OUTPUT_VARIABLE header_info)
if(NOT header_info MATCHES "start address 0x0*100200")
  reject("entry point is not 0x100200:\n${header_info}")
endif()
