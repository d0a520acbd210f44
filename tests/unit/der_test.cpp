// keyhold's strict DER reader: what it accepts, what it refuses (with the
// offset in the message), and that hostile input (truncations, flipped bytes,
// random bytes, deep nesting) only ever ends in keyhold::Error.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <random>
#include <string>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/pki/der.hpp"

namespace keyhold::pki::der {
namespace {

using Bytes = std::vector<std::uint8_t>;

// The message of the keyhold::Error that f throws (fails the test otherwise).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "no keyhold::Error thrown";
  return {};
}

Bytes bytes_of(std::span<const std::uint8_t> span) { return Bytes(span.begin(), span.end()); }

Bytes text_element(std::uint8_t tag, std::string_view text) {
  // Built by push_back: g++ 12 -O2 gives a false -Warray-bounds on a range insert here.
  Bytes out{tag, static_cast<std::uint8_t>(text.size())};
  for (char c : text) out.push_back(static_cast<std::uint8_t>(c));
  return out;
}

// A self-signed P-256 certificate made by OpenSSL, and its TBS as OpenSSL encodes it.
struct OpenSslCertificate {
  Bytes der;
  Bytes tbs;
};

OpenSslCertificate make_certificate() {
  CPtr<EVP_PKEY, &EVP_PKEY_free> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  CPtr<X509, &X509_free> cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set_int64(X509_get_serialNumber(cert.get()), 0x1234567890abcdefLL);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("der test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_sign(cert.get(), key.get(), EVP_sha256());
  OpenSslCertificate out;
  unsigned char* buffer = nullptr;
  int length = i2d_X509(cert.get(), &buffer);
  out.der.assign(buffer, buffer + length);
  OPENSSL_free(buffer);
  buffer = nullptr;
  length = i2d_re_X509_tbs(cert.get(), &buffer);
  out.tbs.assign(buffer, buffer + length);
  OPENSSL_free(buffer);
  return out;
}

TEST(Der, ParsesShortAndLongLengths) {
  const Bytes short_form{0x04, 0x03, 0xaa, 0xbb, 0xcc};
  const Element a = parse(short_form);
  EXPECT_TRUE(a.is_universal(kOctetString));
  EXPECT_FALSE(a.constructed);
  EXPECT_EQ(bytes_of(a.content), (Bytes{0xaa, 0xbb, 0xcc}));
  EXPECT_EQ(bytes_of(a.encoded), short_form);
  EXPECT_EQ(a.content_offset, 2u);

  Bytes long_form{0x04, 0x81, 0x80};
  long_form.resize(3 + 0x80, 0x5a);
  const Element b = parse(long_form);
  EXPECT_EQ(b.content.size(), 0x80u);
  EXPECT_EQ(b.content_offset, 3u);

  Bytes two_octets{0x04, 0x82, 0x01, 0x00};
  two_octets.resize(4 + 0x100, 0x01);
  EXPECT_EQ(parse(two_octets).content.size(), 0x100u);
}

TEST(Der, RefusesIndefiniteLength) {
  EXPECT_EQ(error_of([] { parse(Bytes{0x30, 0x80, 0x00, 0x00}); }), "DER: indefinite length is not DER at offset 0");
}

TEST(Der, RefusesNonMinimalLength) {
  Bytes long_for_short{0x04, 0x81, 0x05, 1, 2, 3, 4, 5};
  EXPECT_EQ(error_of([&] { parse(long_for_short); }), "DER: length is not minimally encoded at offset 0");
  Bytes leading_zero{0x04, 0x82, 0x00, 0x80};
  leading_zero.resize(4 + 0x80);
  EXPECT_EQ(error_of([&] { parse(leading_zero); }), "DER: length is not minimally encoded at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x04, 0x85, 1, 0, 0, 0, 0}); }), "DER: length is too large at offset 0");
}

TEST(Der, ReportsLengthPastTheEndWithItsOffset) {
  EXPECT_EQ(error_of([] { parse(Bytes{0x30, 0x03, 0x02, 0x01}); }), "DER: length runs past the end at offset 0");
  // The outer SEQUENCE is whole; its second child claims 5 octets where none are left.
  const Bytes inner_short{0x30, 0x05, 0x02, 0x01, 0x01, 0x04, 0x05};
  const Element outer = parse(inner_short);
  Reader reader(outer);
  EXPECT_EQ(reader.next().offset, 2u);
  EXPECT_EQ(error_of([&] { reader.next(); }), "DER: length runs past the end at offset 5");
  EXPECT_EQ(error_of([] { parse(Bytes{0x04, 0x82, 0x01}); }), "DER: length runs past the end at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x04}); }), "DER: length runs past the end at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{}); }), "DER: expected an element, found the end at offset 0");
}

