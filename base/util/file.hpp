#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmm {

// Reads a whole regular file; errors name the path and the reason ("<label> <path>: ...").
// `label` is how the user named the file, e.g. "--kernel".
std::vector<uint8_t> read_file(const std::string& path, const std::string& label,
                               uint64_t max_size = uint64_t{1} << 32);

}  // namespace vmm
