#include "devices/backends/virtiofsd.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "devices/vhost_user/backend_channel.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

constexpr const char* kProgram = "/usr/lib/qemu/virtiofsd";
constexpr const char* kName = "--share /srv:docs";

// Why this host can't run Debian's virtiofsd under vmm's sandbox, or nothing.
std::optional<std::string> virtiofsd_unavailable() {
  if (::access(kProgram, X_OK) != 0) return std::string(kProgram) + " is not installed";
  if (::geteuid() != 0) return std::string("virtiofsd and its namespaces need root");
  return std::nullopt;
}

// Starting a process in namespaces of its own needs root, whatever the program.
std::optional<std::string> not_root() {
  if (::geteuid() != 0) return std::string("the namespaces vmm makes for virtiofsd need root");
  return std::nullopt;
}

Virtiofsd::Options options_for(const std::string& directory, bool read_only = false,
                               const std::string& program = kProgram) {
  return {.program = program, .directory = directory, .read_only = read_only, .name = kName};
}

// A shell script standing in for virtiofsd.
std::string write_script(const TempDir& dir, const std::string& body) {
  std::string path = dir.file("fake-virtiofsd");
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

// Polls exit_description() until the process has exited (nullopt if it hasn't within 10 s).
std::optional<std::string> wait_for_exit(Virtiofsd& process) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto description = process.exit_description()) return description;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

// The frontend's connection to it, the handshake's first steps done. Once virtiofsd has answered
// it has set up its sandbox (chroot included): it does so before it serves the connection. It
// exits when the connection closes.
struct Connection {
  vhost_user::BackendChannel channel;
  uint64_t features = 0;
};

Connection open_connection(Virtiofsd& process) {
  Connection connection{vhost_user::BackendChannel(process.take_socket(), "vhost-user fs (test)")};
  connection.channel.set_owner();
  connection.features = connection.channel.get_features();
  return connection;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A line of /proc/<pid>/mountinfo: which directory of its filesystem a mount shows, and its
// per-mount options.
struct Mount {
  std::string root;
  std::string options;
};

// The mount that `pid` sees at its root "/" (mount points are shown relative to its root, and
// mounts outside it not at all), or nothing.
std::optional<Mount> mount_at_root(pid_t pid) {
  std::istringstream lines(read_text("/proc/" + std::to_string(pid) + "/mountinfo"));
  std::optional<Mount> found;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point, options;
    fields >> id >> parent >> device >> root >> mount_point >> options;
    // The last one listed is the one on top.
    if (mount_point == "/") found = Mount{root, options};
  }
  return found;
}

bool has_option(const std::string& options, const std::string& option) {
  return ("," + options + ",").find("," + option + ",") != std::string::npos;
}

std::string namespace_of(const std::string& process, const std::string& kind) {
  return std::filesystem::read_symlink("/proc/" + process + "/ns/" + kind).string();
}

bool process_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// The message of the vmm::Error that start() throws, or a failure.
std::string start_error(const Virtiofsd::Options& options) {
  try {
    Virtiofsd process = Virtiofsd::start(options);
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "start() did not throw";
  return {};
}

TEST(VirtiofsdProcessTest, ItsSocketSpeaksVhostUser) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  Virtiofsd process = Virtiofsd::start(options_for(share.path()));
  EXPECT_GT(process.pid(), 0);
  const Connection connection = open_connection(process);
  EXPECT_NE(connection.features & virtio::kFeatureVersion1, 0U);
  EXPECT_EQ(process.exit_description(), std::nullopt);
}

TEST(VirtiofsdProcessTest, ReadOnlyShareIsAReadOnlyMountInItsNamespace) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), /*read_only=*/true));
  const Connection connection = open_connection(process);
  const std::string pid = std::to_string(process.pid());
  // Chrooted into the share: the bind mount of it is what it sees at "/".
  const std::optional<Mount> mount = mount_at_root(process.pid());
  ASSERT_TRUE(mount.has_value()) << read_text("/proc/" + pid + "/mountinfo");
  EXPECT_THAT(mount->root, EndsWith(share.path()));
  EXPECT_TRUE(has_option(mount->options, "ro")) << mount->options;
  struct statvfs root {};
  ASSERT_EQ(::statvfs(("/proc/" + pid + "/root").c_str(), &root), 0);
  EXPECT_NE(root.f_flag & ST_RDONLY, 0U);
  // Only in its namespace: ours is as writable as before.
  EXPECT_TRUE(std::ofstream(share.file("still-writable-here")).good());
}

TEST(VirtiofsdProcessTest, WritableShareStaysWritable) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), /*read_only=*/false));
  const Connection connection = open_connection(process);
  const std::string pid = std::to_string(process.pid());
  struct statvfs root {};
  ASSERT_EQ(::statvfs(("/proc/" + pid + "/root").c_str(), &root), 0);
  EXPECT_EQ(root.f_flag & ST_RDONLY, 0U);
  // vmm mounts nothing for it: the share is part of a host mount, whose mount point lies outside
  // its root.
  EXPECT_FALSE(mount_at_root(process.pid()).has_value())
      << read_text("/proc/" + pid + "/mountinfo");
}

