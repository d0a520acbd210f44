#pragma once
// The SSH wire encoding (RFC 4251 section 5): byte, uint32, uint64, string,
// mpint, name-list. WireWriter builds it; WireReader takes untrusted bytes
// apart and refuses anything malformed.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold::ssh {

class WireWriter {
 public:
  WireWriter& byte(std::uint8_t value);
  WireWriter& uint32(std::uint32_t value);
  WireWriter& uint64(std::uint64_t value);
  WireWriter& string(std::span<const std::uint8_t> value);
  WireWriter& string(std::string_view value);
  // A big-endian unsigned magnitude as an mpint: leading zeros dropped, a zero
  // byte added when the top bit is set (RFC 4251 section 5).
  WireWriter& mpint(std::span<const std::uint8_t> magnitude);
  // Names joined by commas. Throws InvalidArgument for an empty name or one
  // with a comma or a character outside printable US-ASCII (RFC 4251 section 5).
  WireWriter& name_list(std::span<const std::string> names);
  // Bytes appended as they are (already encoded fields, magic numbers).
  WireWriter& raw(std::span<const std::uint8_t> bytes);
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

// Reads fields in order from a byte span it does not own (the span must
// outlive the reader and the spans it returns). Every read is bounds-checked:
// truncated or malformed data throws InvalidArgument naming `what` (e.g.
// "certificate") and the problem, never echoing the data. Not thread-safe.
class WireReader {
 public:
  explicit WireReader(std::span<const std::uint8_t> data, std::string_view what = "SSH data");

  std::uint8_t byte();
  std::uint32_t uint32();
  std::uint64_t uint64();
  // The contents of a string (no copy).
  std::span<const std::uint8_t> string();
  // A string holding text: refuses an embedded NUL (OpenSSH reads these with
  // sshbuf_get_cstring, which refuses them too).
  std::string text();
  // The magnitude of a non-negative mpint, big-endian without leading zeros
  // (empty for zero). Refuses negative values and non-minimal encodings
  // (RFC 4251 section 5: no unnecessary leading 0x00 bytes; zero is empty).
  std::span<const std::uint8_t> mpint();
  // Refuses empty names, commas at either end or doubled, and characters
  // outside printable US-ASCII (RFC 4251 section 5).
  std::vector<std::string> name_list();
  // `count` bytes as they are.
  std::span<const std::uint8_t> raw(std::size_t count);
  // Everything not yet read.
  std::span<const std::uint8_t> rest();

  bool at_end() const noexcept { return position_ == data_.size(); }
  std::size_t remaining() const noexcept { return data_.size() - position_; }
  // Bytes consumed so far (a certificate's signature covers everything before it).
  std::size_t offset() const noexcept { return position_; }
  // Throws InvalidArgument when bytes are left over.
  void expect_end() const;

 private:
  std::span<const std::uint8_t> take(std::size_t count, std::string_view field);

  std::span<const std::uint8_t> data_;
  std::size_t position_ = 0;
  std::string what_;
};

// A short excerpt of untrusted text for an error message: at most `max`
// characters, anything outside printable US-ASCII shown as '?', "..." when cut.
std::string printable_prefix(std::string_view text, std::size_t max = 32);

// True when text holds a C0 control character or DEL (tab included).
bool has_control_character(std::string_view text) noexcept;

}  // namespace keyhold::ssh
