#pragma once
// Text checks and message quoting shared by the modules that judge names,
// principals, context values and log fields.

#include <cstddef>
#include <string>
#include <string_view>

namespace keyhold {

// The length of the well-formed UTF-8 sequence at text[i] (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF) and its code point;
// 0 when the bytes there are not well-formed. i must be < text.size().
std::size_t utf8_sequence(std::string_view text, std::size_t i, char32_t& code_point) noexcept;

enum class TextProblem { kNone, kControl, kNotUtf8 };

// Strict UTF-8 without C0 or C1 controls or DEL; counts code points into
// *code_points when given (up to the first problem).
TextProblem scan_text(std::string_view text, std::size_t* code_points = nullptr) noexcept;

// A value as it appears in an error message: one line of printable ASCII
// (other bytes as \xNN), cut after 200 bytes with "...".
std::string shown(std::string_view value);

}  // namespace keyhold
