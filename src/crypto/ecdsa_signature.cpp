#include "keyhold/crypto/ecdsa_signature.hpp"

#include "keyhold/core/error.hpp"

namespace keyhold::crypto {
namespace {

// X.690 section 8.3: a minimal two's-complement INTEGER.
void append_der_integer(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> magnitude) {
  std::size_t first = 0;
  while (first + 1 < magnitude.size() && magnitude[first] == 0) ++first;  // minimal: no leading zeros
  std::span<const std::uint8_t> digits = magnitude.subspan(first);
  bool pad = (digits[0] & 0x80) != 0;  // a set top bit would read as negative
  out.push_back(0x02);
  out.push_back(static_cast<std::uint8_t>(digits.size() + (pad ? 1 : 0)));
  if (pad) out.push_back(0x00);
  out.insert(out.end(), digits.begin(), digits.end());
}

}  // namespace

// Encoded here rather than through OpenSSL's ECDSA_SIG and BIGNUMs, which
// cost as much as 2% of a token signature (docs/performance.md).
std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t> raw) {
  std::size_t half = raw.size() / 2;
  if (raw.empty() || raw.size() % 2 != 0 || half > 66) {
    throw Error(ErrorCode::Internal, "the token returned an ECDSA signature of odd size");
  }
  std::vector<std::uint8_t> body;
  body.reserve(raw.size() + 6);
  append_der_integer(body, std::span<const std::uint8_t>(raw.data(), half));
  append_der_integer(body, std::span<const std::uint8_t>(raw.data() + half, half));
  std::vector<std::uint8_t> der;
  der.reserve(body.size() + 3);
  der.push_back(0x30);
  if (body.size() >= 0x80) der.push_back(0x81);  // long form, one length byte (P-521 only)
  der.push_back(static_cast<std::uint8_t>(body.size()));
  der.insert(der.end(), body.begin(), body.end());
  return der;
}

}  // namespace keyhold::crypto
