#include "keyhold/core/text.hpp"

#include <cstdio>

namespace keyhold {

std::size_t utf8_sequence(std::string_view text, std::size_t i, char32_t& code_point) noexcept {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char lead = byte(i);
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  std::size_t length = 0;
  // The allowed range of the second byte excludes overlong forms, surrogates
  // and values past U+10FFFF (Unicode table 3-7).
  unsigned char low = 0x80, high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead == 0xe0) {
    length = 3, low = 0xa0;
  } else if ((lead >= 0xe1 && lead <= 0xec) || lead == 0xee || lead == 0xef) {
    length = 3;
  } else if (lead == 0xed) {
    length = 3, high = 0x9f;
  } else if (lead == 0xf0) {
    length = 4, low = 0x90;
  } else if (lead >= 0xf1 && lead <= 0xf3) {
    length = 4;
  } else if (lead == 0xf4) {
    length = 4, high = 0x8f;
  } else {
    return 0;
  }
  if (text.size() - i < length) return 0;
  char32_t cp = lead & (length == 2 ? 0x1f : length == 3 ? 0x0f : 0x07);
  for (std::size_t k = 1; k < length; ++k) {
    unsigned char b = byte(i + k);
    if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xbf)) return 0;
    cp = cp << 6 | (b & 0x3f);
  }
  code_point = cp;
  return length;
}

TextProblem scan_text(std::string_view text, std::size_t* code_points) noexcept {
  std::size_t count = 0;
  TextProblem problem = TextProblem::kNone;
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    std::size_t length = utf8_sequence(text, i, cp);
    if (length == 0) {
      problem = TextProblem::kNotUtf8;
      break;
    }
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
      problem = TextProblem::kControl;
      break;
    }
    i += length;
    ++count;
  }
  if (code_points != nullptr) *code_points = count;
  return problem;
}

std::string shown(std::string_view value) {
  constexpr std::size_t kMaxShown = 200;
  std::string out;
  for (std::size_t i = 0; i < value.size() && i < kMaxShown; ++i) {
    auto u = static_cast<unsigned char>(value[i]);
    if (u < 0x20 || u >= 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", u);
      out += escaped;
    } else {
      out += value[i];
    }
  }
  if (value.size() > kMaxShown) out += "...";
  return out;
}

}  // namespace keyhold
