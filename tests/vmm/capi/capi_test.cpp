// The C API (vmm/vmm.h) through libvmm.so: error paths without KVM, then the test guests (hello,
// and compute for snapshots) on this host's /dev/kvm (skipped when it can't be opened).
#include "vmm/vmm.h"

#include <cpuid.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boot/setup_header.hpp"
#include "tests/boot/test_images.hpp"

namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct ConfigDeleter {
  void operator()(vmm_config* config) const { vmm_config_free(config); }
};
struct MachineDeleter {
  void operator()(vmm_machine* machine) const { vmm_machine_destroy(machine); }
};
using ConfigPtr = std::unique_ptr<vmm_config, ConfigDeleter>;
using MachinePtr = std::unique_ptr<vmm_machine, MachineDeleter>;

ConfigPtr new_config() {
  ConfigPtr config(vmm_config_new());
  EXPECT_NE(config, nullptr);
  return config;
}

std::string guest_image(const std::string& name) {
  return std::string(VMM_TEST_GUEST_DIR) + "/" + name + ".bzImage";
}

std::string hello_image() {
  return guest_image("hello");
}

// A new directory under the test's temporary folder, removed with its content when this goes.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string pattern = ::testing::TempDir() + "/vmm-capi-snapshot-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    EXPECT_FALSE(path_.empty()) << "mkdtemp " << pattern << ": " << std::strerror(errno);
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string kvm_unavailable_reason() {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("/dev/kvm: ") + std::strerror(errno);
  ::close(fd);
  return "";
}

TEST(CApi, VersionIsTheProjectVersion) {
  EXPECT_STREQ(vmm_version(), VMM_EXPECTED_VERSION);
}

