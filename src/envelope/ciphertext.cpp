#include "keyhold/core/text.hpp"
#include "keyhold/envelope/ciphertext.hpp"

#include <algorithm>
#include <string>

#include "keyhold/core/error.hpp"

namespace keyhold::envelope {
namespace {

using Bytes = std::vector<std::uint8_t>;

// The longest text body: base64url of kMaxEncodedBytes without padding.
constexpr std::size_t kMaxTextBodyChars = (kMaxEncodedBytes * 4 + 2) / 3;

[[noreturn]] void refuse(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

void put_u32(Bytes& out, std::uint32_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 24));
  out.push_back(static_cast<std::uint8_t>(value >> 16));
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

std::uint32_t get_u32(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(bytes[0]) << 24 | static_cast<std::uint32_t>(bytes[1]) << 16 |
         static_cast<std::uint32_t>(bytes[2]) << 8 | static_cast<std::uint32_t>(bytes[3]);
}

void put_string(Bytes& out, std::string_view text) {
  put_u32(out, static_cast<std::uint32_t>(text.size()));  // bounded by the context limits
  out.insert(out.end(), text.begin(), text.end());
}

void check_kek_version(std::uint32_t kek_version) {
  if (kek_version == 0) refuse("KEK version 0 is invalid: KEK versions start at 1");
}

void check_sealed_size(std::size_t size) {
  if (size < kMinSealedBytes) {
    refuse("the sealed part is " + std::to_string(size) + " bytes, shorter than the " + std::to_string(kTagBytes) +
           "-byte authentication tag");
  }
  if (size > kMaxSealedBytes) {
    refuse("the sealed part is " + std::to_string(size) + " bytes; at most " + std::to_string(kMaxSealedBytes) +
           " (" + std::to_string(kMaxPlaintextBytes) + " of plaintext and the tag) are allowed");
  }
}

[[noreturn]] void refuse_version(std::string_view version) {
  refuse("unknown ciphertext format version " + std::string(version) + "; this keyhold reads version " +
         std::to_string(kFormatVersion));
}

bool is_ascii_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && is_ascii_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ascii_space(text.back())) text.remove_suffix(1);
  return text;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Length of a "kh<digits>:" prefix at the start of text, or 0.
std::size_t text_prefix_length(std::string_view text) noexcept {
  if (text.size() < 4 || text[0] != 'k' || text[1] != 'h' || !is_digit(text[2])) return 0;
  std::size_t i = 2;
  while (i < text.size() && is_digit(text[i])) ++i;
  return i < text.size() && text[i] == ':' ? i + 1 : 0;
}

// RFC 4648 section 5 alphabet.
constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int base64url_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string base64url_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(bytes[i]) << 16 | static_cast<std::uint32_t>(bytes[i + 1]) << 8 |
                      bytes[i + 2];
    out.push_back(kBase64Url[v >> 18 & 63]);
    out.push_back(kBase64Url[v >> 12 & 63]);
    out.push_back(kBase64Url[v >> 6 & 63]);
    out.push_back(kBase64Url[v & 63]);
  }
  if (std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(bytes[i]) << 16 |
                      (rest == 2 ? static_cast<std::uint32_t>(bytes[i + 1]) << 8 : 0U);
    out.push_back(kBase64Url[v >> 18 & 63]);
    out.push_back(kBase64Url[v >> 12 & 63]);
    if (rest == 2) out.push_back(kBase64Url[v >> 6 & 63]);
  }
  return out;
}

// Strict: the alphabet only, no padding, no whitespace, and the unused low
// bits of the last character zero, so that decoding is one-to-one.
// `offset` is the position of `text` in the whole input, for messages.
Bytes base64url_decode(std::string_view text, std::size_t offset) {
  Bytes out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '=') refuse("the text form must not have '=' padding (base64url without padding)");
    int value = base64url_value(text[i]);
    if (value < 0) {
      refuse("the text form is not valid base64url: character " + std::to_string(offset + i + 1) +
             " is outside the alphabet A-Z a-z 0-9 - _");
    }
    bits = bits << 6 | static_cast<std::uint32_t>(value);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out.push_back(static_cast<std::uint8_t>(bits >> bit_count));
      bits &= (1U << bit_count) - 1;
    }
  }
  if (text.size() % 4 == 1) {
    refuse("the text form is not valid base64url: " + std::to_string(text.size()) +
           " characters after the prefix is an impossible length");
  }
  if (bits != 0) refuse("the text form is not canonical base64url: the unused bits of its last character are set");
  return out;
}

