#include "keyhold/pki/der.hpp"

#include <algorithm>
#include <array>

#include "keyhold/core/error.hpp"

namespace keyhold::pki::der {
namespace {

[[noreturn]] void fail(std::string_view what, std::size_t offset) {
  throw Error(ErrorCode::InvalidArgument, "DER: " + std::string(what) + " at offset " + std::to_string(offset));
}

// Universal types whose DER encoding is always primitive (X.690 section 10.2
// forbids the constructed form of strings) or always constructed.
bool must_be_primitive(std::uint32_t number) noexcept {
  switch (number) {
    case kBoolean: case kInteger: case kBitString: case kOctetString: case kNull: case kOid:
    case kEnumerated: case kUtcTime: case kGeneralizedTime:
      return true;
    default:
      return false;
  }
}

bool is_string_number(std::uint32_t number) noexcept {
  switch (number) {
    case kUtf8String: case kNumericString: case kPrintableString: case kTeletexString:
    case kVideotexString: case kIa5String: case kGraphicString: case kVisibleString:
    case kGeneralString: case kUniversalString: case kBmpString:
      return true;
    default:
      return false;
  }
}

// Decodes the TLV that starts at input[position]; reports offsets as base + index.
Element decode_header(std::span<const std::uint8_t> input, std::size_t position, std::size_t base, std::size_t depth) {
  const std::size_t start = position;
  if (position >= input.size()) fail("expected an element, found the end", base + position);
  const std::uint8_t identifier = input[position++];
  Element element;
  element.tag_class = static_cast<TagClass>(identifier >> 6);
  element.constructed = (identifier & 0x20) != 0;
  element.tag_number = identifier & 0x1f;
  element.offset = base + start;
  element.depth = depth;
  if (element.tag_number == 0x1f) {
    // High tag number form (X.690 8.1.2.4): base 128, no leading 0x80 octet,
    // and only for numbers that do not fit the low form.
    std::uint32_t number = 0;
    for (bool first = true;; first = false) {
      if (position >= input.size()) fail("tag number runs past the end", base + start);
      const std::uint8_t octet = input[position++];
      if (first && octet == 0x80) fail("tag number is not minimally encoded", base + start);
      if (number > (0xffffffffu >> 7)) fail("tag number is too large", base + start);
      number = (number << 7) | (octet & 0x7fu);
      if ((octet & 0x80) == 0) break;
    }
    if (number < 0x1f) fail("tag number is not minimally encoded", base + start);
    element.tag_number = number;
  }
  if (position >= input.size()) fail("length runs past the end", base + start);
  const std::uint8_t first_length = input[position++];
  std::size_t length = first_length;
  if (first_length == 0x80) fail("indefinite length is not DER", base + start);
  if (first_length > 0x80) {
    // Long form (X.690 8.1.3.5): DER wants the fewest octets (10.1).
    const std::size_t count = first_length & 0x7fu;
    if (count > 4) fail("length is too large", base + start);
    if (input.size() - position < count) fail("length runs past the end", base + start);
    if (input[position] == 0) fail("length is not minimally encoded", base + start);
    length = 0;
    for (std::size_t i = 0; i < count; ++i) length = (length << 8) | input[position++];
    if (length < 0x80) fail("length is not minimally encoded", base + start);
  }
  if (length > input.size() - position) fail("length runs past the end", base + start);
  element.content_offset = base + position;
  element.content = input.subspan(position, length);
  element.encoded = input.subspan(start, position + length - start);

  if (element.tag_class == TagClass::Universal) {
    if (element.tag_number == 0) fail("end-of-contents (indefinite length) is not DER", base + start);
    if ((element.tag_number == kSequence || element.tag_number == kSet) && !element.constructed) {
      fail(tag_name(element) + " is not constructed", base + start);
    }
    if ((must_be_primitive(element.tag_number) || is_string_number(element.tag_number)) && element.constructed) {
      fail("constructed " + tag_name(element) + " is not DER", base + start);
    }
  }
  return element;
}

void expect_universal(const Element& element, std::uint32_t number, std::string_view what) {
  if (!element.is_universal(number)) fail("expected " + std::string(what) + ", found " + tag_name(element), element.offset);
}

// Arbitrary-size unsigned arc, in base 10^9 limbs (least significant first),
// for OIDs such as 2.25.<128-bit UUID>.
std::string arc_to_decimal(std::span<const std::uint8_t> septets) {
  std::vector<std::uint32_t> limbs{0};
  for (std::uint8_t octet : septets) {
    std::uint64_t carry = octet & 0x7fu;
    for (std::uint32_t& limb : limbs) {
      const std::uint64_t v = static_cast<std::uint64_t>(limb) * 128 + carry;
      limb = static_cast<std::uint32_t>(v % 1000000000u);
      carry = v / 1000000000u;
    }
    if (carry != 0) limbs.push_back(static_cast<std::uint32_t>(carry));
  }
  std::string out = std::to_string(limbs.back());
  for (std::size_t i = limbs.size() - 1; i-- > 0;) {
    std::string part = std::to_string(limbs[i]);
    out += std::string(9 - part.size(), '0') + part;
  }
  return out;
}

int digits(std::string_view text, std::size_t at, std::size_t count) {
  int value = 0;
  for (std::size_t i = at; i < at + count; ++i) value = value * 10 + (text[i] - '0');
  return value;
}

// RFC 5280 section 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50 is 19YY, else
// 20YY), GeneralizedTime YYYYMMDDHHMMSSZ; nothing else.
std::optional<std::chrono::sys_seconds> decode_time(std::uint32_t tag_number, std::string_view text) {
  const std::size_t year_digits = tag_number == kUtcTime ? 2 : 4;
  if (text.size() != year_digits + 11 || text.back() != 'Z') return std::nullopt;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  int year = digits(text, 0, year_digits);
  if (tag_number == kUtcTime) year += year >= 50 ? 1900 : 2000;
  const int month = digits(text, year_digits, 2);
  const int day = digits(text, year_digits + 2, 2);
  const int hour = digits(text, year_digits + 4, 2);
  const int minute = digits(text, year_digits + 6, 2);
  const int second = digits(text, year_digits + 8, 2);
  const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 59) return std::nullopt;
  return std::chrono::sys_days{date} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
         std::chrono::seconds{second};
}

void walk(const Element& element) {
  if (element.constructed) {
    Reader reader(element);
    while (!reader.at_end()) walk(reader.next());
    return;
  }
  if (element.tag_class != TagClass::Universal) return;
  switch (element.tag_number) {
    case kBoolean: read_boolean(element); break;
    case kInteger: read_integer(element); break;
    case kEnumerated: read_int64(element); break;
    case kNull: read_null(element); break;
    case kOid: read_oid(element); break;
    case kBitString: read_bit_string(element); break;
    case kUtcTime: case kGeneralizedTime: read_time(element); break;
    default: break;
  }
}

}  // namespace