TEST(CApi, CreateRefusesNullArguments) {
  vmm_machine* machine = reinterpret_cast<vmm_machine*>(0x1);
  EXPECT_EQ(vmm_machine_create(nullptr, &machine), VMM_EINVAL);
  EXPECT_EQ(machine, nullptr);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_create: config is NULL");
  ConfigPtr config = new_config();
  EXPECT_EQ(vmm_machine_create(config.get(), nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_create: out is NULL");
}

TEST(CApi, CreateWithoutAKernelNamesIt) {
  ConfigPtr config = new_config();
  vmm_machine* machine = nullptr;
  EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_EINVAL);
  EXPECT_EQ(machine, nullptr);
  EXPECT_STREQ(vmm_last_error(), "--kernel is required");
}

// One setter call that must fail with VMM_EINVAL and a message naming the field.
struct BadField {
  const char* name;
  vmm_status (*set)(vmm_config*);
  const char* message;  // a part of the expected message
};

void PrintTo(const BadField& field, std::ostream* os) {
  *os << field.name;
}

class CApiBadField : public ::testing::TestWithParam<BadField> {};

TEST_P(CApiBadField, IsRefusedWithAMessageNamingIt) {
  ConfigPtr config = new_config();
  EXPECT_EQ(GetParam().set(config.get()), VMM_EINVAL);
  EXPECT_THAT(vmm_last_error(), HasSubstr(GetParam().message));
}

vmm_status add_disks(vmm_config* config, int count) {
  vmm_status status = VMM_OK;
  for (int i = 0; i < count && status == VMM_OK; ++i) {
    status = vmm_config_add_disk(config, "/tmp/disk.img", false, nullptr);
  }
  return status;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, CApiBadField,
    ::testing::Values(
        BadField{"kernel_null", [](vmm_config* c) { return vmm_config_set_kernel(c, nullptr); },
                 "vmm_config_set_kernel: path is NULL"},
        BadField{"kernel_empty", [](vmm_config* c) { return vmm_config_set_kernel(c, ""); },
                 "--kernel: the path is empty"},
        BadField{"cmdline_null", [](vmm_config* c) { return vmm_config_set_cmdline(c, nullptr); },
                 "vmm_config_set_cmdline: cmdline is NULL"},
        BadField{"cpus_zero", [](vmm_config* c) { return vmm_config_set_cpus(c, 0); },
                 "--cpus 0: must be between 1 and 254"},
        BadField{"cpus_too_many", [](vmm_config* c) { return vmm_config_set_cpus(c, 255); },
                 "--cpus 255"},
        BadField{"memory_too_little",
                 [](vmm_config* c) { return vmm_config_set_memory_bytes(c, 1 << 20); },
                 "--memory 1 MiB: too little memory"},
        BadField{"memory_too_much",
                 [](vmm_config* c) { return vmm_config_set_memory_bytes(c, uint64_t{2} << 40); },
                 "--memory 2048 GiB: too much memory"},
        BadField{"memory_unaligned",
                 [](vmm_config* c) { return vmm_config_set_memory_bytes(c, (64 << 20) + 1); },
                 "must be a multiple of 4 KiB"},
        BadField{"kvm_device_null",
                 [](vmm_config* c) { return vmm_config_set_kvm_device(c, nullptr); },
                 "vmm_config_set_kvm_device: path is NULL"},
        BadField{"disk_null",
                 [](vmm_config* c) { return vmm_config_add_disk(c, nullptr, false, nullptr); },
                 "vmm_config_add_disk: path is NULL"},
        BadField{"disk_empty",
                 [](vmm_config* c) { return vmm_config_add_disk(c, "", false, nullptr); },
                 "--disk: needs a path"},
        BadField{"disk_serial",
                 [](vmm_config* c) {
                   return vmm_config_add_disk(c, "/x.img", true, "an-id-longer-than-20-bytes");
                 },
                 "--disk /x.img: serial=an-id-longer-than-20-bytes is longer than 20 bytes"},
        BadField{"disk_snapshot_null",
                 [](vmm_config* c) {
                   return vmm_config_add_disk_snapshot(c, nullptr, nullptr, VMM_DISK_SNAPSHOT_FILE);
                 },
                 "vmm_config_add_disk_snapshot: path is NULL"},
        BadField{"disk_snapshot_kind",
                 [](vmm_config* c) {
                   return vmm_config_add_disk_snapshot(c, "/x.img", nullptr,
                                                       static_cast<vmm_disk_snapshot>(7));
                 },
                 "vmm_config_add_disk_snapshot: snapshot 7 is neither VMM_DISK_SNAPSHOT_FILE nor "
                 "VMM_DISK_SNAPSHOT_MEMORY"},
        BadField{"too_many_devices", [](vmm_config* c) { return add_disks(c, 19); },
                 "--disk/--net/--vsock/--share/--vhost-user/--console: 19 devices"},
        BadField{"net_null", [](vmm_config* c) { return vmm_config_add_net(c, nullptr, nullptr); },
                 "vmm_config_add_net: tap is NULL"},
        BadField{"net_empty", [](vmm_config* c) { return vmm_config_add_net(c, "", nullptr); },
                 "--net: needs tap=NAME"},
        BadField{"net_bad_mac", [](vmm_config* c) { return vmm_config_add_net(c, "tap0", "zz"); },
                 "--net tap=tap0: mac=zz is not a MAC address"},
        BadField{"net_multicast_mac",
                 [](vmm_config* c) { return vmm_config_add_net(c, "tap0", "01:00:5e:00:00:01"); },
                 "--net tap=tap0: mac=01:00:5e:00:00:01 is a multicast address"},
        BadField{"net_tap_twice",
                 [](vmm_config* c) {
                   vmm_config_add_net(c, "tap0", nullptr);
                   return vmm_config_add_net(c, "tap0", nullptr);
                 },
                 "--net tap=tap0: given twice"},
        BadField{"vsock_reserved_cid",
                 [](vmm_config* c) { return vmm_config_set_vsock(c, 2, "/tmp/v.sock"); },
                 "--vsock cid=2: reserved"},
        BadField{"vsock_any_cid",
                 [](vmm_config* c) { return vmm_config_set_vsock(c, UINT32_MAX, "/tmp/v.sock"); },
                 "--vsock cid=4294967295: reserved"},
        BadField{"vsock_null_path",
                 [](vmm_config* c) { return vmm_config_set_vsock(c, 3, nullptr); },
                 "vmm_config_set_vsock: uds_path is NULL"},
        BadField{"vsock_empty_path", [](vmm_config* c) { return vmm_config_set_vsock(c, 3, ""); },
                 "--vsock: needs a socket path"},
        BadField{"console_file_null",
                 [](vmm_config* c) { return vmm_config_set_console_file(c, nullptr); },
                 "vmm_config_set_console_file: path is NULL"},
        BadField{"console_file_empty",
                 [](vmm_config* c) { return vmm_config_set_console_file(c, ""); },
                 "--serial file: needs a path"},
        BadField{"console_fd", [](vmm_config* c) { return vmm_config_set_console_fd(c, -1); },
                 "vmm_config_set_console_fd: fd -1 is not a file descriptor"},
        BadField{"console_callback_null",
                 [](vmm_config* c) { return vmm_config_set_console_callback(c, nullptr, nullptr); },
                 "vmm_config_set_console_callback: fn is NULL"}),
    [](const ::testing::TestParamInfo<BadField>& info) { return std::string(info.param.name); });

TEST(CApi, SettersRefuseANullConfig) {
  EXPECT_EQ(vmm_config_set_cpus(nullptr, 1), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_cpus: config is NULL");
  EXPECT_EQ(vmm_config_set_console_none(nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_console_none: config is NULL");
  EXPECT_EQ(vmm_config_set_debug_exit(nullptr, true), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_debug_exit: config is NULL");
}

TEST(CApi, AFailedSetterLeavesTheConfigAsItWas) {
  ConfigPtr config = new_config();
  // A real kernel file: the host's files are checked before the KVM device is opened.
  ASSERT_EQ(vmm_config_set_kernel(config.get(), hello_image().c_str()), VMM_OK);
  ASSERT_EQ(vmm_config_set_kvm_device(config.get(), "/nonexistent/kvm"), VMM_OK);
  ASSERT_EQ(vmm_config_add_disk(config.get(), "", false, nullptr), VMM_EINVAL);
  // Had the empty disk stayed, create would refuse it before opening the KVM device.
  vmm_machine* machine = nullptr;
  EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_EKVM);
}

TEST(CApi, GoodValuesAreAccepted) {
  ConfigPtr config = new_config();
  vmm_config* c = config.get();
  EXPECT_EQ(vmm_config_set_kernel(c, "/boot/vmlinuz"), VMM_OK);
  EXPECT_EQ(vmm_config_set_initrd(c, "/boot/initrd.img"), VMM_OK);
  EXPECT_EQ(vmm_config_set_initrd(c, nullptr), VMM_OK);
  EXPECT_EQ(vmm_config_set_cmdline(c, "console=ttyS0"), VMM_OK);
  EXPECT_EQ(vmm_config_set_cpus(c, 254), VMM_OK);
  EXPECT_EQ(vmm_config_set_memory_bytes(c, uint64_t{16} << 20), VMM_OK);
  EXPECT_EQ(vmm_config_set_timeout(c, 5), VMM_OK);
  EXPECT_EQ(vmm_config_set_seccomp(c, false), VMM_OK);
  EXPECT_EQ(vmm_config_set_debug_exit(c, true), VMM_OK);
  EXPECT_EQ(vmm_config_add_disk(c, "/x.img", true, "exactly-20-bytes-id!"), VMM_OK);
  EXPECT_EQ(vmm_config_add_disk_snapshot(c, "/y.img", "base", VMM_DISK_SNAPSHOT_FILE), VMM_OK);
  EXPECT_EQ(vmm_config_add_disk_snapshot(c, "/z.img", nullptr, VMM_DISK_SNAPSHOT_MEMORY), VMM_OK);
  EXPECT_EQ(vmm_config_add_net(c, "tap0", "52:54:00:12:34:56"), VMM_OK);
  EXPECT_EQ(vmm_config_add_net(c, "tap1", nullptr), VMM_OK);
  EXPECT_EQ(vmm_config_set_vsock(c, 3, "/tmp/vsock.sock"), VMM_OK);
  EXPECT_EQ(vmm_config_set_api_socket(c, "/tmp/api.sock"), VMM_OK);
  EXPECT_EQ(vmm_config_set_api_socket(c, nullptr), VMM_OK);
  EXPECT_EQ(vmm_config_set_console_fd(c, 1), VMM_OK);
  EXPECT_EQ(vmm_config_set_console_file(c, "/tmp/console.log"), VMM_OK);
  EXPECT_EQ(vmm_config_set_console_none(c), VMM_OK);
  EXPECT_EQ(vmm_config_set_console_stdio(c), VMM_OK);
}

TEST(CApi, RateLimitsNameTheDeviceTheyLimit) {
  ConfigPtr config = new_config();
  vmm_config* c = config.get();
  const vmm_rate_limit limit{
      .bytes_per_second = 4 << 20, .bytes_burst = 0, .ops_per_second = 100, .ops_burst = 10};
  EXPECT_EQ(vmm_config_set_disk_rate_limit(c, 0, &limit), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_disk_rate_limit: no disk 0 (the config has 0)");
  EXPECT_EQ(vmm_config_set_net_rate_limits(c, 0, &limit, &limit), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_net_rate_limits: no NIC 0 (the config has 0)");
  ASSERT_EQ(vmm_config_add_disk(c, "/x.img", false, nullptr), VMM_OK);
  ASSERT_EQ(vmm_config_add_net(c, "tap0", nullptr), VMM_OK);
  EXPECT_EQ(vmm_config_set_disk_rate_limit(c, 0, &limit), VMM_OK);
  EXPECT_EQ(vmm_config_set_net_rate_limits(c, 0, &limit, &limit), VMM_OK);
  EXPECT_EQ(vmm_config_set_disk_rate_limit(c, 0, nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_disk_rate_limit: limit is NULL");
  EXPECT_EQ(vmm_config_set_net_rate_limits(c, 0, &limit, nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_net_rate_limits: tx is NULL");
}

// The snapshot reaches the machine, whose disks are opened before the KVM device: a file overlay
// in a $TMPDIR that does not exist is named; a memory overlay needs none, so KVM comes next.
TEST(CApi, ASnapshotDiskGetsItsOverlayBeforeKvm) {
  char image[] = "/tmp/vmm-capi-snapshot-XXXXXX";
  const int fd = ::mkstemp(image);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ::close(fd);
  const char* old_tmpdir = std::getenv("TMPDIR");
  const std::string saved = old_tmpdir == nullptr ? "" : old_tmpdir;
  ::setenv("TMPDIR", "/nonexistent/tmp", 1);
  for (const vmm_disk_snapshot snapshot : {VMM_DISK_SNAPSHOT_FILE, VMM_DISK_SNAPSHOT_MEMORY}) {
    ConfigPtr config = new_config();
    ASSERT_EQ(vmm_config_set_kernel(config.get(), hello_image().c_str()), VMM_OK);
    ASSERT_EQ(vmm_config_set_build_initramfs(config.get(), false), VMM_OK);
    ASSERT_EQ(vmm_config_set_kvm_device(config.get(), "/nonexistent/kvm"), VMM_OK);
    ASSERT_EQ(vmm_config_add_disk_snapshot(config.get(), image, nullptr, snapshot), VMM_OK);
    vmm_machine* machine = nullptr;
    if (snapshot == VMM_DISK_SNAPSHOT_FILE) {
      EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_EINVAL);
      EXPECT_EQ(vmm_last_error(), std::string("--disk ") + image +
                                      ": snapshot overlay in $TMPDIR /nonexistent/tmp: No such "
                                      "file or directory");
    } else {
      EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_EKVM) << vmm_last_error();
    }
    EXPECT_EQ(machine, nullptr);
  }
  if (old_tmpdir == nullptr) {
    ::unsetenv("TMPDIR");
  } else {
    ::setenv("TMPDIR", saved.c_str(), 1);
  }
  ::unlink(image);
}

TEST(CApi, AMissingKvmDeviceIsVmmEkvm) {
  ConfigPtr config = new_config();
  vmm_config_set_kernel(config.get(), hello_image().c_str());
  vmm_config_set_kvm_device(config.get(), "/nonexistent/kvm");
  vmm_machine* machine = nullptr;
  EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_EKVM);
  EXPECT_EQ(machine, nullptr);
  EXPECT_THAT(vmm_last_error(), StartsWith("/nonexistent/kvm: No such file or directory"));
}

TEST(CApi, AMissingKernelIsReportedBeforeKvm) {
  ConfigPtr config = new_config();
  vmm_config_set_kernel(config.get(), "/nonexistent/bzImage");
  vmm_config_set_kvm_device(config.get(), "/nonexistent/kvm");
  vmm_machine* machine = nullptr;
  EXPECT_NE(vmm_machine_create(config.get(), &machine), VMM_OK);
  EXPECT_STREQ(vmm_last_error(), "--kernel /nonexistent/bzImage: No such file or directory");
}

TEST(CApi, ModulesAndInitramfsSettersReachTheMachine) {
  // A kernel that names its release (6.1.0-capi) and an ext4-looking disk: a machine builds an
  // initramfs for them, from the folder vmm_config_set_modules names, before it opens KVM.
  std::vector<uint8_t> kernel = vmm::boot::test_images::make_bzimage();
  const std::string version = "6.1.0-capi (test@vmm) #1";
  std::copy(version.begin(), version.end(), kernel.begin() + 0x400);
  vmm::boot::test_images::edit_header(kernel,
                                      [](vmm::boot::SetupHeader& h) { h.kernel_version = 0x200; });
  const std::string dir = ::testing::TempDir() + "/vmm_capi_" + std::to_string(::getpid());
  const std::string kernel_path = dir + "-bzImage";
  const std::string disk_path = dir + "-root.img";
  std::ofstream(kernel_path, std::ios::binary)
      .write(reinterpret_cast<const char*>(kernel.data()),
             static_cast<std::streamsize>(kernel.size()));
  std::vector<char> disk(1 << 20, 0);
  disk[1024 + 56] = 0x53;  // ext4's superblock magic, 0xEF53
  disk[1024 + 57] = static_cast<char>(0xef);
  std::ofstream(disk_path, std::ios::binary)
      .write(disk.data(), static_cast<std::streamsize>(disk.size()));

  ConfigPtr config = new_config();
  vmm_config* c = config.get();
  ASSERT_EQ(vmm_config_set_kernel(c, kernel_path.c_str()), VMM_OK);
  ASSERT_EQ(vmm_config_add_disk(c, disk_path.c_str(), false, nullptr), VMM_OK);
  ASSERT_EQ(vmm_config_set_kvm_device(c, "/nonexistent/kvm"), VMM_OK);
  ASSERT_EQ(vmm_config_set_append(c, "quiet"), VMM_OK);
  ASSERT_EQ(vmm_config_set_modules(c, "/nonexistent/modules"), VMM_OK);
  vmm_machine* machine = nullptr;
  EXPECT_NE(vmm_machine_create(c, &machine), VMM_OK);
  EXPECT_THAT(vmm_last_error(), HasSubstr("/nonexistent/modules"));
  // Without the initramfs the folder is not read: creating gets as far as the KVM device.
  ASSERT_EQ(vmm_config_set_build_initramfs(c, false), VMM_OK);
  EXPECT_EQ(vmm_machine_create(c, &machine), VMM_EKVM);
  ::unlink(kernel_path.c_str());
  ::unlink(disk_path.c_str());
}

TEST(CApi, MachineCallsRefuseANullMachine) {
  vmm_state state;
  vmm_exit_info exit;
  EXPECT_EQ(vmm_machine_start(nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_start: machine is NULL");
  EXPECT_EQ(vmm_machine_wait(nullptr, 0), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_run(nullptr), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_pause(nullptr), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_resume(nullptr), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_stop(nullptr), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_state(nullptr, &state), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_exit_info(nullptr, &exit), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_send_console_input(nullptr, nullptr, 0), VMM_EINVAL);
  const char* json = nullptr;
  EXPECT_EQ(vmm_machine_metrics(nullptr, &json), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_metrics: machine is NULL");
  const vmm_rate_limit limit{};
  EXPECT_EQ(vmm_machine_set_disk_rate_limit(nullptr, 0, &limit), VMM_EINVAL);
  EXPECT_EQ(vmm_machine_set_net_rate_limits(nullptr, 0, &limit, &limit), VMM_EINVAL);
  vmm_machine_destroy(nullptr);
  vmm_config_free(nullptr);
}

TEST(CApi, SnapshotAndRestoreRefuseNullArguments) {
  EXPECT_EQ(vmm_machine_snapshot(nullptr, "/tmp/snapshot", false), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_snapshot: machine is NULL");
  vmm_machine* machine = reinterpret_cast<vmm_machine*>(0x1);
  EXPECT_EQ(vmm_machine_restore(nullptr, nullptr, &machine), VMM_EINVAL);
  EXPECT_EQ(machine, nullptr);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_restore: dir is NULL");
  EXPECT_EQ(vmm_machine_restore("", nullptr, &machine), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "--restore: the path is empty");
  EXPECT_EQ(vmm_machine_restore("/tmp/snapshot", nullptr, nullptr), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_restore: out is NULL");
}

TEST(CApi, RestoringAMissingSnapshotNamesItsManifest) {
  vmm_machine* machine = reinterpret_cast<vmm_machine*>(0x1);
  EXPECT_EQ(vmm_machine_restore("/nonexistent/snapshot", nullptr, &machine), VMM_EINVAL);
  EXPECT_EQ(machine, nullptr);
  EXPECT_STREQ(vmm_last_error(),
               "--restore /nonexistent/snapshot/manifest.json: No such file or directory");
}

TEST(CApi, RestoringACorruptManifestNamesWhatIsWrong) {
  const TemporaryDirectory dir;
  const std::string manifest = dir.path() + "/manifest.json";
  for (const auto& [text, error] : {std::pair{"{\"format\": 1}", "vmm_version is missing"},
                                    std::pair{"{\"format\": 7}", "snapshot format 7"},
                                    std::pair{"not json", "not JSON (a corrupt manifest)"}}) {
    std::ofstream(manifest) << text;
    vmm_machine* machine = nullptr;
    EXPECT_EQ(vmm_machine_restore(dir.path().c_str(), nullptr, &machine), VMM_EINVAL) << text;
    EXPECT_EQ(machine, nullptr);
    EXPECT_THAT(vmm_last_error(), StartsWith("--restore " + manifest + ": " + error)) << text;
    EXPECT_EQ(std::strchr(vmm_last_error(), '\n'), nullptr) << vmm_last_error();
  }
}

// The CPU a snapshot must be restored on, as manifest.json names it (vendor, family and model
// from CPUID leaves 0 and 1, the extended fields folded in as Intel and AMD say).
std::string host_cpu_json() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid(0, eax, ebx, ecx, edx);
  std::string vendor;
  for (const unsigned word : {ebx, edx, ecx})
    vendor.append(reinterpret_cast<const char*>(&word), 4);
  __cpuid(1, eax, ebx, ecx, edx);
  const unsigned base_family = (eax >> 8) & 0xf;
  const unsigned base_model = (eax >> 4) & 0xf;
  const unsigned family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
  const unsigned model = base_family == 0x6 || base_family == 0xf
                             ? (((eax >> 16) & 0xf) << 4) | base_model
                             : base_model;
  return "{\"vendor\": \"" + vendor + "\", \"family\": " + std::to_string(family) +
         ", \"model\": " + std::to_string(model) + "}";
}

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char byte : bytes) {
    hash ^= static_cast<uint8_t>(byte);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// A snapshot of this vmm on this CPU whose manifest and (empty) state file pass, without its
// memory file: the restore reads that before it opens the KVM device, so it is refused here too,
// as a bad snapshot naming the file.
TEST(CApi, RestoringASnapshotWithoutItsMemoryFileNamesIt) {
  const TemporaryDirectory dir;
  std::string state = "VMMSTATE";
  state.append(std::string("\x01\0\0\0\0\0\0\0", 8));  // format 1, no sections
  const uint64_t archive_checksum = fnv1a64(state);    // the state file's own, at its end
  state.append(reinterpret_cast<const char*>(&archive_checksum), sizeof(archive_checksum));
  std::ofstream(dir.path() + "/state", std::ios::binary) << state;
  char state_checksum[17];  // the manifest's, of the whole file
  std::snprintf(state_checksum, sizeof(state_checksum), "%016llx",
                static_cast<unsigned long long>(fnv1a64(state)));
  std::ofstream(dir.path() + "/manifest.json")
      << R"({"format": 1, "vmm_version": ")" << vmm_version() << R"(", "created_unix_ns": 0,)"
      << R"("cpu": )" << host_cpu_json() << R"(, "cpuid": [],)"
      << R"("machine": {"cpus": 1, "memory_bytes": 16777216, "kernel": "/k", "cmdline": "",)"
      << R"("disks": [], "nets": [], "vsock": null},)"
      << R"("memory": {"file": "memory", "bytes": 16777216},)"
      << R"("state": {"file": "state", "bytes": )" << state.size() << R"(, "fnv1a64": ")"
      << state_checksum << R"("}})";
  ConfigPtr config = new_config();
  ASSERT_EQ(vmm_config_set_kvm_device(config.get(), "/nonexistent/kvm"), VMM_OK);
  vmm_machine* machine = nullptr;
  EXPECT_EQ(vmm_machine_restore(dir.path().c_str(), config.get(), &machine), VMM_EINVAL);
  EXPECT_EQ(machine, nullptr);
  EXPECT_EQ(vmm_last_error(), dir.path() + "/memory: No such file or directory");
}

// The guest's own description comes from the snapshot: a config that sets any of it is refused
// (before the snapshot is read), rather than silently ignored.
TEST(CApi, RestoreRefusesAConfigThatDescribesTheGuest) {
  struct GuestOption {
    const char* option;
    vmm_status (*set)(vmm_config*);
  };
  const GuestOption options[] = {
      {"--kernel", [](vmm_config* c) { return vmm_config_set_kernel(c, "/boot/vmlinuz"); }},
      {"--initrd", [](vmm_config* c) { return vmm_config_set_initrd(c, nullptr); }},
      {"--cmdline", [](vmm_config* c) { return vmm_config_set_cmdline(c, "console=ttyS0"); }},
      {"--append", [](vmm_config* c) { return vmm_config_set_append(c, "quiet"); }},
      {"--modules", [](vmm_config* c) { return vmm_config_set_modules(c, "/lib/modules/x"); }},
      {"--modules", [](vmm_config* c) { return vmm_config_set_build_initramfs(c, false); }},
      {"--cpus", [](vmm_config* c) { return vmm_config_set_cpus(c, 2); }},
      {"--memory",
       [](vmm_config* c) { return vmm_config_set_memory_bytes(c, uint64_t{64} << 20); }},
  };
  for (const GuestOption& option : options) {
    ConfigPtr config = new_config();
    ASSERT_EQ(option.set(config.get()), VMM_OK) << option.option;
    vmm_machine* machine = reinterpret_cast<vmm_machine*>(0x1);
    EXPECT_EQ(vmm_machine_restore("/nonexistent/snapshot", config.get(), &machine), VMM_EINVAL);
    EXPECT_EQ(machine, nullptr);
    EXPECT_EQ(vmm_last_error(), std::string("--restore /nonexistent/snapshot: ") + option.option +
                                    " comes from the snapshot; leave it out");
  }
}

// The restoring process's choices pass (the snapshot is read next), and a setter that failed
// set nothing.
TEST(CApi, RestoreTakesTheRestoringProcessesChoices) {
  ConfigPtr config = new_config();
  vmm_config* c = config.get();
  ASSERT_EQ(vmm_config_set_console_none(c), VMM_OK);
  ASSERT_EQ(vmm_config_set_api_socket(c, "/tmp/vmm-capi-api.sock"), VMM_OK);
  ASSERT_EQ(vmm_config_set_timeout(c, 5), VMM_OK);
  ASSERT_EQ(vmm_config_set_seccomp(c, false), VMM_OK);
  ASSERT_EQ(vmm_config_set_kvm_device(c, "/nonexistent/kvm"), VMM_OK);
  ASSERT_EQ(vmm_config_add_disk_snapshot(c, "/x.img", nullptr, VMM_DISK_SNAPSHOT_MEMORY), VMM_OK);
  ASSERT_EQ(vmm_config_add_net(c, "tap0", nullptr), VMM_OK);
  ASSERT_EQ(vmm_config_set_vsock(c, 4, "/tmp/vmm-capi-vsock.sock"), VMM_OK);
  ASSERT_EQ(vmm_config_set_cpus(c, 0), VMM_EINVAL);
  vmm_machine* machine = nullptr;
  EXPECT_EQ(vmm_machine_restore("/nonexistent/snapshot", c, &machine), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(),
               "--restore /nonexistent/snapshot/manifest.json: No such file or directory");
}

TEST(CApi, LastErrorIsPerThread) {
  vmm_config_set_cpus(nullptr, 1);
  std::string other;
  std::thread([&] { other = vmm_last_error(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_STREQ(vmm_last_error(), "vmm_config_set_cpus: config is NULL");
}

// What a callback console collected.
struct Console {
  std::mutex mutex;
  std::string text;

  static void append(const uint8_t* bytes, size_t len, void* user) {
    auto* console = static_cast<Console*>(user);
    const std::lock_guard lock(console->mutex);
    console->text.append(reinterpret_cast<const char*>(bytes), len);
  }
  std::string get() {
    const std::lock_guard lock(mutex);
    return text;
  }
  // Whether the guest printed `wanted` within a liveness bound (the guest prints slowly in the
  // nested lab, under ASan most of all: a byte is an exit).
  bool wait_for(const std::string& wanted) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (get().find(wanted) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
};

class CApiGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }

  // A hello machine whose console is `console`.
  static MachinePtr hello(const std::string& cmdline, Console& console, uint32_t timeout = 0) {
    ConfigPtr config = new_config();
    EXPECT_EQ(vmm_config_set_kernel(config.get(), hello_image().c_str()), VMM_OK);
    EXPECT_EQ(vmm_config_set_cmdline(config.get(), cmdline.c_str()), VMM_OK);
    EXPECT_EQ(vmm_config_set_memory_bytes(config.get(), uint64_t{64} << 20), VMM_OK);
    EXPECT_EQ(vmm_config_set_timeout(config.get(), timeout), VMM_OK);
    EXPECT_EQ(vmm_config_set_debug_exit(config.get(), true), VMM_OK);
    EXPECT_EQ(vmm_config_set_console_callback(config.get(), &Console::append, &console), VMM_OK);
    vmm_machine* machine = nullptr;
    EXPECT_EQ(vmm_machine_create(config.get(), &machine), VMM_OK) << vmm_last_error();
    return MachinePtr(machine);
  }

  static vmm_state state_of(vmm_machine* machine) {
    vmm_state state = VMM_STATE_STOPPED;
    EXPECT_EQ(vmm_machine_state(machine, &state), VMM_OK);
    return state;
  }
};

TEST_F(CApiGuest, BootsHelloWithACallbackConsole) {
  Console console;
  MachinePtr machine = hello("console=ttyS0 capi-marker-1", console);
  ASSERT_NE(machine, nullptr);
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_CREATED);
  ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_STOPPED);
  vmm_exit_info exit;
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK) << vmm_last_error();
  EXPECT_EQ(exit.reason, VMM_EXIT_DEBUG_EXIT);
  EXPECT_EQ(exit.exit_status, 0);
  EXPECT_STREQ(exit.message, "guest exited with status 0");
  EXPECT_THAT(console.get(), HasSubstr("hello from the test guest"));
  EXPECT_THAT(console.get(), HasSubstr("cmdline: console=ttyS0 capi-marker-1"));
}

TEST_F(CApiGuest, MetricsCountTheGuestsExitsAndLimitsNameTheirDevice) {
  Console console;
  MachinePtr machine = hello("console=ttyS0", console);
  ASSERT_NE(machine, nullptr);
  const char* json = nullptr;
  ASSERT_EQ(vmm_machine_metrics(machine.get(), &json), VMM_OK) << vmm_last_error();
  EXPECT_THAT(json, HasSubstr("\"ok\":true"));
  EXPECT_THAT(json, HasSubstr("\"vcpus\":[{\"exits\":{"));
  ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
  ASSERT_EQ(vmm_machine_metrics(machine.get(), &json), VMM_OK) << vmm_last_error();
  // The hello guest writes its console through port I/O.
  EXPECT_THAT(json, HasSubstr("\"io\":"));
  const vmm_rate_limit limit{};
  EXPECT_EQ(vmm_machine_set_disk_rate_limit(machine.get(), 0, &limit), VMM_EINVAL);
  EXPECT_THAT(vmm_last_error(), HasSubstr("no disk0"));
}

TEST_F(CApiGuest, TheGuestsExitStatusComesThrough) {
  Console console;
  MachinePtr machine = hello("exit=7", console);
  ASSERT_NE(machine, nullptr);
  ASSERT_EQ(vmm_machine_start(machine.get()), VMM_OK) << vmm_last_error();
  ASSERT_EQ(vmm_machine_wait(machine.get(), 30000), VMM_OK) << vmm_last_error();
  vmm_exit_info exit;
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK);
  EXPECT_EQ(exit.reason, VMM_EXIT_DEBUG_EXIT);
  EXPECT_EQ(exit.debug_code, 7);
  EXPECT_EQ(exit.exit_status, 7);
}

TEST_F(CApiGuest, CallsInTheWrongStateAreVmmEstate) {
  Console console;
  MachinePtr machine = hello("console=ttyS0", console);
  ASSERT_NE(machine, nullptr);
  vmm_exit_info exit;
  EXPECT_EQ(vmm_machine_wait(machine.get(), 0), VMM_ESTATE);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_wait: the machine was never started");
  EXPECT_EQ(vmm_machine_pause(machine.get()), VMM_ESTATE);
  EXPECT_THAT(vmm_last_error(), HasSubstr("the machine is created"));
  EXPECT_EQ(vmm_machine_resume(machine.get()), VMM_ESTATE);
  EXPECT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_ESTATE);

  ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
  EXPECT_EQ(vmm_machine_start(machine.get()), VMM_ESTATE);
  EXPECT_STREQ(vmm_last_error(),
               "vmm_machine_start: the machine is stopped (only a created machine starts)");
  EXPECT_EQ(vmm_machine_run(machine.get()), VMM_ESTATE);
  EXPECT_EQ(vmm_machine_pause(machine.get()), VMM_ESTATE);
  EXPECT_EQ(vmm_machine_resume(machine.get()), VMM_ESTATE);
  // Stopping a stopped machine is fine and changes nothing.
  EXPECT_EQ(vmm_machine_stop(machine.get()), VMM_OK);
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK);
  EXPECT_EQ(exit.reason, VMM_EXIT_DEBUG_EXIT);
}

TEST_F(CApiGuest, PauseResumeAndStopARunningGuest) {
  Console console;
  MachinePtr machine = hello("spin", console);
  ASSERT_NE(machine, nullptr);
  ASSERT_EQ(vmm_machine_start(machine.get()), VMM_OK) << vmm_last_error();
  ASSERT_TRUE(console.wait_for("spinning until the VMM stops us")) << console.get();
  EXPECT_EQ(vmm_machine_wait(machine.get(), 50), VMM_ETIMEOUT);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_wait: the machine is still running after 50 ms");
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_RUNNING);
  vmm_exit_info exit;
  EXPECT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_ESTATE);

  ASSERT_EQ(vmm_machine_pause(machine.get()), VMM_OK) << vmm_last_error();
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_PAUSED);
  EXPECT_EQ(vmm_machine_pause(machine.get()), VMM_OK) << "pausing a paused machine is a no-op";
  EXPECT_EQ(vmm_machine_wait(machine.get(), 0), VMM_ETIMEOUT);
  ASSERT_EQ(vmm_machine_resume(machine.get()), VMM_OK) << vmm_last_error();
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_RUNNING);

  const uint8_t input[] = {'h', 'i', '\n'};
  EXPECT_EQ(vmm_machine_send_console_input(machine.get(), input, sizeof input), VMM_OK);
  EXPECT_EQ(vmm_machine_send_console_input(machine.get(), nullptr, 3), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_send_console_input: bytes is NULL");

  ASSERT_EQ(vmm_machine_stop(machine.get()), VMM_OK) << vmm_last_error();
  ASSERT_EQ(vmm_machine_wait(machine.get(), -1), VMM_OK) << vmm_last_error();
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK);
  EXPECT_EQ(exit.reason, VMM_EXIT_STOPPED);
  EXPECT_EQ(exit.exit_status, 5);
  EXPECT_STREQ(exit.message, "stopped by the host");
}

