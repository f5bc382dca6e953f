// What a jail shows (jail_mounts, on temporary files), and, where this host lets root make
// namespaces, a jail entered for real and checked from outside through /proc.
#include "vmm/security/jail.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::security {
namespace {

namespace fs = std::filesystem;

class JailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "jail_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    fs::create_directories(dir_ / "sockets");
    fs::create_directories(dir_ / "root");
    for (const char* name : {"bzImage", "initrd.img", "root.img", "data.img"}) {
      std::ofstream(dir_ / name) << "not a kernel";
    }
    config_.kernel_path = dir_ / "bzImage";
    config_.kvm_device = "/dev/null";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ / name; }

  fs::path dir_;
  MachineConfig config_;
  JailConfig jail_{.dir = "/unused", .uid = 65534, .gid = 65534};
};

using Kind = JailMount::Kind;

DiskConfig disk(const std::string& path, bool read_only = false,
                DiskConfig::Snapshot snapshot = DiskConfig::Snapshot::kOff) {
  DiskConfig disk;
  disk.path = path;
  disk.read_only = read_only;
  disk.snapshot = snapshot;
  return disk;
}

JailMount same_path(const std::string& path, Kind kind, bool writable) {
  return {.path = path, .source = path, .kind = kind, .writable = writable};
}

std::vector<JailMount> without_huge_pages(std::vector<JailMount> mounts) {
  std::erase_if(mounts, [](const JailMount& m) { return m.path.starts_with("/sys/kernel/mm/"); });
  return mounts;
}

TEST_F(JailTest, ShowsWhatTheMachineUsesAtTheSamePaths) {
  config_.initrd_path = "initrd.img";  // relative: from the working directory
  config_.disks = {disk(path("root.img")), disk(path("data.img"), true)};
  config_.api_socket = path("sockets/api.sock");
  config_.vsock = VsockConfig{.guest_cid = 3, .uds_path = path("sockets/vsock")};
  config_.serial.mode = SerialConfig::Mode::kFile;
  config_.serial.path = path("root/console.log");
  const std::vector<JailMount> mounts =
      without_huge_pages(jail_mounts(jail_, config_, dir_.string()));
  const std::vector<JailMount> expected = {
      same_path("/dev/null", Kind::kDevice, true),  // the KVM device
      same_path(path("bzImage"), Kind::kFile, false),
      same_path(path("data.img"), Kind::kFile, false),  // readonly=on
      same_path(path("initrd.img"), Kind::kFile, false),
      same_path(path("root"), Kind::kDirectory, true),  // the console file's folder
      same_path(path("root.img"), Kind::kFile, true),
      same_path(path("sockets"), Kind::kDirectory, true),  // both sockets' folder, once
  };
  EXPECT_EQ(mounts, expected);
}

TEST_F(JailTest, ASnapshotDiskIsShownReadOnly) {
  config_.disks = {disk(path("root.img"), false, DiskConfig::Snapshot::kFile)};
  config_.build_initramfs = false;
  const auto mounts = without_huge_pages(jail_mounts(jail_, config_, "/"));
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[2], same_path(path("root.img"), Kind::kFile, false));
}

// A restore boots nothing: the snapshot's folder instead of the kernel (which may be gone).
TEST_F(JailTest, ARestoreSeesItsSnapshotFolderReadOnlyInsteadOfTheKernel) {
  fs::create_directories(dir_ / "snap");
  config_.kernel_path = path("gone/bzImage");
  config_.build_initramfs = false;
  config_.disks = {disk(path("root.img"))};
  const auto mounts = without_huge_pages(jail_mounts(jail_, config_, "/", path("snap")));
  const std::vector<JailMount> expected = {
      same_path("/dev/null", Kind::kDevice, true),
      same_path(path("root.img"), Kind::kFile, true),
      same_path(path("snap"), Kind::kDirectory, false),
  };
  EXPECT_EQ(mounts, expected);
  EXPECT_THROW(jail_mounts(jail_, config_, "/", path("no-snapshot")), Error);
}

