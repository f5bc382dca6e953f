#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "devices/backends/async_io.hpp"

// Requests, buffers and a batch runner for the tests of AsyncIo engines.
namespace vmm::devices::testing {

inline IoRequest read_request(uint64_t offset, std::vector<iovec> buffers, uint64_t cookie) {
  return {IoRequest::Op::kRead, offset, 0, std::move(buffers), cookie};
}

inline IoRequest write_request(uint64_t offset, std::vector<iovec> buffers, uint64_t cookie) {
  return {IoRequest::Op::kWrite, offset, 0, std::move(buffers), cookie};
}

inline iovec buffer(std::vector<uint8_t>& bytes) {
  return {bytes.data(), bytes.size()};
}

inline std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> bytes(size);
  std::mt19937 random(seed);
  for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
  return bytes;
}

// Reaps until `count` requests have completed, waiting on completion_fd() as the event loop
// would. Returns the results by cookie.
inline std::map<uint64_t, int64_t> reap_all(AsyncIo& io, size_t count) {
  std::map<uint64_t, int64_t> results;
  while (results.size() < count) {
    pollfd pfd{io.completion_fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 10000) != 1) {
      ADD_FAILURE() << "completion_fd not readable after 10 s, " << results.size() << " of "
                    << count << " done";
      break;
    }
    io.reap([&](const IoCompletion& c) {
      EXPECT_TRUE(results.emplace(c.cookie, c.result).second) << "cookie " << c.cookie << " twice";
    });
  }
  EXPECT_EQ(io.in_flight(), 0u);
  return results;
}

// Submits `requests` as one batch and reaps them all.
inline std::map<uint64_t, int64_t> run(AsyncIo& io, std::vector<IoRequest> requests) {
  const size_t count = requests.size();
  for (IoRequest& request : requests) io.submit(std::move(request));
  io.flush_submissions();
  return reap_all(io, count);
}

}  // namespace vmm::devices::testing
