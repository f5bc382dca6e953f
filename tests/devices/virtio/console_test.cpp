#include "devices/virtio/console.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/temp_dir.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using testing::Driver;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 16 << 20;
constexpr uint64_t kData = 0x100000;  // queue q's buffer slot s at kData + q MiB + s * kSlotSize
constexpr uint64_t kSlotSize = 0x1000;
constexpr uint16_t kSlots = VirtioConsole::kQueueSize;
constexpr uint64_t kFeatures =
    kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc | kConsoleFeatureMultiport;
constexpr uint16_t kControlRx = 2;
constexpr uint16_t kControlTx = 3;

uint16_t rx_index(uint32_t port) {
  return static_cast<uint16_t>(port == 0 ? 0 : 2 * port + 2);
}
uint16_t tx_index(uint32_t port) {
  return static_cast<uint16_t>(rx_index(port) + 1);
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Ports as the tests need them (designated initializers would have to name every field).
ConsolePort named(std::string name) {
  ConsolePort port;
  port.name = std::move(name);
  return port;
}
ConsolePort console_port() {
  ConsolePort port;
  port.console = true;
  return port;
}
ConsolePort output_to(int fd) {
  ConsolePort port;
  port.output_fd = fd;
  return port;
}
ConsolePort input_from(int fd, std::string name = "") {
  ConsolePort port = named(std::move(name));
  port.input_fd = fd;
  return port;
}

// A pipe; the ends as asked (the device's end must be non-blocking).
struct Pipe {
  explicit Pipe(int read_flags = O_NONBLOCK, int write_flags = O_NONBLOCK) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
    ::fcntl(fds[0], F_SETFL, read_flags);
    ::fcntl(fds[1], F_SETFL, write_flags);
  }
  // What the pipe holds now.
  std::string drain() const {
    std::string bytes;
    char buffer[65536];
    ssize_t n;
    while ((n = ::read(read_end.get(), buffer, sizeof(buffer))) > 0) {
      bytes.append(buffer, static_cast<size_t>(n));
    }
    return bytes;
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

struct ControlMessage {
  uint32_t id;
  uint16_t event;
  uint16_t value;
  std::string payload;
  bool operator==(const ControlMessage&) const = default;
};
void PrintTo(const ControlMessage& m, std::ostream* os) {
  *os << "{" << m.id << ", " << m.event << ", " << m.value << ", \"" << m.payload << "\"}";
}

// One queue as the guest driver sees it, with a buffer slot per descriptor.
struct GuestQueue {
  GuestQueue(const GuestMemory& memory, uint16_t index)
      : index(index),
        queue(memory, VirtioConsole::kQueueSize),
        driver(memory, testing::queue_config(index, VirtioConsole::kQueueSize)) {}
  uint64_t slot(uint16_t descriptor) const {
    return kData + index * 0x100000ull + (descriptor % kSlots) * kSlotSize;
  }
  uint16_t in_flight() const { return static_cast<uint16_t>(published - driver.used_idx()); }

  uint16_t index;
  SplitQueue queue;
  Driver driver;
  uint16_t published = 0;  // chains made available
  uint16_t seen = 0;       // used entries looked at
};

class VirtioConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The EPIPE test writes to a pipe without a reader; vmm's loop thread blocks SIGPIPE.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &saved_sigpipe_);
  }
  void TearDown() override {
    device.reset();
    ::sigaction(SIGPIPE, &saved_sigpipe_, nullptr);
  }

  void create(std::vector<ConsolePort> ports) {
    const size_t count = ports.size();
    device.emplace(memory, loop, std::move(ports), "console0");
    device->on_guest_open = [this](uint32_t port, bool open) {
      guest_open_calls.emplace_back(port, open);
    };
    for (size_t q = 0; q < 2 * (count + 1); ++q) {
      queues.push_back(std::make_unique<GuestQueue>(memory, static_cast<uint16_t>(q)));
    }
  }

  void activate() {
    std::vector<SplitQueue*> split;
    for (auto& q : queues) {
      testing::activate_queue(q->queue, q->driver, q->index, /*event_idx=*/true);
      q->published = 0;
      q->seen = 0;
      split.push_back(&q->queue);
    }
    device->activate(Activation{kFeatures, split, &interrupt});
  }

  // Makes `count` device-writable buffers of `size` bytes available on queue `q` and notifies.
  void post(uint16_t q, int count, uint32_t size = 4096) {
    GuestQueue& queue = *queues[q];
    for (int i = 0; i < count; ++i) {
      const uint16_t descriptor = queue.published % kSlots;
      queue.driver.desc(descriptor, queue.slot(descriptor), size, kVirtqDescFWrite);
      queue.driver.publish(descriptor);
      ++queue.published;
    }
    device->notify(q);
  }

  // Makes `bytes` available as one device-readable chain on queue `q`; notifies if asked.
  void publish_readable(uint16_t q, std::span<const uint8_t> bytes, bool notify = true) {
    GuestQueue& queue = *queues[q];
    const uint16_t descriptor = queue.published % kSlots;
    ASSERT_LE(bytes.size(), kSlotSize);
    ASSERT_TRUE(memory.write(queue.slot(descriptor), bytes));
    queue.driver.desc(descriptor, queue.slot(descriptor), static_cast<uint32_t>(bytes.size()));
    queue.driver.publish(descriptor);
    ++queue.published;
    if (notify) device->notify(q);
  }

  void guest_control(uint32_t id, uint16_t event, uint16_t value) {
    const VirtioConsoleControl message{.id = id, .event = event, .value = value};
    publish_readable(kControlTx, {reinterpret_cast<const uint8_t*>(&message), sizeof(message)});
  }

  // The used entries of queue `q` since the last call: each buffer's bytes.
  std::vector<std::string> take_used(uint16_t q) {
    GuestQueue& queue = *queues[q];
    std::vector<std::string> buffers;
    while (queue.seen != queue.driver.used_idx()) {
      const VirtqUsedElem used = queue.driver.used(queue.seen++);
      std::string bytes(used.len, '\0');
      EXPECT_TRUE(memory.read(queue.slot(static_cast<uint16_t>(used.id)),
                              {reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()}));
      buffers.push_back(std::move(bytes));
    }
    return buffers;
  }
  std::string take_input(uint32_t port) {
    std::string all;
    for (const std::string& buffer : take_used(rx_index(port))) all += buffer;
    return all;
  }
  std::vector<ControlMessage> take_control() {
    std::vector<ControlMessage> messages;
    for (const std::string& buffer : take_used(kControlRx)) {
      VirtioConsoleControl header{};
      EXPECT_GE(buffer.size(), sizeof(header));
      std::memcpy(&header, buffer.data(), sizeof(header));
      messages.push_back({header.id, header.event, header.value, buffer.substr(sizeof(header))});
    }
    return messages;
  }

  void pump() {
    for (int i = 0; i < 8; ++i) loop.run_once(0);
  }

  // The guest driver's probe: DEVICE_READY, then PORT_READY for each port it was told of; the
  // control messages the device sent.
  std::vector<ControlMessage> handshake(uint32_t ports) {
    activate();
    post(kControlRx, 32);
    guest_control(0xffffffff, kConsoleDeviceReady, 1);
    for (uint32_t port = 0; port < ports; ++port) guest_control(port, kConsolePortReady, 1);
    pump();
    return take_control();
  }
  void open_port(uint32_t port) {
    guest_control(port, kConsolePortOpen, 1);
    pump();
  }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  EventLoop loop;
  testing::FakeDeviceInterrupt interrupt;
  std::vector<std::unique_ptr<GuestQueue>> queues;
  std::vector<std::pair<uint32_t, bool>> guest_open_calls;
  std::optional<VirtioConsole> device;

 private:
  struct sigaction saved_sigpipe_ {};
};

