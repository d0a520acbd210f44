// The kh1 ciphertext format without a token: binary and text forms, the
// canonical context, the associated data, every refusal, and AES-256-GCM in
// OpenSSL standing in for the token's KEK to show that the AAD binds the
// header and the context (docs/ciphertext-format.md).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/envelope/ciphertext.hpp"

namespace keyhold::envelope {
namespace {

using Bytes = std::vector<std::uint8_t>;
using CipherCtxPtr = CPtr<EVP_CIPHER_CTX, &EVP_CIPHER_CTX_free>;

// Runs f and returns the InvalidArgument message it throws ("" when it does not throw).
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message is not one line: " << message;
    return message;
  }
  return "";
}

#define EXPECT_REFUSED(expr, fragment)                                                    \
  do {                                                                                    \
    std::string message_ = refusal([&] { (void)(expr); });                                \
    EXPECT_NE(message_, "") << #expr " was accepted";                                     \
    EXPECT_NE(message_.find(fragment), std::string::npos) << "message was: " << message_; \
  } while (false)

Bytes hex(std::string_view text) {
  std::string digits;
  for (char c : text) {
    if (c != ' ' && c != '\n') digits.push_back(c);
  }
  std::optional<Bytes> bytes = from_hex(digits);
  if (!bytes) throw std::runtime_error("bad hex in test");
  return *bytes;
}

Bytes as_bytes(std::string_view text) { return Bytes(text.begin(), text.end()); }

// kek_id 00..0f, version 0x01020304, IV a0..ab, sealed = plaintext_size + 16 bytes of 0xcc.
Ciphertext example(std::size_t plaintext_size = 3) {
  Ciphertext c;
  for (std::size_t i = 0; i < kKekIdBytes; ++i) c.kek_id[i] = static_cast<std::uint8_t>(i);
  c.kek_version = 0x01020304;
  for (std::size_t i = 0; i < kIvBytes; ++i) c.iv[i] = static_cast<std::uint8_t>(0xa0 + i);
  c.sealed.assign(plaintext_size + kTagBytes, 0xcc);
  return c;
}

// base64url without padding, made from OpenSSL's base64 as an independent encoder.
std::string openssl_base64url(const Bytes& bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  std::replace(out.begin(), out.end(), '+', '-');
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

// ---- binary form ----

TEST(CiphertextFormat, EncodesEachFieldAtItsOffset) {
  Bytes encoded = encode(example(3));
  ASSERT_EQ(encoded.size(), 33u + 3 + 16);
  EXPECT_EQ(encoded[0], 0x01);  // format version
  for (std::size_t i = 0; i < 16; ++i) EXPECT_EQ(encoded[1 + i], i) << "KEK id byte " << i;
  EXPECT_EQ(encoded[17], 0x01);  // KEK version, big-endian
  EXPECT_EQ(encoded[18], 0x02);
  EXPECT_EQ(encoded[19], 0x03);
  EXPECT_EQ(encoded[20], 0x04);
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(encoded[21 + i], 0xa0 + i) << "IV byte " << i;
  for (std::size_t i = 33; i < encoded.size(); ++i) EXPECT_EQ(encoded[i], 0xcc) << "sealed byte " << i;

  EXPECT_EQ(encoded, hex("01 000102030405060708090a0b0c0d0e0f 01020304 a0a1a2a3a4a5a6a7a8a9aaab"
                         "cccccc cccccccccccccccccccccccccccccccc"));
  Bytes header = header_bytes(example(3));
  EXPECT_EQ(header.size(), kHeaderBytes);
  EXPECT_EQ(header, Bytes(encoded.begin(), encoded.begin() + 33));
}

TEST(CiphertextFormat, BinaryRoundTripsEmptyAndLargestPayloads) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{32}, kMaxPlaintextBytes}) {
    Ciphertext c = example(size);
    for (std::size_t i = 0; i < c.sealed.size(); ++i) c.sealed[i] = static_cast<std::uint8_t>(i * 7 + 1);
    c.kek_version = 1;
    Bytes encoded = encode(c);
    EXPECT_EQ(encoded.size(), kHeaderBytes + size + kTagBytes);
    EXPECT_EQ(decode(encoded), c) << size;
  }
  Ciphertext top = example(0);
  top.kek_version = 0xffffffff;
  EXPECT_EQ(decode(encode(top)).kek_version, 0xffffffffu);
}