std::string tag_name(const Element& element) {
  switch (element.tag_class) {
    case TagClass::ContextSpecific: return "[" + std::to_string(element.tag_number) + "]";
    case TagClass::Application: return "[APPLICATION " + std::to_string(element.tag_number) + "]";
    case TagClass::Private: return "[PRIVATE " + std::to_string(element.tag_number) + "]";
    case TagClass::Universal: break;
  }
  switch (element.tag_number) {
    case kBoolean: return "BOOLEAN";
    case kInteger: return "INTEGER";
    case kBitString: return "BIT STRING";
    case kOctetString: return "OCTET STRING";
    case kNull: return "NULL";
    case kOid: return "OBJECT IDENTIFIER";
    case kEnumerated: return "ENUMERATED";
    case kUtf8String: return "UTF8String";
    case kSequence: return "SEQUENCE";
    case kSet: return "SET";
    case kNumericString: return "NumericString";
    case kPrintableString: return "PrintableString";
    case kTeletexString: return "TeletexString";
    case kVideotexString: return "VideotexString";
    case kIa5String: return "IA5String";
    case kUtcTime: return "UTCTime";
    case kGeneralizedTime: return "GeneralizedTime";
    case kGraphicString: return "GraphicString";
    case kVisibleString: return "VisibleString";
    case kGeneralString: return "GeneralString";
    case kUniversalString: return "UniversalString";
    case kBmpString: return "BMPString";
    default: return "[UNIVERSAL " + std::to_string(element.tag_number) + "]";
  }
}

Reader::Reader(std::span<const std::uint8_t> input, std::size_t base_offset) : input_(input), base_(base_offset) {}

Reader::Reader(const Element& constructed)
    : input_(constructed.content), base_(constructed.content_offset), depth_(constructed.depth + 1) {
  if (!constructed.constructed) fail("expected a constructed element, found primitive " + tag_name(constructed), constructed.offset);
  if (depth_ > kMaxDepth) fail("nesting is deeper than " + std::to_string(kMaxDepth) + " levels", constructed.offset);
}

Element Reader::peek() const { return decode_header(input_, position_, base_, depth_); }

Element Reader::next() {
  Element element = peek();
  position_ += element.encoded.size();
  return element;
}

