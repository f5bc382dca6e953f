#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "devices/platform_events.hpp"
#include "vmm/machine.hpp"
#include "vmm/util/event_fd.hpp"

namespace vmm {

// Records why the machine stops. The first reason wins; later ones (a vCPU noticing the stop, a
// reboot that follows a pvpanic report) are ignored. Signals `fd()` when set, from any thread.
class ExitLatch final : public devices::PlatformEvents {
 public:
  void guest_request(devices::GuestRequest request, int code) override;
  void set(MachineExit exit);
  void fail(std::string message);

  std::optional<MachineExit> result() const;
  int fd() const { return event_.fd(); }

 private:
  mutable std::mutex mutex_;
  std::optional<MachineExit> exit_;
  EventFd event_;
};

}  // namespace vmm
