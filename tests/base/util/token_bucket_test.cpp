#include "base/util/token_bucket.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>

namespace vmm {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

const Clock::time_point kStart{};

TEST(TokenBucket, StartsFullAndRefillsAtItsRate) {
  TokenBucket bucket(1000, 100, kStart);  // 1000 tokens/s: one a millisecond
  EXPECT_TRUE(bucket.ready(100, kStart));
  bucket.take(100, kStart);
  EXPECT_EQ(bucket.balance(kStart), 0);
  EXPECT_FALSE(bucket.ready(1, kStart));
  EXPECT_EQ(bucket.wait_for(1, kStart), 1ms);
  EXPECT_EQ(bucket.balance(kStart + 10ms), 10);
  EXPECT_EQ(bucket.wait_for(30, kStart + 10ms), 20ms);
  EXPECT_TRUE(bucket.ready(30, kStart + 30ms));
}

TEST(TokenBucket, NeverHoldsMoreThanItsBurst) {
  TokenBucket bucket(1000, 100, kStart);
  bucket.take(100, kStart);
  EXPECT_EQ(bucket.balance(kStart + 1h), 100);
  EXPECT_FALSE(bucket.ready(101, kStart + 1h) && bucket.balance(kStart + 1h) > 100);
}

TEST(TokenBucket, FractionalTokensAreNotLostAcrossManySmallRefills) {
  TokenBucket bucket(3, 10, kStart);  // one token every 333.33 ms
  bucket.take(10, kStart);
  Clock::time_point now = kStart;
  for (int i = 0; i < 100; ++i) bucket.balance(now += 10ms);  // 1 s in steps of 10 ms
  EXPECT_EQ(bucket.balance(now), 3);
}

TEST(TokenBucket, ACostLargerThanTheBurstGoesWhenFullAndLeavesADebt) {
  TokenBucket bucket(100, 10, kStart);
  bucket.take(5, kStart);
  EXPECT_FALSE(bucket.ready(50, kStart));  // not full: waits for a full bucket, not 50 tokens
  EXPECT_EQ(bucket.wait_for(50, kStart), 50ms);
  EXPECT_TRUE(bucket.ready(50, kStart + 50ms));
  bucket.take(50, kStart + 50ms);
  EXPECT_EQ(bucket.balance(kStart + 50ms), -40);
  // The debt is paid back before the next token: 41 tokens at 100/s.
  EXPECT_EQ(bucket.wait_for(1, kStart + 50ms), 410ms);
  EXPECT_FALSE(bucket.ready(1, kStart + 459ms));
  EXPECT_TRUE(bucket.ready(1, kStart + 460ms));
}

TEST(TokenBucket, HugeRatesBurstsAndCostsDoNotOverflow) {
  constexpr uint64_t kHuge = std::numeric_limits<uint64_t>::max();
  TokenBucket bucket(kHuge, kHuge, kStart);
  EXPECT_EQ(bucket.burst(), TokenBucket::kMaxTokens);
  EXPECT_TRUE(bucket.ready(kHuge, kStart));
  bucket.take(kHuge, kStart);
  bucket.take(kHuge, kStart);  // a debt is kept within bounds
  EXPECT_EQ(bucket.balance(kStart), -static_cast<int64_t>(TokenBucket::kMaxTokens));
  EXPECT_GT(bucket.wait_for(1, kStart), Clock::duration::zero());
  EXPECT_EQ(bucket.balance(kStart + std::chrono::hours(24 * 365 * 100)), int64_t{1} << 62);

  // A slow bucket with a huge debt: the wait saturates instead of wrapping.
  TokenBucket slow(1, kHuge, kStart);
  slow.take(kHuge, kStart);
  slow.take(kHuge, kStart);
  EXPECT_EQ(slow.wait_for(1, kStart), Clock::duration::max());
}

TEST(TokenBucket, ZeroRateOrBurstIsOne) {
  TokenBucket bucket(0, 0, kStart);
  EXPECT_EQ(bucket.rate(), 1u);
  EXPECT_EQ(bucket.burst(), 1u);
}

TEST(TokenBucket, ChangingTheRateKeepsWhatWasEarned) {
  TokenBucket bucket(1000, 1000, kStart);
  bucket.take(1000, kStart);
  bucket.set(10, 5, kStart + 3ms);  // 3 earned at the old rate, kept
  EXPECT_EQ(bucket.balance(kStart + 3ms), 3);
  EXPECT_EQ(bucket.wait_for(5, kStart + 3ms), 200ms);
  bucket.set(10'000, 100, kStart + 3ms);
  EXPECT_EQ(bucket.balance(kStart + 4ms), 13);
  // A smaller burst cuts the balance down to it.
  bucket.set(10'000, 2, kStart + 4ms);
  EXPECT_EQ(bucket.balance(kStart + 4ms), 2);
}

TEST(RateLimiter, UnlimitedAlwaysGoes) {
  RateLimiter limiter({}, kStart);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(limiter.ready(uint64_t{1} << 40, kStart));
    limiter.take(uint64_t{1} << 40, kStart);
  }
  EXPECT_EQ(limiter.wait_for(1, kStart), Clock::duration::zero());
}

TEST(RateLimiter, BothBucketsMustAllowAndTheLongerWaitCounts) {
  RateLimiter limiter(
      RateLimit{.bytes_per_second = 1000, .bytes_burst = 1000, .ops_per_second = 2, .ops_burst = 1},
      kStart);
  ASSERT_TRUE(limiter.ready(100, kStart));
  limiter.take(100, kStart);
  // Bytes left, but no op: the op bucket's 500 ms.
  EXPECT_FALSE(limiter.ready(100, kStart));
  EXPECT_EQ(limiter.wait_for(100, kStart), 500ms);
  limiter.take(900, kStart + 500ms);
  // An op at 1 s, but 2000 bytes (more than the burst) wait for a full bucket: 100 + 1300 bytes.
  EXPECT_FALSE(limiter.ready(2000, kStart + 1s));
  EXPECT_EQ(limiter.wait_for(2000, kStart + 1s), 400ms);
  EXPECT_FALSE(limiter.ready(2000, kStart + 1399ms));
  EXPECT_TRUE(limiter.ready(2000, kStart + 1400ms));
}

TEST(RateLimiter, ABurstOfZeroIsOneSecondsWorth) {
  RateLimiter limiter(RateLimit{.bytes_per_second = 4096}, kStart);
  EXPECT_TRUE(limiter.ready(4096, kStart));
  limiter.take(4096, kStart);
  EXPECT_EQ(limiter.wait_for(4096, kStart), 1s);
}

TEST(RateLimiter, ALiveChangeKeepsTheBalanceAndAddsOrRemovesBuckets) {
  RateLimiter limiter(RateLimit{.ops_per_second = 1, .ops_burst = 1}, kStart);
  limiter.take(0, kStart);
  EXPECT_EQ(limiter.wait_for(0, kStart), 1s);
  limiter.set(RateLimit{.ops_per_second = 10, .ops_burst = 1}, kStart);
  EXPECT_EQ(limiter.wait_for(0, kStart), 100ms);  // the empty bucket stays empty
  limiter.set(RateLimit{.bytes_per_second = 10}, kStart);
  EXPECT_TRUE(limiter.ready(10, kStart));  // no op bucket; the new bytes bucket starts full
  limiter.set({}, kStart);
  EXPECT_EQ(limiter.limit(), RateLimit{});
  EXPECT_TRUE(limiter.ready(uint64_t{1} << 50, kStart));
}

}  // namespace
}  // namespace vmm