TEST(VirtiofsdProcessTest, RunsInMountAndNetworkNamespacesOfItsOwn) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  Virtiofsd process = Virtiofsd::start(options_for(share.path()));
  const Connection connection = open_connection(process);
  const std::string pid = std::to_string(process.pid());
  EXPECT_NE(namespace_of(pid, "mnt"), namespace_of("self", "mnt"));
  EXPECT_NE(namespace_of(pid, "net"), namespace_of("self", "net"));
}

TEST(VirtiofsdProcessTest, MissingDirectoryIsNamed) {
  const TempDir dir;
  const std::string missing = dir.file("missing");
  EXPECT_EQ(start_error(options_for(missing)),
            std::string(kName) + ": " + missing + ": No such file or directory");
}

TEST(VirtiofsdProcessTest, FileThatIsNotADirectoryIsNamed) {
  const TempDir dir;
  const std::string file = dir.file("file");
  std::ofstream(file) << "x";
  EXPECT_EQ(start_error(options_for(file)),
            std::string(kName) + ": " + file + " is not a directory");
}

TEST(VirtiofsdProcessTest, MissingProgramIsNamed) {
  const TempDir dir;
  const std::string missing = dir.file("no-virtiofsd");
  EXPECT_EQ(start_error(options_for(dir.path(), false, missing)),
            std::string(kName) + ": " + missing + ": No such file or directory");
}

TEST(VirtiofsdProcessTest, ProgramThatFailsAtOnceReportsItsStatus) {
  if (auto why = not_root()) GTEST_SKIP() << *why;
  const TempDir share;
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), false, "/bin/false"));
  EXPECT_EQ(wait_for_exit(process), "virtiofsd exited with status 1");
}

TEST(VirtiofsdProcessTest, ExitDescriptionEndsWithItsLastLineOnStderr) {
  if (auto why = not_root()) GTEST_SKIP() << *why;
  const TempDir share;
  const std::string script = write_script(share, "echo first >&2\necho hello >&2\nexit 3");
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), false, script));
  const std::optional<std::string> description = wait_for_exit(process);
  ASSERT_TRUE(description.has_value());
  EXPECT_EQ(*description, "virtiofsd exited with status 3: hello");
  EXPECT_THAT(*description, Not(HasSubstr("\n")));
}

TEST(VirtiofsdProcessTest, ReadLogReturnsCompleteLinesAndKeepsThePartOne) {
  if (auto why = not_root()) GTEST_SKIP() << *why;
  const TempDir share;
  const std::string go = share.file("go");
  const std::string script =
      write_script(share, "echo one >&2\nprintf 'tw' >&2\nwhile [ ! -e " + go +
                              " ]; do sleep 0.01; done\n" + "echo o >&2\nexit 0");
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), false, script));
  std::vector<std::string> lines;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (lines.empty() && std::chrono::steady_clock::now() < deadline) {
    lines = process.read_log();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(lines, std::vector<std::string>{"one"});
  std::ofstream(go).put('\n');
  EXPECT_EQ(wait_for_exit(process), "virtiofsd exited with status 0: two");
}

TEST(VirtiofsdProcessTest, ReadLogCutsLongLines) {
  if (auto why = not_root()) GTEST_SKIP() << *why;
  const TempDir share;
  const std::string long_line(Virtiofsd::kMaxLogLine * 3, 'x');
  const std::string script = write_script(share, "echo " + long_line + " >&2\nexit 2");
  Virtiofsd process = Virtiofsd::start(options_for(share.path(), false, script));
  EXPECT_EQ(wait_for_exit(process),
            "virtiofsd exited with status 2: " + std::string(Virtiofsd::kMaxLogLine, 'x'));
}

TEST(VirtiofsdProcessTest, DestructorStopsAndReapsIt) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  pid_t pid = -1;
  {
    Virtiofsd process = Virtiofsd::start(options_for(share.path()));
    pid = process.pid();
    const Connection connection = open_connection(process);
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Reaped, not a zombie: the pid is free.
  EXPECT_TRUE(process_gone(pid));
}

TEST(VirtiofsdProcessTest, DestructorKillsOneThatIgnoresSigterm) {
  if (auto why = not_root()) GTEST_SKIP() << *why;
  const TempDir share;
  const std::string ready = share.file("ready");
  const std::string script =
      write_script(share, "trap '' TERM\ntouch " + ready + "\nexec sleep 60");
  pid_t pid = -1;
  const auto start = std::chrono::steady_clock::now();
  {
    Virtiofsd process = Virtiofsd::start(options_for(share.path(), false, script));
    pid = process.pid();
    // SIGTERM must come after the trap is set, or the shell dies of it at once.
    const auto deadline = start + std::chrono::seconds(10);
    while (!std::filesystem::exists(ready) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(ready));
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, Virtiofsd::kStopGrace);
  EXPECT_TRUE(process_gone(pid));
}

TEST(VirtiofsdProcessTest, MovedFromOneLeavesTheProcessToTheNewOwner) {
  if (auto why = virtiofsd_unavailable()) GTEST_SKIP() << *why;
  const TempDir share;
  std::optional<Virtiofsd> first(Virtiofsd::start(options_for(share.path())));
  const pid_t pid = first->pid();
  Virtiofsd second(std::move(*first));
  EXPECT_EQ(second.pid(), pid);
  first.reset();
  ASSERT_EQ(::kill(pid, 0), 0) << "the moved-from one stopped it";
  EXPECT_NE(open_connection(second).features & virtio::kFeatureVersion1, 0U);
}

}  // namespace
}  // namespace vmm::devices