TEST_F(VirtioConsoleTest, OffersMultiportWithAQueuePairPerPortAndTheControlQueues) {
  create({ConsolePort{}, ConsolePort{}, ConsolePort{}});
  EXPECT_EQ(device->device_id(), 3u);
  EXPECT_EQ(device->features(), kFeatures);
  EXPECT_EQ(device->queue_max_sizes(), std::vector<uint16_t>(8, VirtioConsole::kQueueSize));
  uint8_t config[16];
  device->read_config(0, config);
  // cols, rows 0; max_nr_ports 3; emerg_wr 0; nothing past the end.
  EXPECT_THAT(config, ElementsAre(0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  uint8_t max_nr_ports[4];
  device->read_config(4, max_nr_ports);
  EXPECT_THAT(max_nr_ports, ElementsAre(3, 0, 0, 0));
}

TEST_F(VirtioConsoleTest, HandshakeAddsNamesAndOpensEachPort) {
  create({console_port(), named("vmm.stdout")});
  EXPECT_THAT(handshake(2), ElementsAre(ControlMessage{0, kConsoleDeviceAdd, 1, ""},
                                        ControlMessage{1, kConsoleDeviceAdd, 1, ""},
                                        ControlMessage{0, kConsoleConsolePort, 1, ""},
                                        ControlMessage{0, kConsolePortOpen, 1, ""},
                                        ControlMessage{1, kConsolePortName, 1, "vmm.stdout"},
                                        ControlMessage{1, kConsolePortOpen, 1, ""}));
  EXPECT_EQ(queues[kControlTx]->driver.used_idx(), 3);  // every control chain back
  EXPECT_GT(interrupt.used, 0);
  open_port(0);
  open_port(1);
  guest_control(1, kConsolePortOpen, 0);
  pump();
  EXPECT_THAT(guest_open_calls,
              ElementsAre(std::pair(0u, true), std::pair(1u, true), std::pair(1u, false)));
  EXPECT_EQ(device->counters().control_dropped, 0u);
  EXPECT_EQ(interrupt.needs_reset, 0);
}

TEST_F(VirtioConsoleTest, ControlMessagesWaitForTheGuestsBuffers) {
  create({named("a"), named("b")});
  activate();
  guest_control(0, kConsoleDeviceReady, 1);
  pump();
  EXPECT_TRUE(take_control().empty());
  post(kControlRx, 1);
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{0, kConsoleDeviceAdd, 1, ""}));
  post(kControlRx, 4);
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{1, kConsoleDeviceAdd, 1, ""}));
}