bool is_control(char32_t code) noexcept { return code < 0x20 || (code >= 0x7f && code <= 0x9f); }

enum class TextProblem { None, InvalidUtf8, Control };

TextProblem check_text(std::string_view text) noexcept {
  TextProblem problem = TextProblem::None;
  for (std::size_t i = 0; i < text.size();) {
    char32_t code = 0;
    std::size_t length = utf8_sequence(text, i, code);
    if (length == 0) return TextProblem::InvalidUtf8;
    if (is_control(code)) problem = TextProblem::Control;
    i += length;
  }
  return problem;
}

// A context key for a one-line message: at most 40 bytes of it, quoted;
// bytes outside printable ASCII as \xNN when the key is not clean UTF-8.
std::string describe_key(std::string_view key) {
  constexpr std::size_t kShown = 40;
  std::string shown;
  bool clean = check_text(key) == TextProblem::None;
  std::size_t i = 0;
  while (i < key.size() && shown.size() < kShown) {
    if (clean) {
      char32_t code = 0;
      std::size_t length = utf8_sequence(key, i, code);
      shown.append(key.substr(i, length));
      i += length;
    } else {
      auto c = static_cast<unsigned char>(key[i++]);
      if (c >= 0x20 && c < 0x7f && c != '\\') {
        shown.push_back(static_cast<char>(c));
      } else {
        static constexpr char kHex[] = "0123456789abcdef";
        shown += "\\x";
        shown.push_back(kHex[c >> 4]);
        shown.push_back(kHex[c & 0x0f]);
      }
    }
  }
  return "'" + shown + (i < key.size() ? "...'" : "'");
}

void check_pair(const std::string& key, const std::string& value) {
  if (key.empty()) refuse("a context key is empty");
  std::string name = "context key " + describe_key(key);
  if (key.size() > kMaxContextKeyBytes) {
    refuse(name + " is " + std::to_string(key.size()) + " bytes; at most " + std::to_string(kMaxContextKeyBytes) +
           " are allowed");
  }
  switch (check_text(key)) {
    case TextProblem::InvalidUtf8: refuse(name + " is not valid UTF-8");
    case TextProblem::Control: refuse(name + " contains a control character");
    case TextProblem::None: break;
  }
  if (key.find('=') != std::string::npos) refuse(name + " contains '=', which cannot be given as key=value");
  if (value.size() > kMaxContextValueBytes) {
    refuse("the value of " + name + " is " + std::to_string(value.size()) + " bytes; at most " +
           std::to_string(kMaxContextValueBytes) + " are allowed");
  }
  switch (check_text(value)) {
    case TextProblem::InvalidUtf8: refuse("the value of " + name + " is not valid UTF-8");
    case TextProblem::Control: refuse("the value of " + name + " contains a control character");
    case TextProblem::None: break;
  }
}

}  // namespace

std::vector<std::uint8_t> header_bytes(const Ciphertext& ciphertext) {
  check_kek_version(ciphertext.kek_version);
  Bytes out;
  out.reserve(kHeaderBytes);
  out.push_back(kFormatVersion);
  out.insert(out.end(), ciphertext.kek_id.begin(), ciphertext.kek_id.end());
  put_u32(out, ciphertext.kek_version);
  out.insert(out.end(), ciphertext.iv.begin(), ciphertext.iv.end());
  return out;
}

std::vector<std::uint8_t> encode(const Ciphertext& ciphertext) {
  check_sealed_size(ciphertext.sealed.size());
  Bytes out = header_bytes(ciphertext);
  out.insert(out.end(), ciphertext.sealed.begin(), ciphertext.sealed.end());
  return out;
}

