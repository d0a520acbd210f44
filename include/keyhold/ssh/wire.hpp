#pragma once
// The SSH wire encoding (RFC 4251 section 5): uint32, string, mpint.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace keyhold::ssh {

class WireWriter {
 public:
  WireWriter& uint32(std::uint32_t value);
  WireWriter& string(std::span<const std::uint8_t> value);
  WireWriter& string(std::string_view value);
  // A big-endian unsigned magnitude as an mpint: leading zeros dropped, a zero
  // byte added when the top bit is set (RFC 4251 section 5).
  WireWriter& mpint(std::span<const std::uint8_t> magnitude);
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

}  // namespace keyhold::ssh
