#include "devices/backends/async_io.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/backends/io_requests.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using Engine = AsyncIo::Engine;
using testing::buffer;
using testing::pattern;
using testing::read_request;
using testing::reap_all;
using testing::run;
using testing::write_request;

constexpr size_t kFileSize = 1 << 20;
constexpr size_t kBlock = 4096;
constexpr unsigned kDepth = 64;

class AsyncIoTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    path_ = dir_.file("disk.img");
    fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd_);
    ASSERT_EQ(::ftruncate(fd_.get(), kFileSize), 0);
    io_ = create(fd_.get());
  }

  // An engine of the test's kind; skips the test when this host refuses io_uring.
  std::unique_ptr<AsyncIo> create(int fd) {
    try {
      return AsyncIo::create(fd, kDepth, GetParam());
    } catch (const Error& e) {
      if (GetParam() != Engine::kIoUring) throw;
      skip_reason_ = std::string("io_uring unavailable here: ") + e.what();
      return nullptr;
    }
  }

  std::vector<uint8_t> file_contents() const {
    std::vector<uint8_t> bytes(kFileSize);
    EXPECT_EQ(::pread(fd_.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(kFileSize));
    return bytes;
  }

  testing::TempDir dir_;
  std::string path_;
  UniqueFd fd_;
  std::string skip_reason_;
  std::unique_ptr<AsyncIo> io_;
};

#define SKIP_IF_UNAVAILABLE() \
  if (!io_) GTEST_SKIP() << skip_reason_

TEST_P(AsyncIoTest, NamesItsEngine) {
  SKIP_IF_UNAVAILABLE();
  EXPECT_EQ(io_->name(), GetParam() == Engine::kIoUring ? "io_uring" : "thread pool");
}

TEST_P(AsyncIoTest, WritesThenReadsBackThroughSeveralBuffers) {
  SKIP_IF_UNAVAILABLE();
  const std::vector<uint8_t> data = pattern(8192, 1);
  std::vector<uint8_t> a(data.begin(), data.begin() + 100);
  std::vector<uint8_t> b(data.begin() + 100, data.begin() + 4100);
  std::vector<uint8_t> c(data.begin() + 4100, data.end());
  auto results = run(*io_, {write_request(4096, {buffer(a), buffer(b), buffer(c)}, 7)});
  EXPECT_THAT(results, ::testing::ElementsAre(::testing::Pair(7, 8192)));

  std::vector<uint8_t> first(5000), second(3192);
  results = run(*io_, {read_request(4096, {buffer(first), buffer(second)}, 8)});
  EXPECT_THAT(results, ::testing::ElementsAre(::testing::Pair(8, 8192)));
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(first, data);

  const std::vector<uint8_t> file = file_contents();
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 4096));
}

TEST_P(AsyncIoTest, ManyRequestsInFlight) {
  SKIP_IF_UNAVAILABLE();
  // kDepth distinct blocks in random order, each written with its own pattern in one batch.
  std::vector<size_t> blocks(kFileSize / kBlock);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(42));
  blocks.resize(kDepth);

  std::vector<uint8_t> expected(kFileSize, 0);
  std::vector<std::vector<uint8_t>> data(kDepth);
  std::vector<IoRequest> writes;
  for (unsigned i = 0; i < kDepth; ++i) {
    data[i] = pattern(kBlock, 100 + i);
    std::copy(data[i].begin(), data[i].end(), expected.begin() + blocks[i] * kBlock);
    writes.push_back(write_request(blocks[i] * kBlock, {buffer(data[i])}, i));
  }
  std::map<uint64_t, int64_t> results = run(*io_, std::move(writes));
  ASSERT_EQ(results.size(), kDepth);
  for (const auto& [cookie, result] : results) EXPECT_EQ(result, kBlock) << "write " << cookie;
  EXPECT_EQ(file_contents(), expected);

  std::vector<std::vector<uint8_t>> read_back(kDepth, std::vector<uint8_t>(kBlock));
  std::vector<IoRequest> reads;
  for (unsigned i = 0; i < kDepth; ++i) {
    reads.push_back(read_request(blocks[i] * kBlock, {buffer(read_back[i])}, i));
  }
  results = run(*io_, std::move(reads));
  ASSERT_EQ(results.size(), kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    EXPECT_EQ(results[i], kBlock);
    EXPECT_EQ(read_back[i], data[i]) << "block " << blocks[i];
  }
}

