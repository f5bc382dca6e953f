#pragma once

#include <cstddef>
#include <cstdint>

// The x86 Linux boot protocol structures (Documentation/arch/x86/boot.rst,
// arch/x86/include/uapi/asm/bootparam.h). Only the fields vmm uses are named; the rest is padding
// at the offsets the kernel expects.
namespace vmm::boot {

inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS" little-endian
inline constexpr size_t kSetupHeaderOffset = 0x1f1;
inline constexpr size_t kSectorSize = 512;
// Protocol 2.12 introduced xloadflags, which is how a kernel says it has a 64-bit entry point.
inline constexpr uint16_t kMinBootProtocol = 0x020c;
// The 64-bit entry point sits this far into the protected-mode kernel (startup_64).
inline constexpr uint64_t kEntry64Offset = 0x200;

// loadflags
inline constexpr uint8_t kLoadedHigh = 1 << 0;
inline constexpr uint8_t kCanUseHeap = 1 << 7;
// xloadflags
inline constexpr uint16_t kXlfKernel64 = 1 << 0;

// e820 types
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
// The loader id for "a boot loader without an assigned id".
inline constexpr uint8_t kUndefinedLoader = 0xff;

#pragma pack(push, 1)

struct SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;
  uint16_t jump;
  uint32_t header;
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;
  uint32_t kernel_alignment;
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;
  uint32_t cmdline_size;
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};

struct BootE820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

inline constexpr size_t kE820MaxEntriesZeroPage = 128;

// The "zero page" handed to the kernel in rsi.
struct BootParams {
  uint8_t screen_info[0x40];
  uint8_t apm_bios_info[0x14];
  uint8_t pad2[4];
  uint64_t tboot_addr;
  uint8_t ist_info[0x10];
  uint64_t acpi_rsdp_addr;
  uint8_t pad3[8];
  uint8_t hd0_info[0x10];
  uint8_t hd1_info[0x10];
  uint8_t sys_desc_table[0x10];
  uint8_t olpc_ofw_header[0x10];
  uint32_t ext_ramdisk_image;
  uint32_t ext_ramdisk_size;
  uint32_t ext_cmd_line_ptr;
  uint8_t pad4[0x1e8 - 0xcc];  // cc_blob_address, edid_info, efi_info, alt_mem_k, scratch
  uint8_t e820_entries;
  uint8_t eddbuf_entries;
  uint8_t edd_mbr_sig_buf_entries;
  uint8_t kbd_status;
  uint8_t secure_boot;
  uint8_t pad5[2];
  // The kernel zeroes fields it cannot trust when this is nonzero; we start from zeroes.
  uint8_t sentinel;
  uint8_t pad6[1];
  SetupHeader hdr;
  uint8_t pad7[0x2d0 - 0x1f1 - sizeof(SetupHeader)];  // edd_mbr_sig_buffer
  BootE820Entry e820_table[kE820MaxEntriesZeroPage];
  uint8_t pad8[0x1000 - 0xcd0];  // eddbuf and the tail
};

#pragma pack(pop)

static_assert(sizeof(SetupHeader) == 0x7b);
static_assert(offsetof(SetupHeader, boot_flag) == 0x1fe - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, header) == 0x202 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, version) == 0x206 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, loadflags) == 0x211 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, ramdisk_image) == 0x218 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, ramdisk_size) == 0x21c - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, heap_end_ptr) == 0x224 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, initrd_addr_max) == 0x22c - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, kernel_alignment) == 0x230 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, relocatable_kernel) == 0x234 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmdline_size) == 0x238 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, init_size) == 0x260 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, kernel_info_offset) == 0x268 - kSetupHeaderOffset);

static_assert(sizeof(BootE820Entry) == 20);
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_ramdisk_size) == 0x0c4);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == 0x1f1);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);

}  // namespace vmm::boot