TEST(CiphertextFormat, DecodeRefusesEmptyInput) { EXPECT_REFUSED(decode(Bytes{}), "empty"); }

TEST(CiphertextFormat, DecodeRefusesUnknownFormatVersion) {
  Bytes encoded = encode(example());
  encoded[0] = 2;
  EXPECT_REFUSED(decode(encoded), "unknown ciphertext format version 2; this keyhold reads version 1");
  encoded[0] = 0;
  EXPECT_REFUSED(decode(encoded), "format version 0;");
  encoded[0] = 0xff;
  EXPECT_REFUSED(decode(encoded), "format version 255;");
  // The version is checked first, whatever follows it.
  EXPECT_REFUSED(decode(Bytes{7}), "format version 7;");
}

TEST(CiphertextFormat, DecodeRefusesTruncatedInput) {
  Bytes encoded = encode(example(0));
  ASSERT_EQ(encoded.size(), kMinEncodedBytes);
  EXPECT_NO_THROW(decode(encoded));
  for (std::size_t size : {std::size_t{1}, std::size_t{20}, std::size_t{33}, kMinEncodedBytes - 1}) {
    EXPECT_REFUSED(decode(std::span(encoded).first(size)), "truncated: " + std::to_string(size) + " bytes");
  }
}

TEST(CiphertextFormat, DecodeRefusesKekVersionZero) {
  Bytes encoded = encode(example());
  encoded[17] = encoded[18] = encoded[19] = encoded[20] = 0;
  EXPECT_REFUSED(decode(encoded), "KEK version 0");
}

TEST(CiphertextFormat, DecodeRefusesOversizeInput) {
  Bytes encoded = encode(example(kMaxPlaintextBytes));
  ASSERT_EQ(encoded.size(), kMaxEncodedBytes);
  encoded.push_back(0);
  EXPECT_REFUSED(decode(encoded), "too large: 4146 bytes, at most 4145");
}

TEST(CiphertextFormat, EncodeRefusesWhatDecodeWouldRefuse) {
  Ciphertext c = example();
  c.kek_version = 0;
  EXPECT_REFUSED(encode(c), "KEK version 0");
  EXPECT_REFUSED(to_text(c), "KEK version 0");
  EXPECT_REFUSED(header_bytes(c), "KEK version 0");
  c = example();
  c.sealed.resize(kTagBytes - 1);
  EXPECT_REFUSED(encode(c), "shorter than the 16-byte authentication tag");
  c.sealed.resize(kMaxSealedBytes + 1);
  EXPECT_REFUSED(encode(c), "at most 4112");
}

// ---- text form ----

TEST(CiphertextText, IsPrefixAndUnpaddedBase64Url) {
  for (std::size_t size = 0; size < 6; ++size) {  // every length modulo 3
    Ciphertext c = example(size);
    std::string text = to_text(c);
    EXPECT_EQ(text, "kh1:" + openssl_base64url(encode(c))) << size;
    EXPECT_EQ(text.find('='), std::string::npos);
    EXPECT_EQ(from_text(text), c) << size;
  }
  // The header of example(): 01 000102... encodes to a known prefix.
  EXPECT_EQ(to_text(example()).substr(0, 12), "kh1:AQABAgME");
}

TEST(CiphertextText, RoundTripsEmptyAndLargestPayloads) {
  for (std::size_t size : {std::size_t{0}, kMaxPlaintextBytes}) {
    Ciphertext c = example(size);
    for (std::size_t i = 0; i < c.sealed.size(); ++i) c.sealed[i] = static_cast<std::uint8_t>(i * 13 + 5);
    EXPECT_EQ(from_text(to_text(c)), c) << size;
  }
}

