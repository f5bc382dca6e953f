// virtio-vsock: the fuzzer plays the guest driver (transmit packets with fuzzer-chosen header
// fields and payloads, receive buffers, raw descriptors, notifications, resets) and the host
// programs (connecting to the device's Unix socket with a CONNECT line or garbage, sending,
// reading, half-closing and closing; listeners at "<uds>_<port>" that accept what the guest
// connects to). The used rings must hold only entries the driver made available, and once the
// device has run out of work every transmit chain must be back.
//
// The sockets live in one temporary directory per process, removed at exit.
//
// Input: a u32 of negotiated features (masked by what the device offers; VERSION_1 always), then
// operations (see Op).

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "devices/virtio/vsock.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::VirtioVsock;
namespace virtio = devices::virtio;
namespace vsock = devices::virtio::vsock;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDataArea = 0x10000;  // to the end of RAM, above the queues (stacked_queues)
constexpr uint64_t kTxPacketArea = kDataArea;            // 0x200 per descriptor index
constexpr uint64_t kRxBufferArea = kDataArea + 0x40000;  // 0x1000 per buffer, 64 of them
constexpr uint64_t kGuestCid = 3;
constexpr uint32_t kGuestPortBase = 1000;
constexpr uint32_t kListenPorts[] = {1024, 1025};
constexpr size_t kMaxClients = 16;

enum Op : uint8_t {
  kTxPacket,   // see tx_packet()
  kRxBuffers,  // u8 count, u16 len: device-writable buffers on the receive queue, notified
  kDesc,       // u8 queue, u8 index, u32 address choice, u32 len, u16 flags, u16 next
  kData,       // u32 offset into the data area, u8 n, n bytes
  kPublish,    // u8 queue, u16 head
  kNotify,     // u16 queue index
  kRunLoop,    // one round of the event loop
  kConnect,    // u8 mode, then u32 port (CONNECT line) or u8 n, n bytes (anything)
  kSend,       // u8 client, u8 n, n bytes
  kReceive,    // u8 client
  kClose,      // u8 client, u8 how: bit 0 shutdown(SHUT_WR) only
  kAccept,     // the host listeners accept the guest's connections
  kReset,      // the driver resets the device and sets it up again
  kOpCount,
};

