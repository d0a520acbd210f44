#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {

WireWriter& WireWriter::uint32(std::uint32_t value) {
  bytes_.push_back(static_cast<std::uint8_t>(value >> 24));
  bytes_.push_back(static_cast<std::uint8_t>(value >> 16));
  bytes_.push_back(static_cast<std::uint8_t>(value >> 8));
  bytes_.push_back(static_cast<std::uint8_t>(value));
  return *this;
}

WireWriter& WireWriter::string(std::span<const std::uint8_t> value) {
  uint32(static_cast<std::uint32_t>(value.size()));
  bytes_.insert(bytes_.end(), value.begin(), value.end());
  return *this;
}

WireWriter& WireWriter::string(std::string_view value) {
  return string(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(value.data()), value.size()));
}

WireWriter& WireWriter::mpint(std::span<const std::uint8_t> magnitude) {
  std::size_t first = 0;
  while (first < magnitude.size() && magnitude[first] == 0) ++first;
  std::span<const std::uint8_t> digits = magnitude.subspan(first);
  bool pad = !digits.empty() && (digits[0] & 0x80) != 0;
  uint32(static_cast<std::uint32_t>(digits.size() + (pad ? 1 : 0)));
  if (pad) bytes_.push_back(0);
  bytes_.insert(bytes_.end(), digits.begin(), digits.end());
  return *this;
}

}  // namespace keyhold::ssh