TEST(Der, BaseOffsetIsAddedToMessages) {
  EXPECT_EQ(error_of([] { parse(Bytes{0x30, 0x03}, 100); }), "DER: length runs past the end at offset 100");
}

TEST(Der, RefusesTrailingBytes) {
  EXPECT_EQ(error_of([] { parse(Bytes{0x05, 0x00, 0x05, 0x00}); }), "DER: trailing bytes after the element at offset 2");
}

TEST(Der, HighTagNumbersMustBeMinimal) {
  const Element high = parse(Bytes{0x9f, 0x1f, 0x00});
  EXPECT_TRUE(high.is_context(31));
  EXPECT_EQ(parse(Bytes{0xbf, 0x81, 0x00, 0x00}).tag_number, 128u);
  EXPECT_EQ(error_of([] { parse(Bytes{0x9f, 0x1e, 0x00}); }), "DER: tag number is not minimally encoded at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x9f, 0x80, 0x20, 0x00}); }), "DER: tag number is not minimally encoded at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x9f, 0x81}); }), "DER: tag number runs past the end at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x9f, 0x8f, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00}); }),
            "DER: tag number is too large at offset 0");
}

TEST(Der, RefusesWrongPrimitiveOrConstructedForm) {
  EXPECT_EQ(error_of([] { parse(Bytes{0x24, 0x00}); }), "DER: constructed OCTET STRING is not DER at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x33, 0x00}); }), "DER: constructed PrintableString is not DER at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x10, 0x00}); }), "DER: SEQUENCE is not constructed at offset 0");
  EXPECT_EQ(error_of([] { parse(Bytes{0x00, 0x00}); }), "DER: end-of-contents (indefinite length) is not DER at offset 0");
  EXPECT_EQ(error_of([] { children(parse(Bytes{0x04, 0x00})); }),
            "DER: expected a constructed element, found primitive OCTET STRING at offset 0");
}

TEST(Der, ReaderExpectsTagsAndOptionalFields) {
  // SEQUENCE { [0] EXPLICIT INTEGER 2, INTEGER 5, NULL }
  const Bytes input{0x30, 0x0a, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x05, 0x05, 0x00};
  const Element sequence = parse(input);
  Reader reader(sequence);
  EXPECT_FALSE(reader.next_if(TagClass::ContextSpecific, 1).has_value());
  const std::optional<Element> version = reader.next_if(TagClass::ContextSpecific, 0);
  ASSERT_TRUE(version.has_value());
  EXPECT_EQ(read_int64(explicit_inner(*version)), 2);
  EXPECT_EQ(error_of([&] { reader.next(TagClass::Universal, kSequence, "the thing"); }),
            "DER: expected the thing, found INTEGER at offset 7");
  EXPECT_EQ(read_int64(reader.next(TagClass::Universal, kInteger, "INTEGER")), 5);
  EXPECT_EQ(error_of([&] { reader.expect_end("the INTEGER"); }), "DER: unexpected NULL after the INTEGER at offset 10");
  read_null(reader.next());
  EXPECT_TRUE(reader.at_end());
  reader.expect_end("NULL");
  EXPECT_EQ(error_of([&] { reader.next(); }), "DER: expected an element, found the end at offset 12");
  EXPECT_EQ(error_of([&] { reader.next(TagClass::Universal, kInteger, "INTEGER"); }),
            "DER: expected INTEGER, found the end at offset 12");

  // Offsets and spans of children are absolute and exact.
  const std::vector<Element> kids = children(sequence);
  ASSERT_EQ(kids.size(), 3u);
  EXPECT_EQ(kids[1].offset, 7u);
  EXPECT_EQ(kids[1].content_offset, 9u);
  EXPECT_EQ(bytes_of(kids[1].encoded), (Bytes{0x02, 0x01, 0x05}));
  EXPECT_EQ(kids[1].depth, 1u);
}