TEST_F(VirtioConsoleTest, HostileControlMessagesAreDropped) {
  create({named("a"), named("b")});
  activate();
  post(kControlRx, 32);
  guest_control(0, kConsolePortReady, 1);  // before DEVICE_READY: not added yet
  guest_control(0, kConsolePortOpen, 1);
  guest_control(0, kConsoleDeviceReady, 1);
  pump();
  EXPECT_EQ(take_control().size(), 2u);  // the DEVICE_ADDs
  const uint64_t before = device->counters().control_dropped;
  EXPECT_EQ(before, 2u);
  guest_control(0, kConsoleDeviceReady, 1);  // again
  guest_control(2, kConsolePortReady, 1);    // no such port
  guest_control(0xffffffff, kConsolePortOpen, 1);
  guest_control(1, kConsolePortOpen, 1);   // not ready yet
  guest_control(0, kConsolePortReady, 7);  // a bad value
  guest_control(0, kConsoleResize, 0);     // the device's event
  guest_control(0, kConsoleDeviceAdd, 1);
  guest_control(0, 0xffff, 1);
  const uint8_t short_message[4] = {0, 0, 0, 0};
  publish_readable(kControlTx, short_message);
  const uint8_t long_message[12] = {0, 0, 0, 0, kConsolePortReady, 0, 1, 0};
  publish_readable(kControlTx, long_message);
  pump();
  EXPECT_EQ(device->counters().control_dropped, before + 10);
  EXPECT_TRUE(take_control().empty());
  EXPECT_TRUE(guest_open_calls.empty());
  EXPECT_EQ(queues[kControlTx]->driver.used_idx(), queues[kControlTx]->published);
  EXPECT_EQ(interrupt.needs_reset, 0);
  // The device still works.
  guest_control(1, kConsolePortReady, 1);
  guest_control(1, kConsolePortReady, 1);  // twice
  pump();
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{1, kConsolePortName, 1, "b"},
                                          ControlMessage{1, kConsolePortOpen, 1, ""}));
  EXPECT_EQ(device->counters().control_dropped, before + 11);
  EXPECT_EQ(device->metrics().errors, before + 11);
}

TEST_F(VirtioConsoleTest, AControlBufferTooSmallIsReturnedEmptyAndAShortOneCutsTheName) {
  create({named("a-long-name")});
  activate();
  guest_control(0, kConsoleDeviceReady, 1);
  post(kControlRx, 1, 4);
  EXPECT_THAT(take_used(kControlRx), ElementsAre(""));
  post(kControlRx, 1);
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{0, kConsoleDeviceAdd, 1, ""}));
  guest_control(0, kConsolePortReady, 1);
  post(kControlRx, 1, 12);
  post(kControlRx, 1);
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{0, kConsolePortName, 1, "a-lo"},
                                          ControlMessage{0, kConsolePortOpen, 1, ""}));
}

