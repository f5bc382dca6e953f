#pragma once

namespace vmm::devices {

// What a guest can ask of the platform through a device (i8042 reset, ACPI sleep control,
// debug-exit port, pvpanic). The machine decides what each means for the VMM process.
enum class GuestRequest {
  kPowerOff,   // ACPI S5
  kReboot,     // i8042 pulse-reset, ACPI reset register, triple fault
  kPanic,      // pvpanic "guest panicked"
  kDebugExit,  // test guest wrote its exit status to the debug-exit port
};

class PlatformEvents {
 public:
  virtual ~PlatformEvents() = default;
  // `code` is meaningful for kDebugExit only (0..255). Safe to call from any thread, any number of
  // times; the first request wins (a panicking Linux guest reports through pvpanic before it
  // resets, so its panic is the reason recorded).
  virtual void guest_request(GuestRequest request, int code = 0) = 0;
};

}  // namespace vmm::devices