TEST(Der, ExplicitTagsHoldExactlyOneElement) {
  EXPECT_EQ(error_of([] { explicit_inner(parse(Bytes{0x80, 0x01, 0x02})); }),
            "DER: expected a constructed element, found primitive [0] at offset 0");
  EXPECT_EQ(error_of([] { explicit_inner(parse(Bytes{0xa0, 0x04, 0x05, 0x00, 0x05, 0x00})); }),
            "DER: unexpected NULL after the explicitly tagged element at offset 4");
  EXPECT_EQ(error_of([] { explicit_inner(parse(Bytes{0x30, 0x02, 0x05, 0x00})); }),
            "DER: expected an EXPLICIT tag, found SEQUENCE at offset 0");
}

TEST(Der, IntegersKeepTheirBytes) {
  // Spans point into the input: keep it alive while they are used.
  const Bytes input{0x02, 0x02, 0x00, 0x80};
  const Integer positive = read_integer(parse(input));
  EXPECT_FALSE(positive.negative());
  EXPECT_TRUE(positive.minimal());
  EXPECT_EQ(bytes_of(positive.content), (Bytes{0x00, 0x80}));
  EXPECT_TRUE(read_integer(parse(Bytes{0x02, 0x01, 0x80})).negative());
  EXPECT_TRUE(read_integer(parse(Bytes{0x02, 0x01, 0x00})).zero());
  EXPECT_EQ(error_of([] { read_integer(parse(Bytes{0x02, 0x02, 0x00, 0x01})); }),
            "DER: INTEGER is not minimally encoded at offset 0");
  EXPECT_EQ(error_of([] { read_integer(parse(Bytes{0x02, 0x02, 0xff, 0x80})); }),
            "DER: INTEGER is not minimally encoded at offset 0");
  EXPECT_FALSE(read_integer_unchecked(parse(Bytes{0x02, 0x02, 0x00, 0x01})).minimal());
  EXPECT_EQ(error_of([] { read_integer_unchecked(parse(Bytes{0x02, 0x00})); }), "DER: INTEGER has no content octets at offset 0");
  EXPECT_EQ(error_of([] { read_integer(parse(Bytes{0x05, 0x00})); }), "DER: expected INTEGER, found NULL at offset 0");
}

TEST(Der, ReadsSmallIntegersAndEnumerated) {
  EXPECT_EQ(read_int64(parse(Bytes{0x02, 0x01, 0xff})), -1);
  EXPECT_EQ(read_int64(parse(Bytes{0x02, 0x02, 0x00, 0x80})), 128);
  EXPECT_EQ(read_int64(parse(Bytes{0x0a, 0x01, 0x05})), 5);
  EXPECT_EQ(read_int64(parse(Bytes{0x02, 0x08, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})), INT64_MAX);
  EXPECT_EQ(read_int64(parse(Bytes{0x02, 0x08, 0x80, 0, 0, 0, 0, 0, 0, 0})), INT64_MIN);
  EXPECT_EQ(error_of([] { read_int64(parse(Bytes{0x02, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})); }),
            "DER: INTEGER does not fit in 64 bits at offset 0");
  EXPECT_EQ(error_of([] { read_int64(parse(Bytes{0x0a, 0x02, 0x00, 0x05})); }),
            "DER: ENUMERATED is not minimally encoded at offset 0");
}