TEST_F(VirtioConsoleTest, GuestWritesReachTheOutputWholeAndInOrderThroughASlowReader) {
  Pipe pipe(0, O_NONBLOCK);  // the reader blocks; the device's end does not
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, 4096);
  create({output_to(pipe.write_end.get())});
  handshake(1);

  constexpr size_t kTotal = 10 << 20;
  std::string sent(kTotal, '\0');
  uint32_t state = 12345;
  for (char& c : sent) {
    state = state * 1103515245 + 12345;
    c = static_cast<char>(state >> 24);
  }
  std::string received;
  std::thread reader([&] {
    char buffer[3000];
    ssize_t n;
    int reads = 0;
    while ((n = ::read(pipe.read_end.get(), buffer, sizeof(buffer))) > 0) {
      received.append(buffer, static_cast<size_t>(n));
      // Slow: the device meets a full pipe again and again.
      if (++reads % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  GuestQueue& tx = *queues[tx_index(0)];
  size_t offset = 0;
  bool back_pressure = false;
  size_t most_buffered = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((offset < kTotal || tx.in_flight() != 0 || device->output_buffered(0) != 0) &&
         std::chrono::steady_clock::now() < give_up) {
    bool published = false;
    while (offset < kTotal && tx.in_flight() < kSlots) {
      const size_t chunk = std::min<size_t>(kSlotSize, kTotal - offset);
      publish_readable(tx_index(0), as_bytes(sent).subspan(offset, chunk), /*notify=*/false);
      offset += chunk;
      published = true;
    }
    if (published) device->notify(tx_index(0));
    back_pressure = back_pressure || tx.in_flight() == kSlots;
    most_buffered = std::max(most_buffered, device->output_buffered(0));
    loop.run_once(10);
  }
  EXPECT_EQ(tx.in_flight(), 0);
  EXPECT_EQ(device->output_buffered(0), 0u);
  pipe.write_end.reset();
  device.reset();
  reader.join();
  EXPECT_TRUE(back_pressure) << "the guest's queue never filled up";
  EXPECT_LE(most_buffered, VirtioConsole::kOutputBufferBytes);
  ASSERT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == sent) << "the bytes arrived changed or out of order";
}

TEST_F(VirtioConsoleTest, AFullOutputStopsTheTransmitQueueAndMemoryStaysBounded) {
  Pipe pipe;
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, 4096);
  create({output_to(pipe.write_end.get())});
  handshake(1);
  const std::string chunk(kSlotSize, 'x');
  for (int i = 0; i < kSlots; ++i) publish_readable(tx_index(0), as_bytes(chunk));
  pump();
  // The pipe and the device's buffer hold what they can; the rest waits in the guest.
  EXPECT_LE(device->output_buffered(0), VirtioConsole::kOutputBufferBytes);
  GuestQueue& tx = *queues[tx_index(0)];
  EXPECT_GT(tx.in_flight(), kSlots / 2);
  const uint64_t idle = loop.dispatched();
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), idle) << "the device spins on a full output";
  // The reader comes back: everything flows.
  std::string received;
  for (int round = 0; round < 1000 && received.size() < kSlots * kSlotSize; ++round) {
    received += pipe.drain();
    loop.run_once(1);
  }
  EXPECT_EQ(received, std::string(kSlots * kSlotSize, 'x'));
  EXPECT_EQ(tx.in_flight(), 0);
}

TEST_F(VirtioConsoleTest, TwoPortsStayApart) {
  Pipe first;
  std::string second;
  ConsolePort to_callback = named("b");
  to_callback.output_callback = [&](std::span<const uint8_t> bytes) {
    second.append(bytes.begin(), bytes.end());
  };
  create({output_to(first.write_end.get()), std::move(to_callback)});
  handshake(2);
  for (int i = 0; i < 10; ++i) {
    publish_readable(tx_index(0), as_bytes("one" + std::to_string(i) + ","));
    publish_readable(tx_index(1), as_bytes("two" + std::to_string(i) + ","));
  }
  pump();
  EXPECT_EQ(first.drain(), "one0,one1,one2,one3,one4,one5,one6,one7,one8,one9,");
  EXPECT_EQ(second, "two0,two1,two2,two3,two4,two5,two6,two7,two8,two9,");
  EXPECT_EQ(device->metrics().requests, 20u);
  EXPECT_EQ(device->metrics().bytes, 100u);
}