TEST(CiphertextText, UsesTheUrlSafeAlphabet) {
  Ciphertext c = example(0);
  // fb ef be encodes as "----", ff ff ff as "____" (62 and 63 in every
  // position); the KEK id starts at offset 1, so they go at offsets 3 and 6.
  c.kek_id = {0, 0, 0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
  std::string text = to_text(c);
  EXPECT_EQ(text.substr(4, 12), "AQAA----____") << text;
  EXPECT_EQ(text.find('+'), std::string::npos);
  EXPECT_EQ(text.find('/'), std::string::npos);
  EXPECT_EQ(from_text(text), c);

  std::string standard = text;
  std::replace(standard.begin(), standard.end(), '-', '+');
  EXPECT_REFUSED(from_text(standard), "outside the alphabet");
  standard = text;
  std::replace(standard.begin(), standard.end(), '_', '/');
  EXPECT_REFUSED(from_text(standard), "outside the alphabet");
}

TEST(CiphertextText, TrimsSurroundingAsciiWhitespace) {
  Ciphertext c = example();
  std::string text = to_text(c);
  for (const std::string& padded : {text + "\n", text + "\r\n", "  " + text + " \t\n\n", "\n" + text, text + "\f\v"}) {
    EXPECT_EQ(from_text(padded), c);
  }
}

TEST(CiphertextText, RefusesWhitespaceInside) {
  std::string text = to_text(example());
  EXPECT_REFUSED(from_text(text.substr(0, 20) + "\n" + text.substr(20)), "character 21 is outside the alphabet");
  EXPECT_REFUSED(from_text(text.substr(0, 20) + " " + text.substr(20)), "outside the alphabet");
  EXPECT_REFUSED(from_text("kh1: " + text.substr(4)), "outside the alphabet");
  // Non-breaking space (U+00A0) is not ASCII whitespace.
  EXPECT_REFUSED(from_text(text + "\xc2\xa0"), "outside the alphabet");
}

TEST(CiphertextText, RefusesOtherPrefixes) {
  std::string body = to_text(example()).substr(4);
  EXPECT_REFUSED(from_text("kh2:" + body), "unknown ciphertext format version 2; this keyhold reads version 1");
  EXPECT_REFUSED(from_text("kh10:" + body), "format version 10;");
  EXPECT_REFUSED(from_text("kh0:" + body), "format version 0;");
  EXPECT_REFUSED(from_text("kh" + std::string(40, '9') + ":" + body), "format version 9999999999...;");
  for (const std::string& text : {body, "KH1:" + body, "kh:" + body, "kh1" + body, "kh1;" + body, "khx:" + body,
                                  std::string(), std::string("  \n"), std::string("hello secret world")}) {
    std::string message = refusal([&] { from_text(text); });
    EXPECT_NE(message.find("not a keyhold ciphertext"), std::string::npos) << message;
    EXPECT_EQ(message.find("secret"), std::string::npos) << "echoes its input: " << message;
  }
}

TEST(CiphertextText, RefusesPadding) {
  std::string text = to_text(example(1));  // 50 bytes: 67 characters, standard base64 would add one '='
  ASSERT_EQ((text.size() - 4) % 4, 3u);
  EXPECT_REFUSED(from_text(text + "="), "'=' padding");
  EXPECT_REFUSED(from_text(text.substr(0, text.size() - 1) + "="), "'=' padding");
}

TEST(CiphertextText, RefusesImpossibleLengths) {
  std::string text = to_text(example(2));  // 51 bytes: 68 characters, a multiple of 4
  ASSERT_EQ((text.size() - 4) % 4, 0u);
  EXPECT_REFUSED(from_text(text + "A"), "69 characters after the prefix is an impossible length");
  EXPECT_REFUSED(from_text("kh1:A"), "impossible length");
}

TEST(CiphertextText, RefusesNonCanonicalTrailingBits) {
  // Sets the lowest bit of the last character's 6-bit value: always an unused bit.
  auto set_low_bit = [](std::string text) {
    static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    text.back() = kAlphabet[kAlphabet.find(text.back()) ^ 1];
    return text;
  };
  // 50 bytes: the last of 67 characters carries 2 unused bits.
  std::string text = to_text(example(1));
  ASSERT_EQ((text.size() - 4) % 4, 3u);
  EXPECT_REFUSED(from_text(set_low_bit(text)), "unused bits");
  // 52 bytes: the last of 70 characters carries 4 unused bits.
  text = to_text(example(3));
  ASSERT_EQ((text.size() - 4) % 4, 2u);
  EXPECT_REFUSED(from_text(set_low_bit(text)), "unused bits");
  // 51 bytes: no unused bits; any last character is canonical.
  text = to_text(example(2));
  ASSERT_EQ((text.size() - 4) % 4, 0u);
  EXPECT_NO_THROW(from_text(set_low_bit(text)));
}

TEST(CiphertextText, RefusesWhatDecodeRefuses) {
  EXPECT_REFUSED(from_text("kh1:"), "empty");
  EXPECT_REFUSED(from_text("kh1:" + openssl_base64url(Bytes{1, 2, 3})), "truncated");
  Bytes encoded = encode(example());
  encoded[0] = 3;
  EXPECT_REFUSED(from_text("kh1:" + openssl_base64url(encoded)), "format version 3;");
  encoded = encode(example());
  encoded[17] = encoded[18] = encoded[19] = encoded[20] = 0;
  EXPECT_REFUSED(from_text("kh1:" + openssl_base64url(encoded)), "KEK version 0");
  encoded = encode(example(kMaxPlaintextBytes));
  encoded.push_back(0);
  EXPECT_REFUSED(from_text("kh1:" + openssl_base64url(encoded)), "too large");
  EXPECT_REFUSED(from_text("kh1:" + std::string(100000, 'A')), "too large");
}

TEST(CiphertextText, ParseAnyTakesBothForms) {
  Ciphertext c = example(5);
  EXPECT_EQ(parse_any(encode(c)), c);
  EXPECT_EQ(parse_any(as_bytes(to_text(c))), c);
  EXPECT_EQ(parse_any(as_bytes(to_text(c) + "\n")), c);
  EXPECT_EQ(parse_any(as_bytes("\n " + to_text(c) + "\n")), c);
  // Text with a wrong version is read as text, so the message is about the version.
  EXPECT_REFUSED(parse_any(as_bytes("kh2:" + to_text(c).substr(4))), "format version 2;");
  EXPECT_REFUSED(parse_any(as_bytes(to_text(c) + "!")), "outside the alphabet");
  // Printable text that is not the text form is not a ciphertext (rather than "format version 104").
  EXPECT_REFUSED(parse_any(as_bytes("hello")), "not a keyhold ciphertext");
  EXPECT_REFUSED(parse_any(as_bytes("garbage\n")), "not a keyhold ciphertext");
  // Anything else is binary.
  EXPECT_REFUSED(parse_any(Bytes{}), "empty");
  EXPECT_REFUSED(parse_any(Bytes{104, 0, 1}), "format version 104;");
}

// ---- context ----

TEST(CiphertextContext, CanonicalFormIsSortedAndLengthPrefixed) {
  Context ba;
  ba["b"] = "2";
  ba["a"] = "1";
  Context ab;
  ab["a"] = "1";
  ab["b"] = "2";
  Bytes expected = hex("00000002  00000001 61  00000001 31  00000001 62  00000001 32");
  EXPECT_EQ(canonical_context(ba), expected);
  EXPECT_EQ(canonical_context(ab), expected);

  EXPECT_EQ(canonical_context({}), hex("00000000"));
  EXPECT_EQ(canonical_context({{"tenant", ""}}), hex("00000001 00000006 74656e616e74 00000000"));
  // A value may hold '=', spaces and non-ASCII text.
  EXPECT_EQ(canonical_context({{"k", "a=b c\xc3\xa9"}}), hex("00000001 00000001 6b 00000007 613d622063c3a9"));
}

TEST(CiphertextContext, OrdersKeysBytewise) {
  // 'B' (0x42) < 'a' (0x61) < "ab" < 0xc3 (a UTF-8 lead byte, above every ASCII byte).
  Context context{{"\xc3\xa9", "4"}, {"ab", "3"}, {"a", "2"}, {"B", "1"}};
  EXPECT_EQ(canonical_context(context), hex("00000004"
                                            "00000001 42 00000001 31"
                                            "00000001 61 00000001 32"
                                            "00000002 6162 00000001 33"
                                            "00000002 c3a9 00000001 34"));
}

TEST(CiphertextContext, LengthsMakeTheEncodingUnambiguous) {
  EXPECT_NE(canonical_context({{"ab", "c"}}), canonical_context({{"a", "bc"}}));
  EXPECT_NE(canonical_context({{"a", ""}, {"b", ""}}), canonical_context({{"a", "b"}}));
}

TEST(CiphertextContext, AcceptsTheLimits) {
  Context context;
  for (int i = 0; i < 63; ++i) context["k" + std::to_string(100 + i)] = std::string(1024, 'v');
  context[std::string(128, 'k')] = std::string(1024, 'v');
  ASSERT_EQ(context.size(), kMaxContextPairs);
  EXPECT_NO_THROW(canonical_context(context));
}

TEST(CiphertextContext, RefusesInvalidPairs) {
  EXPECT_REFUSED(canonical_context({{"", "x"}}), "a context key is empty");
  EXPECT_REFUSED(canonical_context({{std::string(129, 'k'), "x"}}), "is 129 bytes; at most 128");
  EXPECT_REFUSED(canonical_context({{"big", std::string(1025, 'v')}}), "value of context key 'big' is 1025 bytes");
  EXPECT_REFUSED(canonical_context({{"bad\xff", "x"}}), "context key 'bad\\xff' is not valid UTF-8");
  EXPECT_REFUSED(canonical_context({{"line\nbreak", "x"}}), "context key 'line\\x0abreak' contains a control");
  EXPECT_REFUSED(canonical_context({{"tab\t", "x"}}), "contains a control character");
  EXPECT_REFUSED(canonical_context({{"del\x7f", "x"}}), "contains a control character");
  EXPECT_REFUSED(canonical_context({{"c1\xc2\x85", "x"}}), "contains a control character");  // U+0085 NEL
  EXPECT_REFUSED(canonical_context({{"a=b", "x"}}), "contains '='");
  EXPECT_REFUSED(canonical_context({{"k", "line\nbreak"}}), "value of context key 'k' contains a control");
  EXPECT_REFUSED(canonical_context({{"k", std::string(1, '\0')}}), "value of context key 'k' contains a control");
  for (const char* invalid : {"\xc0\xaf",           // overlong '/'
                              "\xe0\x80\xaf",       // overlong
                              "\xed\xa0\x80",       // surrogate U+D800
                              "\xf4\x90\x80\x80",   // above U+10FFFF
                              "\xe2\x82",           // truncated
                              "\x80",               // lone continuation byte
                              "\xf8\x88\x80\x80\x80"}) {
    EXPECT_REFUSED(canonical_context({{"k", invalid}}), "value of context key 'k' is not valid UTF-8");
  }
  Context many;
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  EXPECT_REFUSED(canonical_context(many), "65 pairs; at most 64");
}

TEST(CiphertextContext, MessagesNeverEchoValuesAndShortenKeys) {
  std::string message = refusal([] { canonical_context({{"k", "s3cr3t-value\n"}}); });
  EXPECT_EQ(message.find("s3cr3t"), std::string::npos) << message;
  message = refusal([] { canonical_context({{std::string(200, 'x'), "v"}}); });
  EXPECT_LT(message.size(), 120u) << message;
  EXPECT_NE(message.find("...'"), std::string::npos) << message;
}

TEST(CiphertextContext, AcceptsUnicodeText) {
  EXPECT_NO_THROW(canonical_context({{"gr\xc3\xb6\xc3\x9f" "e", "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91"}}));
}

TEST(CiphertextContext, ParsesCommandLineItems) {
  EXPECT_EQ(parse_context_arguments({}), Context{});
  Context parsed = parse_context_arguments({"tenant=acme", "purpose=backup=daily", "empty="});
  EXPECT_EQ(parsed, (Context{{"tenant", "acme"}, {"purpose", "backup=daily"}, {"empty", ""}}));
}

TEST(CiphertextContext, RefusesBadCommandLineItems) {
  EXPECT_REFUSED(parse_context_arguments({"a=1", "secretvalue"}), "context item 2 has no '='");
  EXPECT_REFUSED(parse_context_arguments({"=1"}), "context item 1 has an empty key");
  EXPECT_REFUSED(parse_context_arguments({"a=1", "b=2", "a=1"}), "context key 'a' is given more than once");
  EXPECT_REFUSED(parse_context_arguments({"a=line\nbreak"}), "contains a control character");
  std::string message = refusal([] { parse_context_arguments({"secretvalue"}); });
  EXPECT_EQ(message.find("secretvalue"), std::string::npos) << message;
}

// ---- associated data ----

TEST(CiphertextAssociatedData, IsHeaderThenCanonicalContext) {
  Ciphertext c = example();
  Bytes aad = associated_data(c, {{"b", "2"}, {"a", "1"}});
  Bytes expected = header_bytes(c);
  Bytes context = hex("00000002 00000001 61 00000001 31 00000001 62 00000001 32");
  expected.insert(expected.end(), context.begin(), context.end());
  EXPECT_EQ(aad, expected);
  EXPECT_EQ(associated_data(c, {}), hex("01 000102030405060708090a0b0c0d0e0f 01020304 a0a1a2a3a4a5a6a7a8a9aaab 00000000"));
  // `sealed` is not part of it.
  Ciphertext other = c;
  other.sealed.clear();
  EXPECT_EQ(associated_data(other, {}), associated_data(c, {}));
  other.kek_version = 0;
  EXPECT_REFUSED(associated_data(other, {}), "KEK version 0");
  EXPECT_REFUSED(associated_data(c, {{"", "x"}}), "empty");
}

// ---- with AES-256-GCM (OpenSSL in place of the token) ----

const std::array<std::uint8_t, 32> kKey = [] {
  std::array<std::uint8_t, 32> key{};
  key.fill(0x42);
  return key;
}();

Bytes gcm_encrypt(const Bytes& plaintext, const std::array<std::uint8_t, kIvBytes>& iv, const Bytes& aad) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int length = 0;
  Bytes out(plaintext.size() + kTagBytes);
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, kKey.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &length, plaintext.data(), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + length, &length) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, out.data() + plaintext.size()) != 1) {
    throw std::runtime_error("AES-GCM encryption failed");
  }
  return out;
}

