#include "devices/backends/io_uring_io.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/backends/io_requests.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using testing::buffer;
using testing::pattern;
using testing::read_request;
using testing::run;
using testing::write_request;

constexpr size_t kBlock = 4096;
constexpr unsigned kDepth = 8;
// Not a slot index of the engine's, whose completions the tests take themselves.
constexpr uint64_t kProbe = 0xfeed;

// What code that took over vmm would try on the engine's live ring: each entry is prepared by
// the test and submitted straight to the ring, bypassing the engine.
class IoUringRestrictionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("disk.img");
    fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd_);
    ASSERT_EQ(::ftruncate(fd_.get(), 1 << 20), 0);
    try {
      io_ = std::make_unique<IoUringIo>(fd_.get(), kDepth);
    } catch (const Error& e) {
      GTEST_SKIP() << "io_uring unavailable here: " << e.what();
    }
  }

  // Submits one entry made by `prepare` to the engine's ring and returns its completion's result.
  int submit_raw(const std::function<void(io_uring_sqe*)>& prepare) {
    io_uring& ring = io_->ring_for_tests();
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) {
      ADD_FAILURE() << "no submission entry free";
      return 0;
    }
    prepare(sqe);
    io_uring_sqe_set_data64(sqe, kProbe);
    EXPECT_EQ(io_uring_submit(&ring), 1);
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
    if (cqe == nullptr) return 0;
    EXPECT_EQ(io_uring_cqe_get_data64(cqe), kProbe);
    const int result = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return result;
  }

  vmm::devices::testing::TempDir dir_;
  std::string path_;
  UniqueFd fd_;
  std::unique_ptr<IoUringIo> io_;
};

TEST_F(IoUringRestrictionsTest, OpeningAFileIsRefused) {
  // Even with the fixed-file flag the restrictions require: the opcode itself is not allowed.
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) {
              io_uring_prep_openat(sqe, AT_FDCWD, path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
              io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
            }),
            -EACCES);
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) {
              io_uring_prep_openat(sqe, AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC, 0);
            }),
            -EACCES);
}

TEST_F(IoUringRestrictionsTest, SocketsAreRefused) {
  EXPECT_EQ(submit_raw([](io_uring_sqe* sqe) {
              io_uring_prep_socket(sqe, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
              io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
            }),
            -EACCES);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(80);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) {
              io_uring_prep_connect(sqe, 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
              io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
            }),
            -EACCES);
}

TEST_F(IoUringRestrictionsTest, AnAllowedOpOnAPlainFdIsRefused) {
  // A read is allowed, but only on a registered file: a plain fd (even the image's) is not.
  std::vector<uint8_t> bytes(kBlock);
  iovec vec = buffer(bytes);
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) { io_uring_prep_readv(sqe, fd_.get(), &vec, 1, 0); }),
            -EACCES);
  // So is a flag beyond the required one (here: linking to a next entry).
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) {
              io_uring_prep_readv(sqe, 0, &vec, 1, 0);
              io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | IOSQE_IO_LINK);
            }),
            -EACCES);
  // The registered image itself reads.
  EXPECT_EQ(submit_raw([&](io_uring_sqe* sqe) {
              io_uring_prep_readv(sqe, 0, &vec, 1, 0);
              io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
            }),
            static_cast<int>(kBlock));
}

TEST_F(IoUringRestrictionsTest, NoFileCanBeRegisteredAfterwards) {
  UniqueFd other(::open(dir_.file("other.img").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other);
  const int fds[] = {other.get()};
  io_uring& ring = io_->ring_for_tests();
  EXPECT_EQ(io_uring_register_files_update(&ring, 0, fds, 1), -EACCES);
  EXPECT_EQ(io_uring_unregister_files(&ring), -EACCES);
  EXPECT_EQ(io_uring_register_eventfd(&ring, other.get()), -EACCES);
}

TEST_F(IoUringRestrictionsTest, TheEngineStillWorksOnItsFiles) {
  std::vector<uint8_t> data = pattern(kBlock, 7);
  std::vector<uint8_t> read_back(kBlock);
  EXPECT_THAT(run(*io_, {write_request(kBlock, {buffer(data)}, 1)}),
              ::testing::ElementsAre(::testing::Pair(1, kBlock)));
  EXPECT_THAT(run(*io_, {read_request(kBlock, {buffer(read_back)}, 2),
                         IoRequest{IoRequest::Op::kFlush, 0, 0, {}, 3},
                         IoRequest{IoRequest::Op::kNop, 0, 0, {}, 4}}),
              ::testing::ElementsAre(::testing::Pair(2, kBlock), ::testing::Pair(3, 0),
                                     ::testing::Pair(4, 0)));
  EXPECT_EQ(read_back, data);
}

TEST_F(IoUringRestrictionsTest, ARequestOnAFileTheEngineWasNotGivenFailsWithEbadf) {
  UniqueFd other(::open(dir_.file("other.img").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other);
  std::vector<uint8_t> data = pattern(kBlock, 8);
  IoRequest write = write_request(0, {buffer(data)}, 1);
  write.fd = other.get();
  EXPECT_THAT(run(*io_, {std::move(write)}), ::testing::ElementsAre(::testing::Pair(1, -EBADF)));
  struct stat st {};
  ASSERT_EQ(::fstat(other.get(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

}  // namespace
}  // namespace vmm::devices