TEST_F(JailTest, TheModulesFolderIsShownReadOnly) {
  fs::create_directories(dir_ / "modules");
  config_.disks = {disk(path("root.img"))};
  config_.modules_dir = path("modules");
  const auto mounts = jail_mounts(jail_, config_, "/");
  EXPECT_NE(
      std::find(mounts.begin(), mounts.end(), same_path(path("modules"), Kind::kDirectory, false)),
      mounts.end());
}

std::string refusal(const JailConfig& jail, const MachineConfig& config) {
  try {
    jail_mounts(jail, config, "/");
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST_F(JailTest, RefusesWhatAJailCantServe) {
  MachineConfig share = config_;
  share.shares = {{.host_dir = "/srv", .tag = "data"}};
  EXPECT_EQ(refusal(jail_, share),
            "--share /srv:data: a jailed vmm can't run virtiofsd (it needs root); run it yourself "
            "and give --share socket=PATH,tag=data");

  MachineConfig tap = config_;
  tap.nets.resize(1);
  tap.nets[0].tap = "vmmjailnotap0";
  EXPECT_EQ(refusal(jail_, tap),
            "--net tap=vmmjailnotap0: no such tap, and a jailed vmm can't create one (create it: "
            "ip tuntap add vmmjailnotap0 mode tap user 65534; ip link set vmmjailnotap0 up)");

  MachineConfig in_root = config_;
  in_root.api_socket = "/api.sock";
  EXPECT_EQ(refusal(jail_, in_root),
            "--api-socket /api.sock: a jail can't show all of /; use a folder of its own");

  MachineConfig missing = config_;
  missing.disks = {disk(path("nope.img"))};
  EXPECT_EQ(refusal(jail_, missing), "--disk " + path("nope.img") + ": No such file or directory");
}

// --- a real jail: root, and a kernel that lets it make namespaces ---

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The line of /proc/PID/status or /proc/PID/limits that starts with `name`, spaces squeezed.
std::string line_of(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(name)) continue;
    std::istringstream words(line.substr(name.size()));
    std::string squeezed;
    for (std::string word; words >> word;) squeezed += (squeezed.empty() ? "" : " ") + word;
    return squeezed;
  }
  return "";
}

pid_t only_child_of(pid_t parent) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (line_of(read_text(entry.path() / "status"), "PPid:") == std::to_string(parent)) {
      return std::stoi(name);
    }
  }
  return -1;
}

std::set<std::string> entries_of(const std::string& folder) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) names.insert(entry.path().filename());
  return names;
}