Element Reader::next(TagClass tag_class, std::uint32_t number, std::string_view what) {
  if (at_end()) fail("expected " + std::string(what) + ", found the end", offset());
  Element element = peek();
  if (element.tag_class != tag_class || element.tag_number != number) {
    fail("expected " + std::string(what) + ", found " + tag_name(element), element.offset);
  }
  position_ += element.encoded.size();
  return element;
}

std::optional<Element> Reader::next_if(TagClass tag_class, std::uint32_t number) {
  if (at_end()) return std::nullopt;
  Element element = peek();
  if (element.tag_class != tag_class || element.tag_number != number) return std::nullopt;
  position_ += element.encoded.size();
  return element;
}

void Reader::expect_end(std::string_view what) const {
  if (at_end()) return;
  // Decode first so that garbage is reported as such rather than as a tag.
  const Element element = peek();
  fail("unexpected " + tag_name(element) + " after " + std::string(what), element.offset);
}

Element parse(std::span<const std::uint8_t> input, std::size_t base_offset) {
  Reader reader(input, base_offset);
  Element element = reader.next();
  if (!reader.at_end()) fail("trailing bytes after the element", reader.offset());
  return element;
}

std::vector<Element> children(const Element& constructed) {
  std::vector<Element> out;
  Reader reader(constructed);
  while (!reader.at_end()) out.push_back(reader.next());
  return out;
}

Element explicit_inner(const Element& tagged) {
  if (tagged.tag_class != TagClass::ContextSpecific) fail("expected an EXPLICIT tag, found " + tag_name(tagged), tagged.offset);
  Reader reader(tagged);  // throws if primitive (IMPLICIT) or too deep
  Element inner = reader.next();
  reader.expect_end("the explicitly tagged element");
  return inner;
}

void validate(std::span<const std::uint8_t> input) { walk(parse(input)); }

bool Integer::zero() const noexcept {
  return std::all_of(content.begin(), content.end(), [](std::uint8_t b) { return b == 0; });
}

bool Integer::minimal() const noexcept {
  if (content.size() < 2) return true;
  if (content[0] == 0x00 && (content[1] & 0x80) == 0) return false;
  if (content[0] == 0xff && (content[1] & 0x80) != 0) return false;
  return true;
}

Integer read_integer_unchecked(const Element& element) {
  expect_universal(element, kInteger, "INTEGER");
  if (element.content.empty()) fail("INTEGER has no content octets", element.offset);
  return Integer{element.content};
}

Integer read_integer(const Element& element) {
  Integer value = read_integer_unchecked(element);
  if (!value.minimal()) fail("INTEGER is not minimally encoded", element.offset);
  return value;
}

std::int64_t read_int64(const Element& element) {
  if (!element.is_universal(kInteger) && !element.is_universal(kEnumerated)) {
    fail("expected INTEGER or ENUMERATED, found " + tag_name(element), element.offset);
  }
  const Integer value{element.content};
  if (element.content.empty()) fail(tag_name(element) + " has no content octets", element.offset);
  if (!value.minimal()) fail(tag_name(element) + " is not minimally encoded", element.offset);
  if (element.content.size() > 8) fail(tag_name(element) + " does not fit in 64 bits", element.offset);
  // Sign-extend from the first octet, then shift the rest in.
  std::uint64_t bits = value.negative() ? ~std::uint64_t{0} : 0;
  for (std::uint8_t octet : element.content) bits = (bits << 8) | octet;
  return static_cast<std::int64_t>(bits);
}

bool read_boolean(const Element& element) {
  expect_universal(element, kBoolean, "BOOLEAN");
  if (element.content.size() != 1) fail("BOOLEAN is not one octet", element.offset);
  // X.690 section 11.1: TRUE is 0xFF in DER.
  if (element.content[0] != 0x00 && element.content[0] != 0xff) fail("BOOLEAN is neither 0x00 nor 0xFF", element.offset);
  return element.content[0] == 0xff;
}

void read_null(const Element& element) {
  expect_universal(element, kNull, "NULL");
  if (!element.content.empty()) fail("NULL has content octets", element.offset);
}