TEST(Der, ReadsObjectIdentifiers) {
  const Bytes rsa_input{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};
  const Oid rsa = read_oid(parse(rsa_input));
  EXPECT_EQ(rsa.dotted, "1.2.840.113549.1.1.11");
  EXPECT_EQ(bytes_of(rsa.raw), (Bytes{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}));
  EXPECT_EQ(read_oid(parse(Bytes{0x06, 0x03, 0x55, 0x1d, 0x11})).dotted, "2.5.29.17");
  EXPECT_EQ(read_oid(parse(Bytes{0x06, 0x01, 0x00})).dotted, "0.0");
  EXPECT_EQ(read_oid(parse(Bytes{0x06, 0x02, 0x88, 0x37})).dotted, "2.999");
  // A UUID arc (RFC 4122 section 4.3 / X.667): 2.25.<128-bit integer>.
  const Bytes uuid_oid{0x06, 0x14, 0x69, 0x83, 0xf0, 0x9d, 0xa7, 0xeb, 0xcf, 0xde, 0xe0, 0xc7, 0xa1,
                       0xa7, 0xb2, 0xc0, 0x94, 0x8c, 0xc8, 0xf9, 0xd7, 0x76};
  EXPECT_EQ(read_oid(parse(uuid_oid)).dotted, "2.25.329800735698586629295641978511506172918");
  EXPECT_EQ(error_of([] { read_oid(parse(Bytes{0x06, 0x00})); }), "DER: OBJECT IDENTIFIER is empty at offset 0");
  EXPECT_EQ(error_of([] { read_oid(parse(Bytes{0x06, 0x02, 0x55, 0x86})); }),
            "DER: OBJECT IDENTIFIER ends inside a subidentifier at offset 0");
  EXPECT_EQ(error_of([] { read_oid(parse(Bytes{0x06, 0x03, 0x55, 0x80, 0x01})); }),
            "DER: OBJECT IDENTIFIER subidentifier is not minimally encoded at offset 0");
  Bytes huge_arc{0x06, 0x16, 0x55};
  huge_arc.insert(huge_arc.end(), 20, 0xff);
  huge_arc.push_back(0x01);
  EXPECT_EQ(error_of([&] { read_oid(parse(huge_arc)); }), "DER: OBJECT IDENTIFIER subidentifier is too large at offset 0");
}

TEST(Der, BooleansAreStrict) {
  EXPECT_TRUE(read_boolean(parse(Bytes{0x01, 0x01, 0xff})));
  EXPECT_FALSE(read_boolean(parse(Bytes{0x01, 0x01, 0x00})));
  EXPECT_EQ(error_of([] { read_boolean(parse(Bytes{0x01, 0x01, 0x01})); }),
            "DER: BOOLEAN is neither 0x00 nor 0xFF at offset 0");
  EXPECT_EQ(error_of([] { read_boolean(parse(Bytes{0x01, 0x02, 0xff, 0xff})); }), "DER: BOOLEAN is not one octet at offset 0");
}

TEST(Der, BitStringsNumberBitsFromTheTop) {
  // keyUsage keyCertSign (5) + cRLSign (6): 0000 0110, one unused bit.
  const Bytes input{0x03, 0x02, 0x01, 0x06};
  const BitString usage = read_bit_string(parse(input));
  EXPECT_EQ(usage.unused_bits, 1);
  EXPECT_FALSE(usage.bit(0));
  EXPECT_TRUE(usage.bit(5));
  EXPECT_TRUE(usage.bit(6));
  EXPECT_FALSE(usage.bit(7));
  EXPECT_FALSE(usage.bit(100));
  EXPECT_TRUE(read_bit_string(parse(Bytes{0x03, 0x01, 0x00})).bytes.empty());
  EXPECT_EQ(error_of([] { read_bit_string(parse(Bytes{0x03, 0x02, 0x01, 0x07})); }),
            "DER: BIT STRING unused bits are not zero at offset 0");
  EXPECT_EQ(error_of([] { read_bit_string(parse(Bytes{0x03, 0x02, 0x08, 0x00})); }),
            "DER: BIT STRING has more than 7 unused bits at offset 0");
  EXPECT_EQ(error_of([] { read_bit_string(parse(Bytes{0x03, 0x01, 0x01})); }),
            "DER: empty BIT STRING has unused bits at offset 0");
  EXPECT_EQ(error_of([] { read_bit_string(parse(Bytes{0x03, 0x00})); }),
            "DER: BIT STRING has no unused-bits octet at offset 0");
}

