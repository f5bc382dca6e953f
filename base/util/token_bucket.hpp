#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace vmm {

// A token bucket: `rate` tokens a second flow into a bucket that holds at most `burst`; a request
// takes its cost out. No I/O and no clock of its own: the caller passes the time, so tests are
// exact.
//
// A cost larger than the burst never starves: it goes once the bucket is full and leaves a debt
// (a negative balance) that the refill pays back before anything else goes. So nothing a device
// must not drop is refused for ever, and the long-run rate is still `rate`. (Firecracker refuses
// such a request outright; a block device cannot.)
//
// Overflow-safe: rates, bursts and costs are clamped to kMaxTokens, the refill is computed in
// 128 bits (exactly: fractions of a token carry over), and waits saturate at the clock's largest
// duration.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kMaxTokens = uint64_t{1} << 62;

  // Full at `now`. `rate` and `burst` are at least 1 (0 is taken as 1).
  TokenBucket(uint64_t rate, uint64_t burst, Clock::time_point now);

  // Whether `cost` tokens may be taken at `now`: the bucket holds them, or it is full.
  bool ready(uint64_t cost, Clock::time_point now);
  // Takes `cost` tokens, whatever the balance (after ready(), or to charge what went anyway).
  void take(uint64_t cost, Clock::time_point now);
  // How long from `now` until ready(cost) holds; zero if it holds now.
  Clock::duration wait_for(uint64_t cost, Clock::time_point now);
  // A new rate and burst from `now` on: the tokens earned so far at the old rate are kept, up to
  // the new burst, and so is a debt.
  void set(uint64_t rate, uint64_t burst, Clock::time_point now);

  uint64_t rate() const { return rate_; }
  uint64_t burst() const { return burst_; }
  // The tokens in the bucket at `now`; negative while a large request's debt is paid back.
  int64_t balance(Clock::time_point now);

 private:
  void refill(Clock::time_point now);
  // What ready() asks of the balance: the cost, or a full bucket for a larger one.
  int64_t needed(uint64_t cost) const;

  uint64_t rate_;
  uint64_t burst_;
  int64_t balance_;
  uint64_t fraction_ = 0;       // billionths of the next token, earned already
  Clock::time_point refilled_;  // the balance and fraction_ are exact at this instant
};

// A device's limit: bytes and operations (requests, packets) a second, each with a burst. A
// rate of 0 leaves that side unlimited; a burst of 0 is one second's worth of the rate.
struct RateLimit {
  uint64_t bytes_per_second = 0;
  uint64_t bytes_burst = 0;
  uint64_t ops_per_second = 0;
  uint64_t ops_burst = 0;

  bool unlimited() const { return bytes_per_second == 0 && ops_per_second == 0; }
  bool operator==(const RateLimit&) const = default;
};

// A bytes bucket and an ops bucket (either absent when unlimited): an operation of N bytes goes
// when both allow it and takes N bytes and one op.
class RateLimiter {
 public:
  using Clock = TokenBucket::Clock;

  explicit RateLimiter(const RateLimit& limit = {}, Clock::time_point now = Clock::now());

  // A live change: a bucket that stays keeps its balance (up to its new burst), a new one starts
  // full.
  void set(const RateLimit& limit, Clock::time_point now);
  const RateLimit& limit() const { return limit_; }

  bool ready(uint64_t bytes, Clock::time_point now);
  void take(uint64_t bytes, Clock::time_point now);
  // The longer of the two buckets' waits.
  Clock::duration wait_for(uint64_t bytes, Clock::time_point now);

 private:
  RateLimit limit_;
  std::optional<TokenBucket> bytes_;
  std::optional<TokenBucket> ops_;
};

}  // namespace vmm