TEST_P(AsyncIoTest, MoreThanDepthRequestsIsRefused) {
  SKIP_IF_UNAVAILABLE();
  std::vector<std::vector<uint8_t>> bytes(kDepth + 1, std::vector<uint8_t>(512));
  for (unsigned i = 0; i < kDepth; ++i) io_->submit(read_request(0, {buffer(bytes[i])}, i));
  EXPECT_THROW(io_->submit(read_request(0, {buffer(bytes[kDepth])}, kDepth)), Error);
  EXPECT_EQ(io_->in_flight(), kDepth);
  // The refused request left no trace: exactly kDepth complete, before `bytes` goes away.
  size_t completed = 0;
  io_->wait_all([&](const IoCompletion& c) {
    EXPECT_LT(c.cookie, kDepth);
    ++completed;
  });
  EXPECT_EQ(completed, kDepth);
}

TEST_P(AsyncIoTest, ShortReadAtTheEndIsReportedAsSuch) {
  SKIP_IF_UNAVAILABLE();
  std::vector<uint8_t> bytes(2 * kBlock);
  const auto results = run(*io_, {read_request(kFileSize - kBlock, {buffer(bytes)}, 1)});
  EXPECT_THAT(results, ::testing::ElementsAre(::testing::Pair(1, kBlock)));
}

TEST_P(AsyncIoTest, FlushSucceeds) {
  SKIP_IF_UNAVAILABLE();
  std::vector<uint8_t> bytes = pattern(kBlock, 3);
  IoRequest flush{IoRequest::Op::kFlush, 0, 0, {}, 2};
  const auto results = run(*io_, {write_request(0, {buffer(bytes)}, 1)});
  EXPECT_THAT(run(*io_, {std::move(flush)}), ::testing::ElementsAre(::testing::Pair(2, 0)));
  EXPECT_THAT(results, ::testing::ElementsAre(::testing::Pair(1, kBlock)));
}

