#pragma once
// A small, strict DER reader (ITU-T X.690 sections 8 and 10-11) for the
// pre-issuance lint: keyhold reads back the exact bytes it is about to have
// the token sign, so it must not trust OpenSSL's view of them.
//
// Strict means: definite lengths only, minimally encoded lengths and tag
// numbers, primitive encodings for the primitive universal types, constructed
// SEQUENCE/SET, BOOLEAN as 0x00/0xFF, BIT STRING padding bits zero, nesting
// at most kMaxDepth deep. The reader never reads outside the input span and
// never recurses on its own (only validate() descends, bounded by kMaxDepth).
//
// Every function that meets malformed input throws keyhold::Error with code
// InvalidArgument and a message "DER: <what> at offset <n>", where n counts
// from the start of the outermost input (or from the base offset given).
// All functions are thread-safe (no shared state); Element and the value
// types hold spans into the caller's buffer, which must outlive them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold::pki::der {

enum class TagClass : std::uint8_t { Universal = 0, Application = 1, ContextSpecific = 2, Private = 3 };

// Universal tag numbers (X.680 section 8.4) the reader knows by name.
inline constexpr std::uint32_t kBoolean = 1;
inline constexpr std::uint32_t kInteger = 2;
inline constexpr std::uint32_t kBitString = 3;
inline constexpr std::uint32_t kOctetString = 4;
inline constexpr std::uint32_t kNull = 5;
inline constexpr std::uint32_t kOid = 6;
inline constexpr std::uint32_t kEnumerated = 10;
inline constexpr std::uint32_t kUtf8String = 12;
inline constexpr std::uint32_t kSequence = 16;
inline constexpr std::uint32_t kSet = 17;
inline constexpr std::uint32_t kNumericString = 18;
inline constexpr std::uint32_t kPrintableString = 19;
inline constexpr std::uint32_t kTeletexString = 20;
inline constexpr std::uint32_t kVideotexString = 21;
inline constexpr std::uint32_t kIa5String = 22;
inline constexpr std::uint32_t kUtcTime = 23;
inline constexpr std::uint32_t kGeneralizedTime = 24;
inline constexpr std::uint32_t kGraphicString = 25;
inline constexpr std::uint32_t kVisibleString = 26;
inline constexpr std::uint32_t kGeneralString = 27;
inline constexpr std::uint32_t kUniversalString = 28;
inline constexpr std::uint32_t kBmpString = 30;

// A top-level element has depth 0, its children depth 1, ...; Reader(element)
// refuses to open an element of depth kMaxDepth, so hostile nesting stops there.
inline constexpr std::size_t kMaxDepth = 32;

// One TLV. encoded is the whole element (identifier, length, contents): the
// exact bytes, for byte-for-byte comparisons.
struct Element {
  TagClass tag_class = TagClass::Universal;
  bool constructed = false;
  std::uint32_t tag_number = 0;
  std::span<const std::uint8_t> encoded;
  std::span<const std::uint8_t> content;
  std::size_t offset = 0;          // of the identifier octet
  std::size_t content_offset = 0;  // of the first content octet
  std::size_t depth = 0;

  bool is_universal(std::uint32_t number) const noexcept {
    return tag_class == TagClass::Universal && tag_number == number;
  }
  bool is_context(std::uint32_t number) const noexcept {
    return tag_class == TagClass::ContextSpecific && tag_number == number;
  }
};

// "SEQUENCE", "INTEGER", "[3]", "[APPLICATION 1]", ... for messages.
std::string tag_name(const Element& element);

// Reads consecutive elements: the top level of a buffer, or the children of
// a constructed element.
class Reader {
 public:
  // base_offset is added to every offset reported (e.g. where an OCTET STRING
  // holding this DER sits inside a larger structure).
  explicit Reader(std::span<const std::uint8_t> input, std::size_t base_offset = 0);
  // The children of a constructed element; throws if it is primitive or
  // already kMaxDepth deep.
  explicit Reader(const Element& constructed);

