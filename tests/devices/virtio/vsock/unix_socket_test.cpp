#include "devices/virtio/vsock/unix_socket.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "base/util/error.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices::virtio::vsock {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// A socket file nobody listens on, as a crashed program leaves it.
void make_stale_socket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
}

std::string error_of(const std::string& path) {
  try {
    listen_unix(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(VsockUnixSocketTest, ListensAndAcceptsAConnection) {
  TempDir dir;
  const std::string path = dir.file("v.sock");
  UniqueFd listener = listen_unix(path);
  UniqueFd client = connect_unix(path);
  ASSERT_TRUE(client.valid()) << std::strerror(errno);
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
  // Both ends are non-blocking and close-on-exec.
  EXPECT_NE(fcntl(listener.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(client.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(listener.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(client.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(VsockUnixSocketTest, ReplacesAStaleSocketFile) {
  TempDir dir;
  const std::string path = dir.file("v.sock");
  make_stale_socket(path);
  UniqueFd listener = listen_unix(path);
  EXPECT_TRUE(connect_unix(path).valid());
}

TEST(VsockUnixSocketTest, RefusesALiveSocketAndOtherFiles) {
  TempDir dir;
  const std::string path = dir.file("v.sock");
  UniqueFd live = listen_unix(path);
  EXPECT_EQ(error_of(path), path + ": in use");

  const std::string file = dir.file("file");
  std::ofstream(file) << "data";
  EXPECT_EQ(error_of(file), file + ": exists and is not a socket");
  std::ifstream kept(file);
  std::string content;
  kept >> content;
  EXPECT_EQ(content, "data");

  EXPECT_THAT(error_of(std::string(200, 'x')), HasSubstr("not a usable Unix socket path"));
  EXPECT_THAT(error_of(dir.file("missing/v.sock")), HasSubstr("No such file or directory"));
}

TEST(VsockUnixSocketTest, ConnectFailsWithErrnoWhenNothingListens) {
  TempDir dir;
  EXPECT_FALSE(connect_unix(dir.file("missing")).valid());
  EXPECT_EQ(errno, ENOENT);
  make_stale_socket(dir.file("stale"));
  EXPECT_FALSE(connect_unix(dir.file("stale")).valid());
  EXPECT_EQ(errno, ECONNREFUSED);
}

}  // namespace
}  // namespace vmm::devices::virtio::vsock