TEST_P(AsyncIoTest, PunchHoleAndZeroRangeReadBackAsZeros) {
  SKIP_IF_UNAVAILABLE();
  std::vector<uint8_t> ones(64 * 1024, 0xab);
  ASSERT_THAT(run(*io_, {write_request(0, {buffer(ones)}, 1)}),
              ::testing::ElementsAre(::testing::Pair(1, ones.size())));

  const auto results = run(*io_, {IoRequest{IoRequest::Op::kPunchHole, 4096, 8192, {}, 2},
                                  IoRequest{IoRequest::Op::kZeroRange, 20000, 10000, {}, 3}});
  for (const auto& [cookie, result] : results) {
    if (result == -EOPNOTSUPP) GTEST_SKIP() << "the temp dir's file system cannot punch holes";
    EXPECT_EQ(result, 0) << "request " << cookie << ": "
                         << std::strerror(static_cast<int>(-result));
  }

  std::vector<uint8_t> expected = ones;
  std::fill(expected.begin() + 4096, expected.begin() + 4096 + 8192, 0);
  std::fill(expected.begin() + 20000, expected.begin() + 20000 + 10000, 0);
  std::vector<uint8_t> read_back(ones.size());
  ASSERT_THAT(run(*io_, {read_request(0, {buffer(read_back)}, 4)}),
              ::testing::ElementsAre(::testing::Pair(4, ones.size())));
  EXPECT_EQ(read_back, expected);
  struct stat st {};
  ASSERT_EQ(::fstat(fd_.get(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kFileSize);  // KEEP_SIZE
}

TEST_P(AsyncIoTest, ErrorsAreNegativeErrno) {
  SKIP_IF_UNAVAILABLE();
  UniqueFd read_only(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only);
  std::unique_ptr<AsyncIo> io = create(read_only.get());
  ASSERT_TRUE(io);
  std::vector<uint8_t> bytes(kBlock);
  EXPECT_THAT(run(*io, {write_request(0, {buffer(bytes)}, 1), read_request(0, {buffer(bytes)}, 2)}),
              ::testing::ElementsAre(::testing::Pair(1, -EBADF), ::testing::Pair(2, kBlock)));
}

// A wrapping engine (OverlayIo) sends some requests to another file it named at creation, and
// answers some with no I/O.
TEST_P(AsyncIoTest, ARequestMayNameAnotherFileOrDoNothing) {
  SKIP_IF_UNAVAILABLE();
  const std::string other_path = dir_.file("other.img");
  UniqueFd other(::open(other_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other);
  const int other_fd = other.get();
  std::unique_ptr<AsyncIo> io =
      AsyncIo::create(fd_.get(), kDepth, GetParam(), {}, std::span<const int>(&other_fd, 1));
  std::vector<uint8_t> data = pattern(kBlock, 5);
  IoRequest write = write_request(0, {buffer(data)}, 1);
  write.fd = other_fd;
  IoRequest nop{IoRequest::Op::kNop, 0, 0, {}, 2};
  EXPECT_THAT(run(*io, {std::move(write), std::move(nop)}),
              ::testing::ElementsAre(::testing::Pair(1, kBlock), ::testing::Pair(2, 0)));
  std::vector<uint8_t> read_back(kBlock);
  EXPECT_EQ(::pread(other.get(), read_back.data(), kBlock, 0), static_cast<ssize_t>(kBlock));
  EXPECT_EQ(read_back, data);
  EXPECT_EQ(file_contents(), std::vector<uint8_t>(kFileSize, 0));  // the engine's own: untouched
}

TEST_P(AsyncIoTest, CompletionFdSignalsFinishedWork) {
  SKIP_IF_UNAVAILABLE();
  pollfd pfd{io_->completion_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  std::vector<uint8_t> bytes(kBlock);
  io_->submit(read_request(0, {buffer(bytes)}, 5));
  io_->flush_submissions();
  EXPECT_EQ(io_->in_flight(), 1u);
  ASSERT_EQ(::poll(&pfd, 1, 10000), 1);
  EXPECT_TRUE(pfd.revents & POLLIN);
  std::vector<IoCompletion> completions;
  EXPECT_EQ(io_->reap([&](const IoCompletion& c) { completions.push_back(c); }), 1u);
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].cookie, 5u);
  EXPECT_EQ(completions[0].result, static_cast<int64_t>(kBlock));
  EXPECT_EQ(io_->in_flight(), 0u);
  // Reaping resets it.
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
}

TEST_P(AsyncIoTest, WaitAllDrainsEverythingSubmitted) {
  SKIP_IF_UNAVAILABLE();
  std::vector<std::vector<uint8_t>> data(kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    data[i] = pattern(kBlock, 200 + i);
    io_->submit(write_request(i * kBlock, {buffer(data[i])}, i));
    // Half of them are never flushed: wait_all must start those too.
    if (i == kDepth / 2) io_->flush_submissions();
  }
  std::vector<uint64_t> cookies;
  io_->wait_all([&](const IoCompletion& c) {
    EXPECT_EQ(c.result, static_cast<int64_t>(kBlock));
    cookies.push_back(c.cookie);
  });
  EXPECT_EQ(io_->in_flight(), 0u);
  std::sort(cookies.begin(), cookies.end());
  std::vector<uint64_t> all(kDepth);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(cookies, all);
  const std::vector<uint8_t> file = file_contents();
  for (unsigned i = 0; i < kDepth; ++i) {
    EXPECT_TRUE(std::equal(data[i].begin(), data[i].end(), file.begin() + i * kBlock)) << i;
  }
  EXPECT_EQ(io_->reap([](const IoCompletion&) { ADD_FAILURE() << "completed twice"; }), 0u);
}

// A device reset: everything in flight is cancelled as far as the engine can, and each request
// still completes exactly once, with its result or -ECANCELED; a cancelled write leaves its block
// alone, a finished one wrote it whole. The engine then works as before.
TEST_P(AsyncIoTest, CancelAllCompletesEachRequestOnceCancelledOrDone) {
  SKIP_IF_UNAVAILABLE();
  std::vector<std::vector<uint8_t>> data(kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    data[i] = pattern(kBlock, 400 + i);
    io_->submit(write_request(i * kBlock, {buffer(data[i])}, i));
    // Some started, some only queued: both kinds must be handled.
    if (i == kDepth / 2) io_->flush_submissions();
  }
  io_->cancel_all();
  const std::map<uint64_t, int64_t> results = reap_all(*io_, kDepth);
  ASSERT_EQ(results.size(), kDepth);
  const std::vector<uint8_t> file = file_contents();
  for (unsigned i = 0; i < kDepth; ++i) {
    const int64_t result = results.at(i);
    ASSERT_TRUE(result == static_cast<int64_t>(kBlock) || result == -ECANCELED)
        << i << ": " << result;
    const bool written = std::equal(data[i].begin(), data[i].end(), file.begin() + i * kBlock);
    EXPECT_EQ(written, result == static_cast<int64_t>(kBlock)) << i;
  }
  // Still a working engine.
  const auto after = run(*io_, {write_request(0, {buffer(data[0])}, 99)});
  EXPECT_EQ(after.at(99), static_cast<int64_t>(kBlock));
}

TEST_P(AsyncIoTest, DestructorWaitsForRequestsInFlight) {
  SKIP_IF_UNAVAILABLE();
  // Declared before the engine is destroyed and checked after: the writes must have landed.
  std::vector<std::vector<uint8_t>> data(kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    data[i] = pattern(kBlock, 300 + i);
    io_->submit(write_request(i * kBlock, {buffer(data[i])}, i));
    if (i == kDepth / 2) io_->flush_submissions();
  }
  io_.reset();
  const std::vector<uint8_t> file = file_contents();
  for (unsigned i = 0; i < kDepth; ++i) {
    EXPECT_TRUE(std::equal(data[i].begin(), data[i].end(), file.begin() + i * kBlock)) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, AsyncIoTest,
                         ::testing::Values(Engine::kIoUring, Engine::kThreadPool),
                         [](const ::testing::TestParamInfo<Engine>& info) {
                           return info.param == Engine::kIoUring ? "IoUring" : "ThreadPool";
                         });

TEST(AsyncIoCreateTest, AutoPicksAWorkingEngine) {
  testing::TempDir dir;
  const std::string path = dir.file("disk.img");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd);
  std::unique_ptr<AsyncIo> io = AsyncIo::create(fd.get(), 4);
  EXPECT_THAT(io->name(), ::testing::AnyOf("io_uring", "thread pool"));
  std::vector<uint8_t> bytes = pattern(512, 9);
  io->submit(write_request(0, {buffer(bytes)}, 1));
  int64_t result = 0;
  io->wait_all([&](const IoCompletion& c) { result = c.result; });
  EXPECT_EQ(result, 512);
}

TEST(AsyncIoCreateTest, EveryThreadPoolWorkerRunsTheStartHookFirst) {
  std::mutex mutex;
  std::set<std::thread::id> started;
  auto io = AsyncIo::create(-1, kDepth, Engine::kThreadPool, [&] {
    std::lock_guard lock(mutex);
    started.insert(std::this_thread::get_id());
  });
  std::lock_guard lock(mutex);
  EXPECT_EQ(started.size(), 4u);  // ThreadPoolIo::kMaxThreads, all before create() returned
  EXPECT_EQ(started.count(std::this_thread::get_id()), 0u);
}

TEST(AsyncIoCreateTest, AFailingStartHookFailsCreate) {
  try {
    AsyncIo::create(-1, 2, Engine::kThreadPool, [] { throw Error("no filter for you"); });
    FAIL() << "create() succeeded";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "thread pool I/O: starting a worker: no filter for you");
  }
}

TEST(AsyncIoCreateTest, ZeroDepthIsRefused) {
  EXPECT_THROW(AsyncIo::create(-1, 0, AsyncIo::Engine::kThreadPool), Error);
}

}  // namespace
}  // namespace vmm::devices