// nullopt when the tag does not verify.
std::optional<Bytes> gcm_decrypt(const Ciphertext& c, const Bytes& aad) {
  if (c.sealed.size() < kTagBytes) return std::nullopt;
  std::size_t n = c.sealed.size() - kTagBytes;
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int length = 0;
  Bytes out(n + 1);
  Bytes tag(c.sealed.end() - kTagBytes, c.sealed.end());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, kKey.data(), c.iv.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &length, c.sealed.data(), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) {
    throw std::runtime_error("AES-GCM decryption could not start");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + length, &length) != 1) return std::nullopt;
  out.resize(n);
  return out;
}

Ciphertext seal(const Bytes& plaintext, const Context& context) {
  Ciphertext c;
  c.kek_id = {0x5a, 0x17, 0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0};
  c.kek_version = 3;
  c.iv = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  c.sealed = gcm_encrypt(plaintext, c.iv, associated_data(c, context));
  return c;
}

TEST(CiphertextGcm, EncryptsAndDecryptsThroughBothForms) {
  const Context context{{"tenant", "acme"}, {"purpose", "db-key"}};
  for (std::size_t size : {std::size_t{0}, std::size_t{32}, kMaxPlaintextBytes}) {
    Bytes plaintext(size);
    for (std::size_t i = 0; i < size; ++i) plaintext[i] = static_cast<std::uint8_t>(i * 31 + 7);
    Ciphertext sealed = seal(plaintext, context);
    for (const Ciphertext& read : {decode(encode(sealed)), from_text(to_text(sealed)), parse_any(encode(sealed)),
                                   parse_any(as_bytes(to_text(sealed) + "\n"))}) {
      std::optional<Bytes> opened = gcm_decrypt(read, associated_data(read, context));
      ASSERT_TRUE(opened) << size;
      EXPECT_EQ(*opened, plaintext);
    }
  }
}

