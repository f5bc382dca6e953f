#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace vmm {

// Splits a byte stream into '\n'-terminated lines, holding at most `max_line_bytes` of an
// unfinished one: a peer that never sends '\n' cannot make it buffer more than that.
class LineFramer {
 public:
  explicit LineFramer(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

  // Hands each line that `bytes` completes to `on_line` (without its '\n'), in order. Returns
  // false once a line, finished or not, is longer than the bound; from then on it frames nothing.
  bool feed(std::string_view bytes, const std::function<void(std::string_view)>& on_line);

  // Bytes of the unfinished line held so far (never more than the bound).
  size_t buffered() const { return partial_.size(); }
  bool overflowed() const { return overflowed_; }

 private:
  size_t max_line_bytes_;
  std::string partial_;
  bool overflowed_ = false;
};

}  // namespace vmm
