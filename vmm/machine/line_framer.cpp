#include "vmm/machine/line_framer.hpp"

#include <utility>

namespace vmm {

bool LineFramer::feed(std::string_view bytes,
                      const std::function<void(std::string_view)>& on_line) {
  while (!overflowed_ && !bytes.empty()) {
    const size_t end = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, end);
    if (partial_.size() + piece.size() > max_line_bytes_) {
      overflowed_ = true;
      partial_ = std::string();  // frees it: the peer is refused, not buffered for
      break;
    }
    if (end == std::string_view::npos) {
      partial_.append(piece);
      break;
    }
    bytes.remove_prefix(end + 1);
    if (partial_.empty()) {
      on_line(piece);  // the common case: a whole line inside one read, not copied
    } else {
      partial_.append(piece);
      const std::string line = std::exchange(partial_, std::string());
      on_line(line);
    }
  }
  return !overflowed_;
}

}  // namespace vmm