Oid read_oid(const Element& element) {
  expect_universal(element, kOid, "OBJECT IDENTIFIER");
  const std::span<const std::uint8_t> raw = element.content;
  if (raw.empty()) fail("OBJECT IDENTIFIER is empty", element.offset);
  if ((raw.back() & 0x80) != 0) fail("OBJECT IDENTIFIER ends inside a subidentifier", element.offset);
  // A subidentifier of more than 20 octets (140 bits) is no real OID and
  // would make the decimal conversion slow on hostile input.
  constexpr std::size_t kMaxSubidentifierOctets = 20;
  Oid oid;
  oid.raw = raw;
  std::size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    // X.690 section 8.19.2: no leading 0x80 octet in a subidentifier.
    if (raw[start] == 0x80) fail("OBJECT IDENTIFIER subidentifier is not minimally encoded", element.offset);
    std::size_t end = start;
    while ((raw[end] & 0x80) != 0) ++end;
    ++end;
    if (end - start > kMaxSubidentifierOctets) fail("OBJECT IDENTIFIER subidentifier is too large", element.offset);
    const std::span<const std::uint8_t> septets = raw.subspan(start, end - start);
    if (first) {
      // X.690 section 8.19.4: the first subidentifier is 40 * X + Y.
      if (septets.size() > 9) fail("OBJECT IDENTIFIER first subidentifier is too large", element.offset);
      std::uint64_t value = 0;
      for (std::uint8_t octet : septets) value = (value << 7) | (octet & 0x7fu);
      if (value < 40) {
        oid.dotted = "0." + std::to_string(value);
      } else if (value < 80) {
        oid.dotted = "1." + std::to_string(value - 40);
      } else {
        oid.dotted = "2." + std::to_string(value - 80);
      }
      first = false;
    } else {
      oid.dotted += '.';
      oid.dotted += arc_to_decimal(septets);
    }
    start = end;
  }
  return oid;
}

bool BitString::bit(std::size_t n) const noexcept {
  const std::size_t index = n / 8;
  if (index >= bytes.size()) return false;
  if (index + 1 == bytes.size() && n % 8 >= 8u - unused_bits) return false;
  return (bytes[index] & (0x80u >> (n % 8))) != 0;
}

BitString read_bit_string(const Element& element) {
  expect_universal(element, kBitString, "BIT STRING");
  if (element.content.empty()) fail("BIT STRING has no unused-bits octet", element.offset);
  BitString out;
  out.unused_bits = element.content[0];
  out.bytes = element.content.subspan(1);
  if (out.unused_bits > 7) fail("BIT STRING has more than 7 unused bits", element.offset);
  if (out.bytes.empty() && out.unused_bits != 0) fail("empty BIT STRING has unused bits", element.offset);
  // X.690 section 11.2.1: the unused bits are zero in DER.
  if (!out.bytes.empty() && (out.bytes.back() & ((1u << out.unused_bits) - 1)) != 0) {
    fail("BIT STRING unused bits are not zero", element.offset);
  }
  return out;
}

std::span<const std::uint8_t> read_octet_string(const Element& element) {
  expect_universal(element, kOctetString, "OCTET STRING");
  return element.content;
}

Time read_time(const Element& element) {
  if (!element.is_universal(kUtcTime) && !element.is_universal(kGeneralizedTime)) {
    fail("expected UTCTime or GeneralizedTime, found " + tag_name(element), element.offset);
  }
  Time out;
  out.tag_number = element.tag_number;
  for (std::uint8_t c : element.content) {
    if (c < 0x20 || c > 0x7e) fail(tag_name(element) + " holds a byte that is not visible ASCII", element.offset);
  }
  out.text.assign(element.content.begin(), element.content.end());
  out.value = decode_time(out.tag_number, out.text);
  return out;
}

bool is_string_type(const Element& element) noexcept {
  return element.tag_class == TagClass::Universal && is_string_number(element.tag_number);
}

String read_string(const Element& element) {
  if (!is_string_type(element)) fail("expected a character string, found " + tag_name(element), element.offset);
  return String{element.tag_number,
                std::string_view(reinterpret_cast<const char*>(element.content.data()), element.content.size())};
}

bool is_printable_string(std::string_view text) noexcept {
  constexpr std::string_view kPunctuation = " '()+,-./:=?";
  return std::all_of(text.begin(), text.end(), [&](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           kPunctuation.find(c) != std::string_view::npos;
  });
}

bool is_valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<std::uint8_t>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    // Continuation octets, payload bits of the lead octet, smallest code point
    // that needs this length (anything smaller is an overlong form).
    std::size_t extra = 0;
    std::uint32_t code = 0;
    std::uint32_t minimum = 0;
    if ((lead & 0xe0) == 0xc0) {
      extra = 1;
      code = lead & 0x1fu;
      minimum = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
      extra = 2;
      code = lead & 0x0fu;
      minimum = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
      extra = 3;
      code = lead & 0x07u;
      minimum = 0x10000;
    } else {
      return false;
    }
    if (text.size() - i - 1 < extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto octet = static_cast<std::uint8_t>(text[i + k]);
      if ((octet & 0xc0) != 0x80) return false;
      code = (code << 6) | (octet & 0x3fu);
    }
    if (code < minimum || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

bool is_ia5_string(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<std::uint8_t>(c) < 0x80; });
}

}  // namespace keyhold::pki::der