TEST_F(CApiGuest, TheConfiguredTimeoutStopsAGuest) {
  Console console;
  MachinePtr machine = hello("spin", console, 1);
  ASSERT_NE(machine, nullptr);
  ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
  vmm_exit_info exit;
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK);
  EXPECT_EQ(exit.reason, VMM_EXIT_TIMEOUT);
  EXPECT_EQ(exit.exit_status, 124);
}

TEST_F(CApiGuest, DestroyingARunningMachineStopsIt) {
  Console console;
  MachinePtr machine = hello("spin", console);
  ASSERT_NE(machine, nullptr);
  ASSERT_EQ(vmm_machine_start(machine.get()), VMM_OK) << vmm_last_error();
  machine.reset();  // returns only once every thread of the machine is gone
}

TEST_F(CApiGuest, ConsoleToAFileAndToAnFd) {
  char file_template[] = "/tmp/vmm-capi-console-XXXXXX";
  const int fd = ::mkstemp(file_template);
  ASSERT_GE(fd, 0);
  const std::string fd_path = file_template;
  const std::string file_path = fd_path + ".log";
  for (const bool to_fd : {true, false}) {
    ConfigPtr config = new_config();
    vmm_config_set_kernel(config.get(), hello_image().c_str());
    vmm_config_set_memory_bytes(config.get(), uint64_t{64} << 20);
    vmm_config_set_debug_exit(config.get(), true);
    ASSERT_EQ(to_fd ? vmm_config_set_console_fd(config.get(), fd)
                    : vmm_config_set_console_file(config.get(), file_path.c_str()),
              VMM_OK);
    vmm_machine* raw = nullptr;
    ASSERT_EQ(vmm_machine_create(config.get(), &raw), VMM_OK) << vmm_last_error();
    MachinePtr machine(raw);
    ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
    machine.reset();
    std::ifstream in(to_fd ? fd_path : file_path);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_THAT(text.str(), HasSubstr("hello from the test guest")) << (to_fd ? "fd" : "file");
  }
  ::close(fd);
  std::remove(fd_path.c_str());
  std::remove(file_path.c_str());
}