Ciphertext decode(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) refuse("the ciphertext is empty");
  // The version comes first: another version may have another layout.
  if (bytes[0] != kFormatVersion) refuse_version(std::to_string(bytes[0]));
  if (bytes.size() < kMinEncodedBytes) {
    refuse("the ciphertext is truncated: " + std::to_string(bytes.size()) + " bytes, at least " +
           std::to_string(kMinEncodedBytes) + " (header and tag) are needed");
  }
  if (bytes.size() > kMaxEncodedBytes) {
    refuse("the ciphertext is too large: " + std::to_string(bytes.size()) + " bytes, at most " +
           std::to_string(kMaxEncodedBytes) + " are allowed");
  }
  Ciphertext out;
  auto kek_id = bytes.subspan(1, kKekIdBytes);
  std::copy(kek_id.begin(), kek_id.end(), out.kek_id.begin());
  out.kek_version = get_u32(bytes.subspan(1 + kKekIdBytes, 4));
  check_kek_version(out.kek_version);
  auto iv = bytes.subspan(1 + kKekIdBytes + 4, kIvBytes);
  std::copy(iv.begin(), iv.end(), out.iv.begin());
  auto sealed = bytes.subspan(kHeaderBytes);
  out.sealed.assign(sealed.begin(), sealed.end());
  return out;
}

std::string to_text(const Ciphertext& ciphertext) {
  return std::string(kTextPrefix) + base64url_encode(encode(ciphertext));
}

Ciphertext from_text(std::string_view text) {
  std::string_view trimmed = trim(text);
  std::size_t prefix = text_prefix_length(trimmed);
  if (prefix == 0) {
    refuse("not a keyhold ciphertext: the text form starts with \"" + std::string(kTextPrefix) + "\"");
  }
  std::string_view version = trimmed.substr(2, prefix - 3);
  if (version != std::to_string(kFormatVersion)) {
    refuse_version(version.size() > 10 ? std::string(version.substr(0, 10)) + "..." : std::string(version));
  }
  std::string_view body = trimmed.substr(prefix);
  if (body.size() > kMaxTextBodyChars) {
    refuse("the ciphertext is too large: " + std::to_string(body.size()) + " base64url characters, at most " +
           std::to_string(kMaxTextBodyChars) + " are allowed");
  }
  return decode(base64url_decode(body, prefix));
}

Ciphertext parse_any(std::span<const std::uint8_t> input) {
  std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  std::string_view rest = text;
  while (!rest.empty() && is_ascii_space(rest.front())) rest.remove_prefix(1);
  if (text_prefix_length(rest) > 0) return from_text(text);
  // A binary ciphertext starts with its version byte (1 today). Input that
  // is printable text is not one, whatever its first byte: saying "format
  // version 103" for a stray word would mislead.
  bool printable = !rest.empty() && std::all_of(rest.begin(), rest.end(), [](char c) {
    return is_ascii_space(c) || (c >= 0x20 && c < 0x7f);
  });
  if (printable) refuse("not a keyhold ciphertext: the text form starts with \"kh1:\"");
  return decode(input);
}

std::vector<std::uint8_t> canonical_context(const Context& context) {
  if (context.size() > kMaxContextPairs) {
    refuse("the encryption context has " + std::to_string(context.size()) + " pairs; at most " +
           std::to_string(kMaxContextPairs) + " are allowed");
  }
  // std::map orders keys with std::char_traits<char>::lt, which compares as
  // unsigned char: bytewise order, as the format requires.
  Bytes out;
  put_u32(out, static_cast<std::uint32_t>(context.size()));
  for (const auto& [key, value] : context) {
    check_pair(key, value);
    put_string(out, key);
    put_string(out, value);
  }
  return out;
}

std::vector<std::uint8_t> associated_data(const Ciphertext& header_fields, const Context& context) {
  Bytes out = header_bytes(header_fields);
  Bytes canonical = canonical_context(context);
  out.insert(out.end(), canonical.begin(), canonical.end());
  return out;
}

Context parse_context_arguments(const std::vector<std::string>& args) {
  Context context;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string item = "context item " + std::to_string(i + 1);
    std::size_t equals = args[i].find('=');
    if (equals == std::string::npos) refuse(item + " has no '=' (expected key=value)");
    if (equals == 0) refuse(item + " has an empty key (expected key=value)");
    std::string key = args[i].substr(0, equals);
    if (context.contains(key)) refuse("context key " + describe_key(key) + " is given more than once");
    context.emplace(std::move(key), args[i].substr(equals + 1));
  }
  canonical_context(context);  // validates
  return context;
}

}  // namespace keyhold::envelope