TEST_F(VirtioConsoleTest, InputReachesTheGuestOnlyOnceItOpenedThePort) {
  Pipe input;
  create({input_from(input.read_end.get(), "in")});
  handshake(1);
  post(rx_index(0), 3, 8);
  ASSERT_EQ(::write(input.write_end.get(), "hello, guest", 12), 12);
  pump();
  EXPECT_EQ(take_input(0), "") << "read before the guest opened the port";
  open_port(0);
  pump();
  EXPECT_EQ(take_input(0), "hello, guest");  // in 8-byte buffers
  EXPECT_TRUE(device->send(0, as_bytes("sent")));
  EXPECT_EQ(take_input(0), "sent");
  // No buffers left: nothing is read, and nothing spins.
  ASSERT_EQ(::write(input.write_end.get(), "later", 5), 5);
  pump();
  EXPECT_EQ(take_input(0), "");
  const uint64_t idle = loop.dispatched();
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), idle);
  post(rx_index(0), 1);
  pump();
  EXPECT_EQ(take_input(0), "later");
  // "hello, guest" in two buffers, "sent", "later".
  EXPECT_EQ(device->metrics().requests, 4u);
  EXPECT_EQ(device->metrics().bytes, 21u);
}

TEST_F(VirtioConsoleTest, SendIsBoundedAndKnowsItsPorts) {
  create({ConsolePort{}});
  EXPECT_FALSE(device->send(1, as_bytes("x")));
  const std::vector<uint8_t> full(VirtioConsole::kInputBufferBytes, 'a');
  EXPECT_TRUE(device->send(0, full));
  EXPECT_FALSE(device->send(0, as_bytes("x")));
  handshake(1);
  open_port(0);
  post(rx_index(0), 16);  // 64 KiB
  EXPECT_EQ(take_input(0), std::string(VirtioConsole::kInputBufferBytes, 'a'));
  EXPECT_TRUE(device->send(0, as_bytes("x")));
}

TEST_F(VirtioConsoleTest, EndOfInputClosesThePortForTheGuest) {
  Pipe input;
  create({input_from(input.read_end.get(), "in")});
  handshake(1);
  open_port(0);
  post(rx_index(0), 4);
  ASSERT_EQ(::write(input.write_end.get(), "last words", 10), 10);
  input.write_end.reset();
  pump();
  EXPECT_EQ(take_input(0), "last words");
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{0, kConsolePortOpen, 0, ""}));
  const uint64_t idle = loop.dispatched();
  loop.run_once(0);
  EXPECT_EQ(loop.dispatched(), idle) << "the hung-up pipe is still watched";
}

TEST_F(VirtioConsoleTest, FlushOutputWritesWhatTheDeviceAndTheQueueStillHold) {
  Pipe pipe;
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, 4096);
  create({output_to(pipe.write_end.get())});
  handshake(1);
  std::string sent;
  for (int i = 0; i < 40; ++i) {
    const std::string chunk(kSlotSize, static_cast<char>('a' + i % 26));
    publish_readable(tx_index(0), as_bytes(chunk));
    sent += chunk;
  }
  pump();
  GuestQueue& tx = *queues[tx_index(0)];
  EXPECT_GT(tx.in_flight(), 0);
  // More the device was never told of (the guest wrote, then powered off).
  for (int i = 0; i < 8; ++i) {
    const std::string chunk(100, static_cast<char>('0' + i));
    publish_readable(tx_index(0), as_bytes(chunk), /*notify=*/false);
    sent += chunk;
  }
  std::string received;
  std::atomic<bool> flushed{false};
  std::thread reader([&] {
    while (!flushed.load()) {
      received += pipe.drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    received += pipe.drain();
  });
  device->flush_output();
  flushed.store(true);
  reader.join();
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(tx.in_flight(), 0);
  EXPECT_EQ(device->output_buffered(0), 0u);
}

TEST_F(VirtioConsoleTest, FlushOutputGivesUpOnAReaderThatStoppedReading) {
  Pipe pipe;
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, 4096);
  create({output_to(pipe.write_end.get())});
  handshake(1);
  for (int i = 0; i < 40; ++i) {
    publish_readable(tx_index(0), as_bytes(std::string(kSlotSize, 'x')));
  }
  pump();
  ASSERT_GT(device->output_buffered(0), 0u);
  device->flush_output(std::chrono::milliseconds(20));  // returns: nobody reads the pipe
  EXPECT_GT(device->counters().output_discarded, 0u);
  EXPECT_EQ(device->output_buffered(0), 0u);
  EXPECT_EQ(pipe.drain().size(), 4096u);  // what the pipe took before it filled
}

