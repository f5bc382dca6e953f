#pragma once

#include <string>

#include "base/util/unique_fd.hpp"
#include "devices/backends/packet_backend.hpp"

namespace vmm::devices {

// A tap network interface, opened through /dev/net/tun as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with
// a 12-byte vnet header (virtio_net_hdr_v1), non-blocking and close-on-exec.
class Tap final : public PacketBackend {
 public:
  // Attaches to the tap `name` (at most IFNAMSIZ-1 bytes). A tap that does not exist is created
  // when the process may (CAP_NET_ADMIN; created() says so, and it disappears when vmm exits);
  // otherwise, as for a tap in use by another process, an interface that is not a tap, or one
  // whose owner is another user, throws vmm::Error with one line that names the tap and, where it
  // helps, the command that fixes it ("NAME: no such tap device (create it: ip tuntap add NAME
  // mode tap user USER)").
  static Tap open(const std::string& name);

  int fd() const override { return fd_.get(); }
  const std::string& name() const override { return name_; }
  void set_offload(unsigned tun_flags) override;
  bool created() const { return created_; }

 private:
  Tap(UniqueFd fd, std::string name, bool created)
      : fd_(std::move(fd)), name_(std::move(name)), created_(created) {}

  UniqueFd fd_;
  std::string name_;
  bool created_;
};

}  // namespace vmm::devices