  bool at_end() const noexcept { return position_ == input_.size(); }
  // Offset of the next element (or of the end).
  std::size_t offset() const noexcept { return base_ + position_; }

  // The next element; throws at the end or when it is malformed.
  Element next();
  // The next element, which must have this class and number ("expected
  // <what> at offset n" otherwise).
  Element next(TagClass tag_class, std::uint32_t number, std::string_view what);
  // The next element if there is one with this class and number (OPTIONAL
  // and DEFAULT fields); nothing is consumed otherwise.
  std::optional<Element> next_if(TagClass tag_class, std::uint32_t number);
  // Throws if any bytes are left ("unexpected <tag> after <what>").
  void expect_end(std::string_view what) const;

 private:
  Element peek() const;

  std::span<const std::uint8_t> input_;
  std::size_t position_ = 0;
  std::size_t base_ = 0;
  std::size_t depth_ = 0;
};

// Exactly one element filling the whole input (no trailing bytes).
Element parse(std::span<const std::uint8_t> input, std::size_t base_offset = 0);
// Every child of a constructed element, in order.
std::vector<Element> children(const Element& constructed);
// The one element inside an EXPLICIT context-specific tag ([0] EXPLICIT ...).
Element explicit_inner(const Element& tagged);
// Parses input as one element and descends into every constructed element:
// throws on the first malformed TLV anywhere in the tree.
void validate(std::span<const std::uint8_t> input);

// INTEGER (or ENUMERATED) content, two's complement, kept as the raw bytes.
struct Integer {
  std::span<const std::uint8_t> content;  // never empty

  bool negative() const noexcept { return !content.empty() && (content[0] & 0x80) != 0; }
  bool zero() const noexcept;
  // No needless leading 0x00 or 0xFF octet (X.690 section 8.3.2).
  bool minimal() const noexcept;
};
// INTEGER, minimally encoded as DER requires.
Integer read_integer(const Element& element);
// INTEGER whose content is only required to be non-empty: for fields where a
// caller reports a non-minimal encoding under its own name (the serial).
Integer read_integer_unchecked(const Element& element);
// A minimally encoded INTEGER or ENUMERATED that fits in 64 bits.
std::int64_t read_int64(const Element& element);

bool read_boolean(const Element& element);
void read_null(const Element& element);

struct Oid {
  std::string dotted;                 // "2.5.29.17"
  std::span<const std::uint8_t> raw;  // the content octets
};
Oid read_oid(const Element& element);

struct BitString {
  std::uint8_t unused_bits = 0;
  std::span<const std::uint8_t> bytes;

  // Bit n in the X.680 numbering (bit 0 is the most significant bit of the
  // first byte); false beyond the end.
  bool bit(std::size_t n) const noexcept;
};
BitString read_bit_string(const Element& element);

std::span<const std::uint8_t> read_octet_string(const Element& element);

// UTCTime or GeneralizedTime. value is set only for the forms RFC 5280
// section 4.1.2.5 allows (YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ) holding a real
// date; any other text (fractional seconds, offsets, no seconds, month 13)
// is kept in text with value empty, so that a caller can say what is wrong.
struct Time {
  std::uint32_t tag_number = kUtcTime;  // kUtcTime or kGeneralizedTime
  std::string text;                     // visible ASCII only
  std::optional<std::chrono::sys_seconds> value;
};
Time read_time(const Element& element);

// A character string of one of the universal string types; the bytes are
// returned as they are, without a charset check (see the is_* functions).
struct String {
  std::uint32_t tag_number = kUtf8String;
  std::string_view text;
};
bool is_string_type(const Element& element) noexcept;
String read_string(const Element& element);

// X.680 section 41.4: A-Z a-z 0-9 space ' ( ) + , - . / : = ?
bool is_printable_string(std::string_view text) noexcept;
// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view text) noexcept;
bool is_ia5_string(std::string_view text) noexcept;

}  // namespace keyhold::pki::der