TEST(CiphertextGcm, AnotherContextFailsAuthentication) {
  Ciphertext sealed = seal(as_bytes("data key"), {{"tenant", "acme"}});
  EXPECT_TRUE(gcm_decrypt(sealed, associated_data(sealed, {{"tenant", "acme"}})));
  EXPECT_FALSE(gcm_decrypt(sealed, associated_data(sealed, {})));
  EXPECT_FALSE(gcm_decrypt(sealed, associated_data(sealed, {{"tenant", "acmf"}})));
  EXPECT_FALSE(gcm_decrypt(sealed, associated_data(sealed, {{"tenant", "acme"}, {"x", ""}})));
  EXPECT_FALSE(gcm_decrypt(sealed, associated_data(sealed, {{"Tenant", "acme"}})));
}

TEST(CiphertextGcm, EveryFlippedBitIsRefusedOrFailsAuthentication) {
  const Context context{{"tenant", "acme"}};
  const Bytes plaintext = as_bytes("key!");
  Bytes encoded = encode(seal(plaintext, context));
  ASSERT_EQ(encoded.size(), kHeaderBytes + 4 + kTagBytes);
  ASSERT_TRUE(gcm_decrypt(decode(encoded), associated_data(decode(encoded), context)));
  int refused = 0;
  int unauthenticated = 0;
  for (std::size_t bit = 0; bit < encoded.size() * 8; ++bit) {
    Bytes altered = encoded;
    altered[bit / 8] ^= static_cast<std::uint8_t>(1U << (bit % 8));
    std::optional<Ciphertext> read;
    try {
      read = decode(altered);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      ++refused;
      continue;
    }
    EXPECT_FALSE(gcm_decrypt(*read, associated_data(*read, context))) << "bit " << bit << " went unnoticed";
    ++unauthenticated;
  }
  // Only the version byte's 8 bits make decode refuse (KEK version 3 never
  // becomes 0 by one flip); every other flip is caught by GCM.
  EXPECT_EQ(refused, 8);
  EXPECT_EQ(refused + unauthenticated, static_cast<int>(encoded.size() * 8));
}

TEST(CiphertextGcm, VersionOneFlippedToZeroIsRefused) {
  Ciphertext c = seal(as_bytes("k"), {});
  c.kek_version = 1;
  Bytes encoded = encode(c);
  encoded[20] ^= 1;
  EXPECT_REFUSED(decode(encoded), "KEK version 0");
}

TEST(CiphertextGcm, ErrorsNeverContainPlaintext) {
  // A plaintext file given where a ciphertext belongs.
  const std::string plaintext = "kh1-like but PLAINTEXT-SECRET, not a ciphertext";
  for (const std::string& input : {plaintext, "kh1:" + plaintext, "\x01" + plaintext}) {
    std::string message = refusal([&] { parse_any(as_bytes(input)); });
    EXPECT_NE(message, "");
    EXPECT_EQ(message.find("PLAINTEXT"), std::string::npos) << message;
    EXPECT_EQ(message.find("SECRET"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace keyhold::envelope
