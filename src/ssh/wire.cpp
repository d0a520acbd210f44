#include "keyhold/ssh/wire.hpp"

#include <algorithm>

#include "keyhold/core/error.hpp"

namespace keyhold::ssh {
namespace {

// RFC 4251 section 5: names in a name-list are non-empty US-ASCII without commas.
bool is_name_character(char c) noexcept { return c > 0x20 && c < 0x7f && c != ','; }

}  // namespace

WireWriter& WireWriter::byte(std::uint8_t value) {
  bytes_.push_back(value);
  return *this;
}

WireWriter& WireWriter::uint32(std::uint32_t value) {
  bytes_.push_back(static_cast<std::uint8_t>(value >> 24));
  bytes_.push_back(static_cast<std::uint8_t>(value >> 16));
  bytes_.push_back(static_cast<std::uint8_t>(value >> 8));
  bytes_.push_back(static_cast<std::uint8_t>(value));
  return *this;
}

WireWriter& WireWriter::uint64(std::uint64_t value) {
  uint32(static_cast<std::uint32_t>(value >> 32));
  return uint32(static_cast<std::uint32_t>(value));
}

WireWriter& WireWriter::string(std::span<const std::uint8_t> value) {
  if (value.size() > 0xffffffffU) throw Error(ErrorCode::InvalidArgument, "an SSH string cannot exceed 4 GiB");
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

WireWriter& WireWriter::name_list(std::span<const std::string> names) {
  std::string joined;
  for (const std::string& name : names) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_name_character)) {
      throw Error(ErrorCode::InvalidArgument,
                  "name-list entry '" + printable_prefix(name) + "' is empty or has a comma or non-ASCII character");
    }
    if (!joined.empty()) joined += ',';
    joined += name;
  }
  return string(joined);
}

WireWriter& WireWriter::raw(std::span<const std::uint8_t> bytes) {
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
  return *this;
}

WireReader::WireReader(std::span<const std::uint8_t> data, std::string_view what) : data_(data), what_(what) {}

std::span<const std::uint8_t> WireReader::take(std::size_t count, std::string_view field) {
  if (count > remaining()) {
    throw Error(ErrorCode::InvalidArgument, what_ + " is truncated: " + std::string(field) + " needs " +
                                                std::to_string(count) + " bytes, " + std::to_string(remaining()) +
                                                " left");
  }
  std::span<const std::uint8_t> out = data_.subspan(position_, count);
  position_ += count;
  return out;
}

std::uint8_t WireReader::byte() { return take(1, "a byte")[0]; }

std::uint32_t WireReader::uint32() {
  std::span<const std::uint8_t> b = take(4, "a uint32");
  return static_cast<std::uint32_t>(b[0]) << 24 | static_cast<std::uint32_t>(b[1]) << 16 |
         static_cast<std::uint32_t>(b[2]) << 8 | static_cast<std::uint32_t>(b[3]);
}

std::uint64_t WireReader::uint64() {
  std::uint64_t high = uint32();
  return high << 32 | uint32();
}

std::span<const std::uint8_t> WireReader::string() {
  std::uint32_t length = uint32();
  return take(length, "a string");
}

std::string WireReader::text() {
  std::span<const std::uint8_t> bytes = string();
  if (std::find(bytes.begin(), bytes.end(), 0) != bytes.end()) {
    throw Error(ErrorCode::InvalidArgument, what_ + " has a text field with a NUL character");
  }
  return std::string(bytes.begin(), bytes.end());
}

std::span<const std::uint8_t> WireReader::mpint() {
  std::span<const std::uint8_t> bytes = string();
  if (bytes.empty()) return bytes;  // zero
  if ((bytes[0] & 0x80) != 0) throw Error(ErrorCode::InvalidArgument, what_ + " has a negative mpint");
  if (bytes[0] == 0) {
    // A leading zero is only there to keep a set top bit from reading as a sign.
    if (bytes.size() == 1 || (bytes[1] & 0x80) == 0) {
      throw Error(ErrorCode::InvalidArgument, what_ + " has an mpint with unnecessary leading zeros");
    }
    return bytes.subspan(1);
  }
  return bytes;
}

std::vector<std::string> WireReader::name_list() {
  std::span<const std::uint8_t> bytes = string();
  std::vector<std::string> names;
  if (bytes.empty()) return names;
  std::string current;
  for (std::uint8_t b : bytes) {
    char c = static_cast<char>(b);
    if (c == ',') {
      if (current.empty()) throw Error(ErrorCode::InvalidArgument, what_ + " has a name-list with an empty name");
      names.push_back(std::move(current));
      current.clear();
    } else if (is_name_character(c)) {
      current.push_back(c);
    } else {
      throw Error(ErrorCode::InvalidArgument, what_ + " has a name-list with a non-ASCII or control character");
    }
  }
  if (current.empty()) throw Error(ErrorCode::InvalidArgument, what_ + " has a name-list with an empty name");
  names.push_back(std::move(current));
  return names;
}

std::span<const std::uint8_t> WireReader::raw(std::size_t count) { return take(count, "raw data"); }

std::span<const std::uint8_t> WireReader::rest() { return take(remaining(), "the rest"); }

void WireReader::expect_end() const {
  if (!at_end()) {
    throw Error(ErrorCode::InvalidArgument,
                what_ + " has " + std::to_string(remaining()) + " bytes of trailing data");
  }
}

std::string printable_prefix(std::string_view text, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    char c = text[i];
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (text.size() > max) out += "...";
  return out;
}

bool has_control_character(std::string_view text) noexcept {
  return std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace keyhold::ssh
