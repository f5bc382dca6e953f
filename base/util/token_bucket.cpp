#include "base/util/token_bucket.hpp"

#include <algorithm>
#include <limits>

namespace vmm {

namespace {

using Uint128 = unsigned __int128;
constexpr uint64_t kNanosPerSecond = 1'000'000'000;

uint64_t clamp_tokens(uint64_t tokens) {
  return std::clamp<uint64_t>(tokens, 1, TokenBucket::kMaxTokens);
}

// How long `rate` tokens a second take to add `tokens` to a bucket that has `fraction` billionths
// of a token already, rounded up, saturated at the clock's largest duration.
TokenBucket::Clock::duration time_for(uint64_t tokens, uint64_t fraction, uint64_t rate) {
  const Uint128 nanos = (Uint128{tokens} * kNanosPerSecond - fraction + rate - 1) / rate;
  constexpr auto kMax = static_cast<Uint128>(std::numeric_limits<int64_t>::max());
  return std::chrono::duration_cast<TokenBucket::Clock::duration>(
      std::chrono::nanoseconds(static_cast<int64_t>(std::min(nanos, kMax))));
}

}  // namespace

TokenBucket::TokenBucket(uint64_t rate, uint64_t burst, Clock::time_point now)
    : rate_(clamp_tokens(rate)),
      burst_(clamp_tokens(burst)),
      balance_(static_cast<int64_t>(burst_)),
      refilled_(now) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now <= refilled_) return;
  // Unsigned: a full debt below an empty bucket is up to 2^63 tokens.
  const uint64_t missing = burst_ - static_cast<uint64_t>(balance_);
  const auto elapsed = static_cast<uint64_t>(std::chrono::nanoseconds(now - refilled_).count());
  refilled_ = now;
  // In billionths of a token, so that many short refills lose nothing.
  const Uint128 credit = Uint128{elapsed} * rate_ + fraction_;
  const Uint128 earned = credit / kNanosPerSecond;
  if (earned >= missing) {
    balance_ = static_cast<int64_t>(burst_);
    fraction_ = 0;
    return;
  }
  balance_ += static_cast<int64_t>(earned);  // earned < missing: stays below the burst
  fraction_ = static_cast<uint64_t>(credit % kNanosPerSecond);
}

int64_t TokenBucket::needed(uint64_t cost) const {
  return static_cast<int64_t>(std::min(std::min(cost, kMaxTokens), burst_));
}

bool TokenBucket::ready(uint64_t cost, Clock::time_point now) {
  refill(now);
  return balance_ >= needed(cost);
}

void TokenBucket::take(uint64_t cost, Clock::time_point now) {
  refill(now);
  // balance_ and the cost are within +-2^62: no overflow; the debt is kept within 2^62 too.
  balance_ = std::max(balance_ - static_cast<int64_t>(std::min(cost, kMaxTokens)),
                      -static_cast<int64_t>(kMaxTokens));
}

TokenBucket::Clock::duration TokenBucket::wait_for(uint64_t cost, Clock::time_point now) {
  refill(now);
  const int64_t want = needed(cost);
  if (balance_ >= want) return Clock::duration::zero();
  const uint64_t deficit = static_cast<uint64_t>(want) - static_cast<uint64_t>(balance_);
  return time_for(deficit, fraction_, rate_);
}

void TokenBucket::set(uint64_t rate, uint64_t burst, Clock::time_point now) {
  refill(now);
  rate_ = clamp_tokens(rate);
  burst_ = clamp_tokens(burst);
  balance_ = std::min(balance_, static_cast<int64_t>(burst_));
}

int64_t TokenBucket::balance(Clock::time_point now) {
  refill(now);
  return balance_;
}

namespace {

// Sets `bucket` to `rate` and `burst` (0: one second's worth), or removes it for a rate of 0.
void configure(std::optional<TokenBucket>& bucket, uint64_t rate, uint64_t burst,
               TokenBucket::Clock::time_point now) {
  if (rate == 0) {
    bucket.reset();
    return;
  }
  if (burst == 0) burst = rate;
  if (bucket) {
    bucket->set(rate, burst, now);
  } else {
    bucket.emplace(rate, burst, now);
  }
}

}  // namespace

RateLimiter::RateLimiter(const RateLimit& limit, Clock::time_point now) {
  set(limit, now);
}

void RateLimiter::set(const RateLimit& limit, Clock::time_point now) {
  limit_ = limit;
  configure(bytes_, limit.bytes_per_second, limit.bytes_burst, now);
  configure(ops_, limit.ops_per_second, limit.ops_burst, now);
}

bool RateLimiter::ready(uint64_t bytes, Clock::time_point now) {
  return (!bytes_ || bytes_->ready(bytes, now)) && (!ops_ || ops_->ready(1, now));
}

void RateLimiter::take(uint64_t bytes, Clock::time_point now) {
  if (bytes_) bytes_->take(bytes, now);
  if (ops_) ops_->take(1, now);
}

RateLimiter::Clock::duration RateLimiter::wait_for(uint64_t bytes, Clock::time_point now) {
  Clock::duration wait = Clock::duration::zero();
  if (bytes_) wait = bytes_->wait_for(bytes, now);
  if (ops_) wait = std::max(wait, ops_->wait_for(1, now));
  return wait;
}

}  // namespace vmm
