#include "base/event/event_loop.hpp"

#include <gtest/gtest.h>
#include <sys/epoll.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/util/event_fd.hpp"

namespace vmm {
namespace {

TEST(EventLoop, DispatchesToTheHandlerOfTheReadyFd) {
  EventLoop loop;
  EventFd a, b;
  int a_calls = 0, b_calls = 0;
  loop.add(a.fd(), EPOLLIN, [&](uint32_t) {
    a.consume();
    ++a_calls;
  });
  loop.add(b.fd(), EPOLLIN, [&](uint32_t) {
    b.consume();
    ++b_calls;
  });
  b.signal();
  EXPECT_TRUE(loop.run_once(1000));
  EXPECT_EQ(a_calls, 0);
  EXPECT_EQ(b_calls, 1);
}

TEST(EventLoop, CountsDispatchesAndALevelTriggeredReadyFdIsDispatchedEveryRound) {
  EventLoop loop;
  EventFd ready;
  loop.add(ready.fd(), EPOLLIN, [](uint32_t) {});  // never consumes: stays ready
  EXPECT_EQ(loop.dispatched(), 0u);
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), 0u);
  ready.signal();
  loop.run_once(0);
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), 2u);
  loop.modify(ready.fd(), 0);  // no longer watched: an idle round
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), 2u);
}

TEST(EventLoop, HandlerCanRemoveItselfAndStopTheLoop) {
  EventLoop loop;
  EventFd a;
  int calls = 0;
  loop.add(a.fd(), EPOLLIN, [&](uint32_t) {
    ++calls;
    loop.remove(a.fd());
    loop.stop();
  });
  a.signal();
  loop.run();
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(loop.run_once(0));
}

// Two ready fds in one round: whichever handler runs first closes the other fd and registers a new,
// idle eventfd, which gets the closed one's number. The closed fd's event, already reported by
// epoll in this round, must not reach the new registration.
TEST(EventLoop, AnEventForAClosedRegistrationNeverReachesANewOneOnTheSameFdNumber) {
  EventLoop loop;
  auto a = std::make_unique<EventFd>();
  auto b = std::make_unique<EventFd>();
  std::unique_ptr<EventFd> replacement;
  int replacement_calls = 0, first_calls = 0;
  const auto swap_out = [&](std::unique_ptr<EventFd>& self, std::unique_ptr<EventFd>& other) {
    return [&](uint32_t) {
      ++first_calls;
      self->consume();
      if (replacement) return;
      const int old_fd = other->fd();
      loop.remove(old_fd);
      other.reset();
      replacement = std::make_unique<EventFd>();
      ASSERT_EQ(replacement->fd(), old_fd) << "the kernel did not reuse the fd number";
      loop.add(replacement->fd(), EPOLLIN, [&](uint32_t) { ++replacement_calls; });
    };
  };
  loop.add(a->fd(), EPOLLIN, swap_out(a, b));
  loop.add(b->fd(), EPOLLIN, swap_out(b, a));
  a->signal();
  b->signal();
  EXPECT_TRUE(loop.run_once(1000));
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(replacement_calls, 0);
  // The new registration itself works.
  replacement->signal();
  EXPECT_TRUE(loop.run_once(1000));
  EXPECT_EQ(replacement_calls, 1);
}

TEST(EventLoop, StopFromAnotherThreadWakesTheLoop) {
  EventLoop loop;
  std::thread stopper([&] { loop.stop(); });
  loop.run();  // returns only because of stop()
  stopper.join();
  SUCCEED();
}

TEST(EventLoop, PostedWorkRunsOnTheLoopThreadInOrder) {
  EventLoop loop;
  std::vector<int> order;
  std::thread::id ran_on;
  std::thread poster([&] {
    loop.post([&] { order.push_back(1); });
    loop.post([&] {
      order.push_back(2);
      ran_on = std::this_thread::get_id();
      // Posted from the loop's thread: runs in a later round, not in this one.
      loop.post([&] { order.push_back(3); });
    });
  });
  poster.join();
  EXPECT_TRUE(loop.run_once(1000));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(loop.run_once(1000));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoop, KeepsTheLongestHandlerCallAndItsFd) {
  EventLoop loop;
  EXPECT_EQ(loop.longest_handler().fd, -1);
  EventFd quick, slow;
  loop.add(quick.fd(), EPOLLIN, [&](uint32_t) { quick.consume(); });
  loop.add(slow.fd(), EPOLLIN, [&](uint32_t) {
    slow.consume();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  slow.signal();
  loop.run_once(1000);
  quick.signal();
  loop.run_once(1000);
  // Read from another thread, as the control socket does.
  EventLoop::LongestHandler longest;
  std::thread([&] { longest = loop.longest_handler(); }).join();
  EXPECT_GE(longest.duration, std::chrono::milliseconds(20));
  EXPECT_EQ(longest.fd, slow.fd());
}

TEST(EventFd, CountsAccumulateUntilConsumed) {
  EventFd fd;
  EXPECT_EQ(fd.consume(), 0u);
  fd.signal(2);
  fd.signal(3);
  EXPECT_EQ(fd.consume(), 5u);
  EXPECT_EQ(fd.consume(), 0u);
}

}  // namespace
}  // namespace vmm