TEST(Der, DecodesRfc5280Times) {
  using namespace std::chrono;
  const Time utc = read_time(parse(text_element(0x17, "250102030405Z")));
  EXPECT_EQ(utc.tag_number, kUtcTime);
  EXPECT_EQ(utc.text, "250102030405Z");
  ASSERT_TRUE(utc.value.has_value());
  EXPECT_EQ(*utc.value, sys_days{2025y / January / 2} + 3h + 4min + 5s);
  // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, YY < 50 is 20YY.
  EXPECT_EQ(*read_time(parse(text_element(0x17, "500101000000Z"))).value, sys_days{1950y / January / 1});
  EXPECT_EQ(*read_time(parse(text_element(0x17, "491231235959Z"))).value,
            sys_days{2049y / December / 31} + 23h + 59min + 59s);
  EXPECT_EQ(*read_time(parse(text_element(0x18, "20500101000000Z"))).value, sys_days{2050y / January / 1});
  EXPECT_TRUE(read_time(parse(text_element(0x17, "240229000000Z"))).value.has_value());
}

TEST(Der, KeepsOtherTimeFormsWithoutAValue) {
  for (std::string_view text : {"2501010000Z", "250101000000+0100", "250101000000", "250230000000Z", "230229000000Z",
                                "251301000000Z", "250101240000Z", "250101006000Z", "250101000060Z", "25010100000aZ"}) {
    const Time t = read_time(parse(text_element(0x17, text)));
    EXPECT_EQ(t.text, text);
    EXPECT_FALSE(t.value.has_value()) << text;
  }
  for (std::string_view text : {"20500101000000.5Z", "205001010000Z", "20500101000000"}) {
    EXPECT_FALSE(read_time(parse(text_element(0x18, text))).value.has_value()) << text;
  }
  EXPECT_EQ(error_of([] { read_time(parse(text_element(0x17, "2501010000\x01Z"))); }),
            "DER: UTCTime holds a byte that is not visible ASCII at offset 0");
  EXPECT_EQ(error_of([] { read_time(parse(Bytes{0x04, 0x00})); }),
            "DER: expected UTCTime or GeneralizedTime, found OCTET STRING at offset 0");
}

