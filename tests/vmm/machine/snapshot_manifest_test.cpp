#include "vmm/machine/snapshot_manifest.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/util/error.hpp"

namespace vmm {
namespace {

using ::testing::HasSubstr;

SnapshotManifest sample() {
  SnapshotManifest manifest;
  manifest.vmm_version = "0.1.0";
  manifest.cpu = {"AuthenticAMD", 0x17, 0x31};
  kvm_cpuid_entry2 leaf{};
  leaf.function = 0x80000001;
  leaf.eax = 0xffffffff;
  manifest.cpuid = {leaf};
  manifest.machine.cpus = 2;
  manifest.machine.memory_bytes = uint64_t{256} << 20;
  manifest.machine.kernel_path = "/boot/vmlinuz";
  manifest.machine.cmdline = "console=ttyS0 root=/dev/vda rw";
  DiskConfig disk;
  disk.path = "/img/root.img";
  disk.serial = "root";
  disk.snapshot = DiskConfig::Snapshot::kFile;
  disk.io_engine = DiskConfig::IoEngine::kThreadPool;
  manifest.machine.disks = {disk};
  manifest.disk_sizes = {uint64_t{1} << 30};
  manifest.machine.nets = {NetConfig{"tap0", std::array<uint8_t, 6>{2, 0, 0, 0, 0, 1}},
                           NetConfig{"tap1", std::nullopt}};
  manifest.machine.vsock = VsockConfig{7, "/run/v.sock"};
  manifest.memory_file_bytes = manifest.machine.memory_bytes;
  manifest.state_file_bytes = 12345;
  manifest.state_checksum = 0x0123456789abcdefull;
  manifest.created_unix_ns = 1'700'000'000'000'000'000;
  return manifest;
}

std::string error_of(const std::string& json) {
  try {
    parse_manifest(json, "snap/manifest.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// The sample's JSON with one field changed: `path` is a JSON pointer.
std::string with(const std::string& path, const nlohmann::json& value) {
  auto document = nlohmann::json::parse(manifest_to_json(sample()));
  document[nlohmann::json::json_pointer(path)] = value;
  return document.dump();
}

std::string without(const std::string& path) {
  auto document = nlohmann::json::parse(manifest_to_json(sample()));
  const nlohmann::json::json_pointer pointer(path);
  document[pointer.parent_pointer()].erase(pointer.back());
  return document.dump();
}

TEST(SnapshotManifest, RoundTripsEveryField) {
  const SnapshotManifest back = parse_manifest(manifest_to_json(sample()), "m");
  const SnapshotManifest want = sample();
  EXPECT_EQ(back.vmm_version, want.vmm_version);
  EXPECT_EQ(back.cpu, want.cpu);
  ASSERT_EQ(back.cpuid.size(), 1u);
  EXPECT_EQ(back.cpuid[0].function, 0x80000001u);
  EXPECT_EQ(back.cpuid[0].eax, 0xffffffffu);
  EXPECT_EQ(back.machine.cpus, 2u);
  EXPECT_EQ(back.machine.memory_bytes, want.machine.memory_bytes);
  EXPECT_EQ(back.machine.kernel_path, "/boot/vmlinuz");
  EXPECT_EQ(back.machine.cmdline, want.machine.cmdline);
  ASSERT_EQ(back.machine.disks.size(), 1u);
  EXPECT_EQ(back.machine.disks[0].path, "/img/root.img");
  EXPECT_EQ(back.machine.disks[0].serial, "root");
  EXPECT_EQ(back.machine.disks[0].snapshot, DiskConfig::Snapshot::kFile);
  EXPECT_EQ(back.machine.disks[0].io_engine, DiskConfig::IoEngine::kThreadPool);
  EXPECT_EQ(back.disk_sizes, want.disk_sizes);
  ASSERT_EQ(back.machine.nets.size(), 2u);
  EXPECT_EQ(back.machine.nets[0].mac, want.machine.nets[0].mac);
  EXPECT_FALSE(back.machine.nets[1].mac);
  ASSERT_TRUE(back.machine.vsock);
  EXPECT_EQ(back.machine.vsock->guest_cid, 7u);
  EXPECT_EQ(back.machine.vsock->uds_path, "/run/v.sock");
  EXPECT_EQ(back.memory_file_bytes, want.memory_file_bytes);
  EXPECT_EQ(back.state_file_bytes, 12345u);
  EXPECT_EQ(back.state_checksum, want.state_checksum);
  EXPECT_EQ(back.created_unix_ns, want.created_unix_ns);
}

TEST(SnapshotManifest, RefusesCorruptManifestsNamingTheField) {
  EXPECT_EQ(error_of("{\"format\":"), "snap/manifest.json: not JSON (a corrupt manifest)");
  EXPECT_EQ(error_of("[]"), "snap/manifest.json: the manifest is not an object");
  EXPECT_EQ(error_of(with("/format", 2)),
            "snap/manifest.json: snapshot format 2 (this vmm restores format 1)");
  EXPECT_EQ(error_of(without("/machine/cpus")), "snap/manifest.json: machine.cpus is missing");
  EXPECT_EQ(error_of(with("/machine/cpus", 0)), "snap/manifest.json: machine.cpus is out of range");
  EXPECT_EQ(error_of(with("/machine/cpus", -1)),
            "snap/manifest.json: machine.cpus is out of range");
  EXPECT_EQ(error_of(with("/machine/cpus", "2")),
            "snap/manifest.json: machine.cpus is not an integer");
  EXPECT_EQ(error_of(with("/machine/disks/0/snapshot", "maybe")),
            "snap/manifest.json: machine.disks[0].snapshot is not off, on or mem");
  EXPECT_EQ(error_of(with("/machine/nets/0/mac", "02:00")),
            "snap/manifest.json: machine.nets[0].mac is not a MAC address");
  EXPECT_EQ(error_of(with("/cpuid/0/eax", uint64_t{1} << 32)),
            "snap/manifest.json: cpuid[0].eax is out of range");
  EXPECT_EQ(error_of(with("/memory/bytes", 4096)),
            "snap/manifest.json: memory.bytes differs from machine.memory_bytes");
  // 16 characters, but not 16 hex digits (strtoull would take them).
  for (const char* checksum :
       {"xyz", "-000000000000001", "+000000000000001", " 00000000000000a", "0x0000000000000a"}) {
    EXPECT_EQ(error_of(with("/state/fnv1a64", checksum)),
              "snap/manifest.json: state.fnv1a64 is not 16 hex digits")
        << checksum;
  }
  EXPECT_EQ(error_of(with("/state/file", "../../etc/passwd")),
            "snap/manifest.json: state.file is not \"state\"");
  EXPECT_EQ(error_of(with("/cpuid", nlohmann::json::array())), "no error");
  nlohmann::json many = nlohmann::json::array();
  for (int i = 0; i < 19; ++i)
    many.push_back(nlohmann::json::parse(manifest_to_json(sample()))["machine"]["disks"][0]);
  EXPECT_EQ(error_of(with("/machine/disks", many)),
            "snap/manifest.json: machine.disks has too many entries");
}

TEST(SnapshotManifest, RestoresOnlyIntoTheSameVmmAndCpu) {
  const SnapshotManifest manifest = sample();
  const kvm::CpuIdentity same{"AuthenticAMD", 0x17, 0x31};
  EXPECT_NO_THROW(check_restorable(manifest, "0.1.0", same, "snap"));
  try {
    check_restorable(manifest, "0.2.0", same, "snap");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("snap: the snapshot was made by vmm 0.1.0; this is vmm 0.2.0"));
  }
  try {
    check_restorable(manifest, "0.1.0", {"GenuineIntel", 6, 0x9e}, "snap");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "snap: the snapshot was made on an AuthenticAMD CPU; this host's is GenuineIntel");
  }
  try {
    check_restorable(manifest, "0.1.0", {"AuthenticAMD", 0x19, 0x1}, "snap");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "snap: the snapshot was made on CPU family 0x17 model 0x31; this host's is family "
                 "0x19 model 0x1");
  }
}

}  // namespace
}  // namespace vmm
