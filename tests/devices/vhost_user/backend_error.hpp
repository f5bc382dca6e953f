#pragma once

#include <string>

#include "devices/vhost_user/message.hpp"

namespace vmm::devices::testing {

// Runs `call` and returns the message of the BackendError it throws ("no BackendError" if none).
std::string error_of(auto&& call) {
  try {
    call();
  } catch (const vhost_user::BackendError& error) {
    return error.what();
  }
  return "no BackendError";
}

}  // namespace vmm::devices::testing