TEST_F(CApiGuest, SeveralMachinesFromSeveralThreads) {
  constexpr int kMachines = 4;
  struct Result {
    vmm_status create = VMM_EFAIL;
    vmm_status run = VMM_EFAIL;
    std::string error;
    vmm_exit_info exit{};
    std::string message;
    Console console;
  };
  std::vector<Result> results(kMachines);
  std::vector<std::thread> threads;
  threads.reserve(kMachines);
  for (int i = 0; i < kMachines; ++i) {
    threads.emplace_back([i, &result = results[i]] {
      ConfigPtr config(vmm_config_new());
      vmm_config_set_kernel(config.get(), hello_image().c_str());
      vmm_config_set_memory_bytes(config.get(), uint64_t{64} << 20);
      vmm_config_set_cmdline(config.get(), ("exit=" + std::to_string(10 + i)).c_str());
      vmm_config_set_debug_exit(config.get(), true);
      vmm_config_set_console_callback(config.get(), &Console::append, &result.console);
      vmm_machine* raw = nullptr;
      result.create = vmm_machine_create(config.get(), &raw);
      MachinePtr machine(raw);
      if (result.create == VMM_OK) result.run = vmm_machine_run(machine.get());
      if (result.run == VMM_OK) {
        vmm_machine_exit_info(machine.get(), &result.exit);
        result.message = result.exit.message;
      } else {
        result.error = vmm_last_error();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kMachines; ++i) {
    SCOPED_TRACE("machine " + std::to_string(i));
    const Result& result = results[i];
    ASSERT_EQ(result.create, VMM_OK) << result.error;
    ASSERT_EQ(result.run, VMM_OK) << result.error;
    EXPECT_EQ(result.exit.reason, VMM_EXIT_DEBUG_EXIT);
    EXPECT_EQ(result.exit.exit_status, 10 + i);
    EXPECT_EQ(result.message, "guest exited with status " + std::to_string(10 + i));
    EXPECT_THAT(results[i].console.text, HasSubstr("cmdline: exit=" + std::to_string(10 + i)));
  }
}

TEST_F(CApiGuest, SnapshotNeedsARunningOrPausedMachine) {
  Console console;
  MachinePtr machine = hello("console=ttyS0", console);
  ASSERT_NE(machine, nullptr);
  const TemporaryDirectory dir;
  const std::string path = dir.path() + "/snapshot";
  EXPECT_EQ(vmm_machine_snapshot(machine.get(), path.c_str(), false), VMM_ESTATE);
  EXPECT_STREQ(vmm_last_error(),
               "vmm_machine_snapshot: the machine is created (only a running or paused machine "
               "is snapshotted)");
  EXPECT_EQ(vmm_machine_snapshot(machine.get(), nullptr, false), VMM_EINVAL);
  EXPECT_STREQ(vmm_last_error(), "vmm_machine_snapshot: dir is NULL");
  ASSERT_EQ(vmm_machine_run(machine.get()), VMM_OK) << vmm_last_error();
  EXPECT_EQ(vmm_machine_snapshot(machine.get(), path.c_str(), false), VMM_ESTATE);
  EXPECT_THAT(vmm_last_error(), HasSubstr("the machine is stopped"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

// The compute guest, snapshotted mid-computation (where it waits for a console byte after its
// first step) and restored in a new machine, finishes with its result and exit status once it
// gets the byte, without starting over.
TEST_F(CApiGuest, ARestoredGuestCarriesOnWhereItWasSnapshotted) {
  const TemporaryDirectory dir;
  const std::string path = dir.path() + "/snapshot";
  {
    Console console;
    ConfigPtr config = new_config();
    ASSERT_EQ(vmm_config_set_kernel(config.get(), guest_image("compute").c_str()), VMM_OK);
    ASSERT_EQ(vmm_config_set_cmdline(config.get(), "console=ttyS0"), VMM_OK);
    ASSERT_EQ(vmm_config_set_memory_bytes(config.get(), uint64_t{32} << 20), VMM_OK);
    ASSERT_EQ(vmm_config_set_debug_exit(config.get(), true), VMM_OK);
    ASSERT_EQ(vmm_config_set_console_callback(config.get(), &Console::append, &console), VMM_OK);
    vmm_machine* raw = nullptr;
    ASSERT_EQ(vmm_machine_create(config.get(), &raw), VMM_OK) << vmm_last_error();
    MachinePtr machine(raw);
    ASSERT_EQ(vmm_machine_start(machine.get()), VMM_OK) << vmm_last_error();
    ASSERT_TRUE(console.wait_for("compute: waiting")) << console.get();
    ASSERT_EQ(vmm_machine_snapshot(machine.get(), path.c_str(), true), VMM_OK) << vmm_last_error();
    EXPECT_EQ(state_of(machine.get()), VMM_STATE_PAUSED);
    ASSERT_THAT(console.get(), ::testing::Not(HasSubstr("compute: result")))
        << "the computation ended before the snapshot";
    // A directory that holds a snapshot is not written again; the machine stays as it was.
    EXPECT_EQ(vmm_machine_snapshot(machine.get(), path.c_str(), false), VMM_EFAIL);
    EXPECT_THAT(vmm_last_error(), HasSubstr("already holds a snapshot"));
    EXPECT_EQ(state_of(machine.get()), VMM_STATE_PAUSED);
  }
  Console console;
  ConfigPtr config = new_config();
  ASSERT_EQ(vmm_config_set_console_callback(config.get(), &Console::append, &console), VMM_OK);
  ASSERT_EQ(vmm_config_set_debug_exit(config.get(), true), VMM_OK);  // the restorer's choice
  vmm_machine* raw = nullptr;
  ASSERT_EQ(vmm_machine_restore(path.c_str(), config.get(), &raw), VMM_OK) << vmm_last_error();
  MachinePtr machine(raw);
  EXPECT_EQ(state_of(machine.get()), VMM_STATE_CREATED);
  ASSERT_EQ(vmm_machine_start(machine.get()), VMM_OK) << vmm_last_error();
  const uint8_t go = 'g';
  ASSERT_EQ(vmm_machine_send_console_input(machine.get(), &go, 1), VMM_OK) << vmm_last_error();
  ASSERT_EQ(vmm_machine_wait(machine.get(), 60000), VMM_OK) << vmm_last_error();
  vmm_exit_info exit;
  ASSERT_EQ(vmm_machine_exit_info(machine.get(), &exit), VMM_OK);
  EXPECT_EQ(exit.reason, VMM_EXIT_DEBUG_EXIT) << exit.message;
  EXPECT_EQ(exit.exit_status, 42);  // guest-tests/compute's, once it printed its result
  EXPECT_THAT(console.get(), HasSubstr("compute: result"));
  EXPECT_THAT(console.get(), ::testing::Not(HasSubstr("compute: step 0")));
}

}  // namespace