// The temporary directory for the sockets of the whole run, removed at exit.
class SocketDir {
 public:
  SocketDir() {
    path_ = "/tmp/vmm-fuzz-vsock-XXXXXX";
    if (::mkdtemp(path_.data()) == nullptr) throw_errno("mkdtemp");
  }
  ~SocketDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  SocketDir(const SocketDir&) = delete;
  SocketDir& operator=(const SocketDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string& socket_dir() {
  static const SocketDir dir;
  return dir.path();
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

UniqueFd unix_socket() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  return fd;
}

UniqueFd listen_at(const std::string& path) {
  ::unlink(path.c_str());
  UniqueFd fd = unix_socket();
  const sockaddr_un addr = unix_address(path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    throw_errno("listen " + path);
  }
  return fd;
}

class Harness {
 public:
  explicit Harness(Reader& in)
      : in_(in),
        ram_(kRamSize),
        uds_path_(socket_dir() + "/v.sock"),
        guest_(ram_.memory(), stacked_queues(3, VirtioVsock::kQueueSize)) {
    const uint32_t wanted = in.u32();
    device_.emplace(loop_, kGuestCid, uds_path_, "vsock-fuzz");
    for (uint32_t port : kListenPorts) {
      const std::string path = uds_path_ + "_" + std::to_string(port);
      listeners_.push_back(listen_at(path));
      listener_paths_.push_back(path);
    }
    guest_.activate(*device_, (wanted | virtio::kFeatureVersion1) & device_->features());
  }

  ~Harness() {
    for (const std::string& path : listener_paths_) ::unlink(path.c_str());
  }

  void run() {
    while (!in_.empty()) {
      step();
      guest_.check_used();
    }
    device_->notify(1);
    run_until_idle(loop_);
    guest_.check_used();
    guest_.check_all_returned(1, "transmit chains");
    device_.reset();
  }

 private:
  // u8 descriptor index, u8 source port choice, u8 destination port choice, u16 op, u32 flags,
  // u32 buf_alloc, u32 fwd_cnt, u8 mangle (bit 0 raw cids follow: u64 src, u64 dst; bit 1 raw
  // len follows: u32; bit 2 raw type follows: u16; bit 3 header and payload in one descriptor),
  // u8 n, n payload bytes.
  void tx_packet() {
    const uint8_t index = in_.u8();
    vsock::Header header{};
    header.src_cid = kGuestCid;
    header.dst_cid = vsock::kHostCid;
    header.src_port = kGuestPortBase + in_.u8() % 4;
    const uint8_t dst = in_.u8();
    header.dst_port = dst & 0x80 ? VirtioVsock::kFirstHostPort + dst % 4
                                 : kListenPorts[dst % std::size(kListenPorts)];
    header.type = vsock::kTypeStream;
    header.op = in_.u16();
    header.flags = in_.u32();
    header.buf_alloc = in_.u32();
    header.fwd_cnt = in_.u32();
    const uint8_t mangle = in_.u8();
    if (mangle & 1) {
      header.src_cid = in_.u64();
      header.dst_cid = in_.u64();
    }
    const bool raw_len = (mangle & 2) != 0;
    const uint32_t len = raw_len ? in_.u32() : 0;
    if (mangle & 4) header.type = in_.u16();
    const auto payload = in_.bytes(in_.u8());
    header.len = raw_len ? len : static_cast<uint32_t>(payload.size());

    const uint64_t gpa = kTxPacketArea + 0x200ull * index;
    ram_.memory().write_obj(gpa, header);
    ram_.write_clamped(gpa + vsock::kHeaderSize, payload);
    QueueDriver& tx = guest_.driver(1);
    if ((mangle & 8) || payload.empty()) {
      tx.desc(index, gpa, static_cast<uint32_t>(vsock::kHeaderSize + payload.size()), 0, 0);
    } else {
      const auto next = static_cast<uint16_t>(static_cast<uint8_t>(index + 1));
      tx.desc(index, gpa, vsock::kHeaderSize, virtio::kVirtqDescFNext, next);
      tx.desc(next, gpa + vsock::kHeaderSize, static_cast<uint32_t>(payload.size()), 0, 0);
    }
    tx.publish(index);
    device_->notify(1);
  }

  void rx_buffers() {
    const uint8_t count = in_.u8() % 32;
    const uint32_t len = in_.u16() % 0x1001;
    QueueDriver& rx = guest_.driver(0);
    for (uint8_t i = 0; i < count; ++i) {
      const uint16_t index = next_rx_++;
      rx.desc(index, kRxBufferArea + 0x1000ull * (index % 64), len, virtio::kVirtqDescFWrite, 0);
      rx.publish(index & (VirtioVsock::kQueueSize - 1));
    }
    device_->notify(0);
  }

  UniqueFd* client() {
    const uint8_t which = in_.u8();
    return clients_.empty() ? nullptr : &clients_[which % clients_.size()];
  }

  void step() {
    switch (in_.u8() % kOpCount) {
      case kTxPacket: tx_packet(); break;
      case kRxBuffers: rx_buffers(); break;
      case kDesc: write_desc(in_, guest_.driver(in_.u8() % 3), kDataArea, kRamSize); break;
      case kData: write_data(in_, ram_, kDataArea); break;
      case kPublish: {
        QueueDriver& d = guest_.driver(in_.u8() % 3);
        d.publish(in_.u16());
        break;
      }
      case kNotify: device_->notify(in_.u16()); break;
      case kRunLoop: loop_.run_once(0); break;
      case kConnect: {
        const uint8_t mode = in_.u8();
        std::string line;
        if (mode & 1) {
          const auto bytes = in_.bytes(in_.u8());
          line.assign(bytes.begin(), bytes.end());
        } else {
          line = "CONNECT " + std::to_string(in_.u32() % 4096) + "\n";
        }
        if (clients_.size() >= kMaxClients) break;
        UniqueFd fd = unix_socket();
        const sockaddr_un addr = unix_address(uds_path_);
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
          break;  // the device's backlog is full: a host program would retry
        }
        ::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        clients_.push_back(std::move(fd));
        break;
      }
      case kSend: {
        UniqueFd* fd = client();
        const auto bytes = in_.bytes(in_.u8());
        if (fd) ::send(fd->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        break;
      }
      case kReceive: {
        UniqueFd* fd = client();
        uint8_t buffer[4096];
        if (fd) ::recv(fd->get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        break;
      }
      case kClose: {
        const uint8_t which = in_.u8();
        const uint8_t how = in_.u8();
        if (clients_.empty()) break;
        const size_t index = which % clients_.size();
        if (how & 1) {
          ::shutdown(clients_[index].get(), SHUT_WR);
        } else {
          clients_.erase(clients_.begin() + static_cast<std::ptrdiff_t>(index));
        }
        break;
      }
      case kAccept:
        for (const UniqueFd& listener : listeners_) {
          while (clients_.size() < kMaxClients) {
            UniqueFd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd) break;
            clients_.push_back(std::move(fd));
          }
        }
        break;
      case kReset: guest_.reset(*device_, loop_); break;
    }
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  const std::string uds_path_;
  GuestDriver guest_;
  std::vector<UniqueFd> listeners_;
  std::vector<std::string> listener_paths_;
  std::vector<UniqueFd> clients_;
  uint16_t next_rx_ = 0;
  std::optional<VirtioVsock> device_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
