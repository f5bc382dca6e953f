#include "vmm/machine/kernel_cmdline.hpp"

#include <gtest/gtest.h>

namespace vmm {
namespace {

DiskConfig disk(const std::string& path, bool read_only = false) {
  DiskConfig disk;
  disk.path = path;
  disk.read_only = read_only;
  return disk;
}

MachineConfig with_disks(std::vector<DiskConfig> disks) {
  MachineConfig config;
  config.kernel_path = "/k";
  config.disks = std::move(disks);
  return config;
}

TEST(KernelCmdline, DefaultsAloneWithoutDisks) {
  MachineConfig config;
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1");
}

TEST(KernelCmdline, AppendComesAfterTheDefaults) {
  MachineConfig config;
  config.append = "quiet loglevel=3";
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 quiet loglevel=3");
}

TEST(KernelCmdline, AFirstDiskIsTheRootReadWrite) {
  const MachineConfig config = with_disks({disk("/a.img"), disk("/b.img")});
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 root=/dev/vda rw");
}

TEST(KernelCmdline, AReadOnlyFirstDiskIsMountedReadOnly) {
  const MachineConfig config = with_disks({disk("/a.img", true)});
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 root=/dev/vda ro");
}

TEST(KernelCmdline, TheUsersRootWins) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.append = "root=/dev/vdb1 rootwait";
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 root=/dev/vdb1 rootwait");
}

TEST(KernelCmdline, RootAfterTheInitSeparatorIsInitsNotTheKernels) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.append = "quiet -- root=x";
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 root=/dev/vda rw quiet -- root=x");
}

TEST(KernelCmdline, RootflagsIsNotRoot) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.append = "rootflags=noatime rootfstype=ext4";
  EXPECT_EQ(compose_cmdline(config),
            "console=ttyS0 panic=-1 root=/dev/vda rw rootflags=noatime rootfstype=ext4");
}

TEST(KernelCmdline, AcpiOffListsEveryVirtioDevice) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.nets.emplace_back().tap = "tap0";
  config.vsock = VsockConfig{.guest_cid = 3, .uds_path = "/v"};
  config.append = "acpi=off";
  EXPECT_EQ(compose_cmdline(config),
            "console=ttyS0 panic=-1 root=/dev/vda rw virtio_mmio.device=4096@0xd0000000:5 "
            "virtio_mmio.device=4096@0xd0001000:6 virtio_mmio.device=4096@0xd0002000:7 acpi=off");
}

TEST(KernelCmdline, AcpiOnAddsNoDeviceList) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.append = "acpi=off acpi=on";
  EXPECT_EQ(compose_cmdline(config), "console=ttyS0 panic=-1 root=/dev/vda rw acpi=off acpi=on");
}

TEST(KernelCmdline, AGivenCmdlineIsUsedAsItIs) {
  MachineConfig config = with_disks({disk("/a.img")});
  config.cmdline = "quiet acpi=off";
  config.append = "ignored";
  EXPECT_EQ(compose_cmdline(config), "quiet acpi=off");
}

TEST(KernelCmdline, ParametersSplitLikeTheKernelDoes) {
  EXPECT_TRUE(cmdline_has("a root=\"/dev/vda x\" b", "root"));
  EXPECT_EQ(cmdline_value("init=\"/bin/sh -x\" quiet", "init"), "/bin/sh -x");
  EXPECT_EQ(cmdline_value("acpi=on acpi=off", "acpi"), "off");
  EXPECT_FALSE(cmdline_has("a -- root=/x", "root"));
  EXPECT_FALSE(cmdline_has("rootwait", "root"));
  EXPECT_TRUE(cmdline_has("  rw\tquiet", "quiet"));
  EXPECT_EQ(cmdline_value("", "root"), "");
}

}  // namespace
}  // namespace vmm