TEST_F(JailTest, AJailedProcessSeesOnlyItsMountsAsItsUserWithItsLimits) {
  if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
#if defined(__SANITIZE_THREAD__)
  // The jail forks before vmm has threads and forwards signals across two forks; TSan's runtime
  // has a thread of its own and delays signals to its own points, and the SIGTERM never reaches
  // the jailed process (the test hung). The plain and ASan runs, and the lab's jail, cover it.
  GTEST_SKIP() << "under ThreadSanitizer, whose runtime thread and deferred signals the jail's "
                  "forks don't survive";
#endif
  jail_.dir = path("root");
  jail_.nofile = 64;
  jail_.fsize = 1 << 20;
  config_.disks = {disk(path("root.img"), true)};
  config_.build_initramfs = false;
  fs::permissions(path("root.img"), fs::perms::all);  // only the read-only mount stops a write
  std::array<int, 2> ready{};
  ASSERT_EQ(::pipe(ready.data()), 0);
  const pid_t outside = ::fork();
  ASSERT_GE(outside, 0);
  if (outside == 0) {
    ::close(ready[0]);
    fs::current_path(dir_);
    std::optional<int> status;
    try {
      status = enter_jail(jail_, config_);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::_Exit(99);
    }
    if (status) std::_Exit(*status);
    // In the jail, as vmm: what it can do, then wait to be looked at.
    const bool host_hidden = ::access("/etc/passwd", F_OK) != 0;
    const bool disk_read_only = ::access(path("root.img").c_str(), W_OK) != 0 && errno == EROFS;
    const char verdict = host_hidden && disk_read_only ? 'y' : 'n';
    (void)!::write(ready[1], &verdict, 1);
    ::pause();
    std::_Exit(0);
  }
  ::close(ready[1]);
  char verdict = 0;
  const bool came = ::read(ready[0], &verdict, 1) == 1;
  ::close(ready[0]);
  if (!came) {
    int status = 0;
    ::waitpid(outside, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 99) GTEST_SKIP() << "no namespaces here";
    FAIL() << "the jail failed to start: status " << status;
  }
  EXPECT_EQ(verdict, 'y') << "inside: /etc/passwd visible, or the readonly disk writable";
  const pid_t init = only_child_of(outside);
  const pid_t vmm = only_child_of(init);
  ASSERT_GT(vmm, 0);
  const std::string proc = "/proc/" + std::to_string(vmm);

  // Its root holds the mounts' first folders, /proc and /tmp, and nothing of the host's.
  std::set<std::string> expected = {"dev", "proc", "tmp", std::next(dir_.begin())->string()};
  if (fs::exists(proc + "/root/sys")) expected.insert("sys");  // the huge page setting
  EXPECT_EQ(entries_of(proc + "/root"), expected);
  EXPECT_FALSE(fs::exists(proc + "/root/etc/passwd"));
  EXPECT_FALSE(fs::exists(proc + "/root/bin"));
  EXPECT_TRUE(fs::exists(proc + "/root" + path("bzImage")));
  EXPECT_FALSE(fs::exists(proc + "/root" + path("initrd.img")));  // not the machine's
  EXPECT_EQ(read_text(proc + "/cwd/bzImage").substr(0, 3), "not")
      << "the working directory is the same path";

  const std::string status = read_text(proc + "/status");
  EXPECT_EQ(line_of(status, "Uid:"), "65534 65534 65534 65534");
  EXPECT_EQ(line_of(status, "Gid:"), "65534 65534 65534 65534");
  EXPECT_EQ(line_of(status, "Groups:"), "");
  EXPECT_EQ(line_of(status, "CapEff:"), "0000000000000000");
  EXPECT_EQ(line_of(status, "CapPrm:"), "0000000000000000");
  EXPECT_EQ(line_of(status, "CapBnd:"), "0000000000000000");
  EXPECT_EQ(line_of(status, "NoNewPrivs:"), "1");
  EXPECT_EQ(line_of(status, "NSpid:"), std::to_string(vmm) + " 2") << "not the namespace's init";
  const std::string limits = read_text(proc + "/limits");
  EXPECT_EQ(line_of(limits, "Max open files"), "64 64 files");
  EXPECT_EQ(line_of(limits, "Max file size"), "1048576 1048576 bytes");
  for (const char* ns : {"mnt", "pid", "ipc", "uts", "net"}) {
    EXPECT_NE(fs::read_symlink(proc + "/ns/" + ns),
              fs::read_symlink(std::string("/proc/self/ns/") + ns))
        << ns;
  }

  // A signal to the process that was started reaches vmm; its status comes back as 128+S.
  ASSERT_EQ(::kill(outside, SIGTERM), 0);
  int status_code = 0;
  ASSERT_EQ(::waitpid(outside, &status_code, 0), outside);
  ASSERT_TRUE(WIFEXITED(status_code));
  EXPECT_EQ(WEXITSTATUS(status_code), 128 + SIGTERM);
  // Nothing was left mounted on the host: the jail's directory is as it was.
  EXPECT_TRUE(fs::is_empty(jail_.dir));
}

TEST_F(JailTest, AMissingDirectoryIsRefusedBeforeAnythingStarts) {
  jail_.dir = path("nope");
  try {
    enter_jail(jail_, config_);
    FAIL() << "entered";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--jail " + path("nope") + ": No such file or directory");
  }
}

}  // namespace
}  // namespace vmm::security