TEST_F(VirtioConsoleTest, ABrokenOutputDiscardsAndTheGuestGoesOn) {
  Pipe pipe;
  create({output_to(pipe.write_end.get()), ConsolePort{}});
  handshake(2);
  pipe.read_end.reset();
  for (int i = 0; i < 4; ++i) publish_readable(tx_index(0), as_bytes("lost"));
  publish_readable(tx_index(1), as_bytes("nowhere"));
  pump();
  EXPECT_EQ(queues[tx_index(0)]->in_flight(), 0);
  EXPECT_EQ(queues[tx_index(1)]->in_flight(), 0);
  EXPECT_EQ(device->counters().output_discarded, 4u * 4 + 7);
  EXPECT_THAT(device->debug_state(), HasSubstr("output failed"));
  // An output-only port whose reader went away goes: the guest's next write to it fails, as a
  // write into a pipe without a reader would, instead of vanishing for ever.
  EXPECT_THAT(take_control(), ElementsAre(ControlMessage{0, kConsoleDeviceRemove, 1, ""}));
}

TEST_F(VirtioConsoleTest, ABrokenOutputOfAPortWithInputKeepsThePort) {
  Pipe output;
  Pipe input;
  ConsolePort port = output_to(output.write_end.get());
  port.input_fd = input.read_end.get();
  create({port});
  handshake(1);
  output.read_end.reset();
  publish_readable(tx_index(0), as_bytes("lost"));
  pump();
  EXPECT_EQ(device->counters().output_discarded, 4u);
  EXPECT_THAT(take_control(), ElementsAre());
}

TEST_F(VirtioConsoleTest, ResetClosesThePortsAndKeepsTheOutputTaken) {
  Pipe pipe;
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, 4096);
  create({output_to(pipe.write_end.get())});
  handshake(1);
  open_port(0);
  const std::string chunk(kSlotSize, 'r');
  for (int i = 0; i < 4; ++i) publish_readable(tx_index(0), as_bytes(chunk));
  pump();
  const size_t taken = 4 * kSlotSize - queues[tx_index(0)]->in_flight() * kSlotSize;
  bool done = false;
  device->reset([&] { done = true; });
  EXPECT_TRUE(done);
  EXPECT_THAT(guest_open_calls, ElementsAre(std::pair(0u, true), std::pair(0u, false)));
  std::string received;
  for (int round = 0; round < 100 && received.size() < taken; ++round) {
    received += pipe.drain();
    loop.run_once(1);
  }
  EXPECT_EQ(received.size(), taken);
  // A new driver starts over.
  EXPECT_EQ(handshake(1).size(), 2u);
}

TEST_F(VirtioConsoleTest, RefusesASnapshot) {
  create({ConsolePort{}});
  EXPECT_THROW(device->quiesce(std::chrono::steady_clock::now()), Error);
}

TEST_F(VirtioConsoleTest, RefusesBadPorts) {
  const auto refused = [&](std::vector<ConsolePort> ports, const std::string& why) {
    try {
      VirtioConsole console(memory, loop, std::move(ports), "c");
      ADD_FAILURE() << "accepted; expected: " << why;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(why));
    }
  };
  refused({}, "0 ports");
  refused(std::vector<ConsolePort>(VirtioConsole::kMaxPorts + 1), "32 ports");
  refused({console_port(), console_port()}, "more than one console");
  refused({named(std::string(256, 'n'))}, "a name of 256 bytes");
  Pipe blocking(0, 0);
  refused({output_to(blocking.write_end.get())}, "blocking");
  Pipe pipe;
  ConsolePort both = output_to(pipe.write_end.get());
  both.output_callback = [](std::span<const uint8_t>) {};
  refused({both}, "both an output fd and an output callback");
  refused({input_from(pipe.read_end.get()), input_from(pipe.read_end.get())}, "port 1: fd");
  devices::testing::TempDir dir;
  const UniqueFd file(::open(dir.file("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  refused({input_from(file.get())}, "not a pipe, terminal or socket");
  refused({output_to(1000)}, "output fd 1000");
}

}  // namespace
}  // namespace vmm::devices::virtio