TEST(Der, ReadsStringsAndChecksCharsets) {
  const Bytes input = text_element(0x13, "Example Ltd.");
  const String printable = read_string(parse(input));
  EXPECT_EQ(printable.tag_number, kPrintableString);
  EXPECT_EQ(printable.text, "Example Ltd.");
  EXPECT_EQ(read_string(parse(text_element(0x0c, "caf\xc3\xa9"))).tag_number, kUtf8String);
  EXPECT_EQ(read_string(parse(text_element(0x1e, std::string_view("\0A", 2)))).tag_number, kBmpString);
  EXPECT_EQ(error_of([] { read_string(parse(Bytes{0x02, 0x01, 0x01})); }),
            "DER: expected a character string, found INTEGER at offset 0");

  EXPECT_TRUE(is_printable_string("Az09 '()+,-./:=?"));
  EXPECT_FALSE(is_printable_string("a@b"));
  EXPECT_FALSE(is_printable_string("a_b"));
  EXPECT_FALSE(is_printable_string("a*b"));
  EXPECT_FALSE(is_printable_string("a\x01"));

  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"));  // é € 𝄞
  EXPECT_FALSE(is_valid_utf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\x80"));              // lone continuation

  EXPECT_TRUE(is_ia5_string("user@example.com"));
  EXPECT_FALSE(is_ia5_string("caf\xc3\xa9"));
}

Bytes nested_sequences(std::size_t levels) {
  Bytes out;
  for (std::size_t i = 0; i < levels; ++i) {
    Bytes wrapped{0x30};
    if (out.size() < 0x80) {
      wrapped.push_back(static_cast<std::uint8_t>(out.size()));
    } else {
      wrapped.push_back(0x81);
      wrapped.push_back(static_cast<std::uint8_t>(out.size()));
    }
    wrapped.insert(wrapped.end(), out.begin(), out.end());
    out = std::move(wrapped);
  }
  return out;
}

TEST(Der, NestingIsBounded) {
  EXPECT_NO_THROW(validate(nested_sequences(kMaxDepth)));
  EXPECT_EQ(error_of([] { validate(nested_sequences(kMaxDepth + 1)); }),
            "DER: nesting is deeper than 32 levels at offset 64");
  EXPECT_THROW(validate(nested_sequences(100)), Error);
}

TEST(Der, WalksAnOpenSslCertificate) {
  const OpenSslCertificate cert = make_certificate();
  EXPECT_NO_THROW(validate(cert.der));
  const Element certificate = parse(cert.der);
  const std::vector<Element> parts = children(certificate);
  ASSERT_EQ(parts.size(), 3u);
  // The TBS span is exactly what OpenSSL signs.
  EXPECT_EQ(bytes_of(parts[0].encoded), cert.tbs);
  EXPECT_EQ(bytes_of(parts[1].encoded), (Bytes{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}));
  EXPECT_TRUE(parts[2].is_universal(kBitString));
  Reader tbs(parts[0]);
  EXPECT_EQ(read_int64(explicit_inner(tbs.next(TagClass::ContextSpecific, 0, "version"))), 2);
  EXPECT_EQ(bytes_of(read_integer(tbs.next()).content), (Bytes{0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef}));
}

// Walks input as deeply as validate() does; anything but keyhold::Error is a defect.
void expect_only_keyhold_errors(std::span<const std::uint8_t> input) {
  try {
    validate(input);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(std::string_view(e.what()).substr(0, 5), "DER: ");
  }
}

TEST(Der, EveryTruncationOfACertificateIsRefused) {
  const OpenSslCertificate cert = make_certificate();
  for (std::size_t length = 0; length < cert.der.size(); ++length) {
    // A copy of exactly the prefix, so AddressSanitizer sees any read past it.
    const Bytes prefix(cert.der.begin(), cert.der.begin() + static_cast<std::ptrdiff_t>(length));
    EXPECT_THROW(validate(prefix), Error) << "prefix of " << length << " bytes";
  }
}

TEST(Der, FlippedBytesAndRandomInputNeverCrash) {
  const OpenSslCertificate cert = make_certificate();
  std::mt19937 random(20240611);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 20000; ++round) {
    Bytes mutated = cert.der;
    const int flips = 1 + round % 4;
    for (int i = 0; i < flips; ++i) {
      mutated[std::uniform_int_distribution<std::size_t>(0, mutated.size() - 1)(random)] = static_cast<std::uint8_t>(byte(random));
    }
    if (round % 3 == 0) mutated.resize(std::uniform_int_distribution<std::size_t>(0, mutated.size())(random));
    expect_only_keyhold_errors(mutated);
  }
  for (int round = 0; round < 20000; ++round) {
    Bytes noise(std::uniform_int_distribution<std::size_t>(0, 64)(random));
    for (std::uint8_t& b : noise) b = static_cast<std::uint8_t>(byte(random));
    // Bias towards plausible headers so that the readers behind them run too.
    if (!noise.empty() && round % 2 == 0) noise[0] = static_cast<std::uint8_t>(0x30);
    if (noise.size() > 1 && round % 2 == 0) noise[1] = static_cast<std::uint8_t>(noise.size() - 2);
    expect_only_keyhold_errors(noise);
  }
}

}  // namespace
}  // namespace keyhold::pki::der
