// File sealing (envelope::seal / unseal): round trips, the documented byte
// layout checked by an independent AES-256-GCM implementation of it (plain
// EVP calls here), every way of damaging a sealed file (each must fail, and
// the output must hold nothing but the plaintext of the segments before the
// damaged one), and constant memory on a 256 MiB stream.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <istream>
#include <mutex>
#include <ostream>
#include <random>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/secret.hpp"
#include "keyhold/envelope/seal.hpp"

namespace keyhold::envelope {
namespace {

using Bytes = std::vector<std::uint8_t>;
using CipherCtxPtr = CPtr<EVP_CIPHER_CTX, &EVP_CIPHER_CTX_free>;

constexpr std::size_t kSeg = kSegmentPlaintextBytes;
constexpr std::size_t kTag = kSealTagBytes;
constexpr std::size_t kFullSegment = kSeg + kTag;

SecretBytes random_key(std::size_t size = 32) {
  SecretBytes key(size);
  if (size > 0) {
    EXPECT_EQ(RAND_bytes(key.data(), static_cast<int>(size)), 1);
  }
  return key;
}

SecretBytes copy_key(const SecretBytes& key) { return SecretBytes(key.data(), key.size()); }

Bytes fake_wrapped_key(std::size_t size = 40) {
  Bytes wrapped(size);
  for (std::size_t i = 0; i < size; ++i) wrapped[i] = static_cast<std::uint8_t>(0xa0 + i);
  return wrapped;
}

std::string random_plaintext(std::size_t size, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::string text(size, '\0');
  for (char& c : text) c = static_cast<char>(rng() & 0xff);
  return text;
}

std::string seal_string(const std::string& plaintext, const SecretBytes& key, const Bytes& wrapped = fake_wrapped_key()) {
  std::istringstream in(plaintext);
  std::ostringstream out;
  EXPECT_EQ(seal(in, out, key, wrapped), plaintext.size());
  return out.str();
}

std::string unseal_string(const std::string& sealed, const SecretBytes& key) {
  std::istringstream in(sealed);
  std::ostringstream out;
  SealHeader header = read_seal_header(in);
  std::uint64_t written = unseal(header, in, out, key);
  EXPECT_EQ(written, out.str().size());
  return out.str();
}

std::size_t header_size(std::size_t wrapped_size = 40) { return kSealFixedHeaderBytes + wrapped_size; }

// Offset of segment k in a sealed file with a 40-byte wrapped key.
std::size_t segment_offset(std::size_t k) { return header_size() + k * kFullSegment; }

std::size_t sealed_size(std::size_t plaintext_size, std::size_t wrapped_size = 40) {
  return header_size(wrapped_size) + plaintext_size + (plaintext_size / kSeg + 1) * kTag;
}

void expect_user_message(const std::string& message) {
  EXPECT_FALSE(message.empty());
  // One line of printable ASCII: in particular no (random, binary) plaintext.
  for (char c : message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "message has byte " << int(c) << ": " << message;
}

// Unseals a damaged file: it must throw InvalidArgument, and the output must be exactly
// the plaintext of the segments before `bad_segment` (all verified, nothing more).
void expect_refused(const std::string& sealed, const SecretBytes& key, const std::string& plaintext,
                    std::size_t bad_segment, const std::string& what) {
  SCOPED_TRACE(what);
  std::istringstream in(sealed);
  std::ostringstream out;
  try {
    SealHeader header = read_seal_header(in);
    unseal(header, in, out, key);
    ADD_FAILURE() << "a damaged sealed file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    expect_user_message(e.what());
  }
  std::string written = out.str();
  ASSERT_LE(bad_segment * kSeg, plaintext.size());
  EXPECT_EQ(written.size(), bad_segment * kSeg);
  EXPECT_TRUE(written == plaintext.substr(0, written.size())) << "output is not a plaintext prefix";
}

std::string segment_of(const std::string& sealed, std::size_t k) {
  std::size_t begin = segment_offset(k);
  return sealed.substr(begin, std::min(kFullSegment, sealed.size() - begin));
}

// ---------------------------------------------------------------------------------------------
// Round trips

class SealRoundTrip : public ::testing::TestWithParam<std::size_t> {};

TEST_P(SealRoundTrip, UnsealGivesBackThePlaintext) {
  std::size_t size = GetParam();
  SecretBytes key = random_key();
  std::string plaintext = random_plaintext(size, static_cast<unsigned>(size));
  std::string sealed = seal_string(plaintext, key);
  EXPECT_EQ(sealed.size(), sealed_size(size));
  EXPECT_EQ(unseal_string(sealed, key), plaintext);
  if (size > 0) {
    // The ciphertext does not contain the plaintext in clear.
    std::string probe = plaintext.substr(0, std::min<std::size_t>(size, 16));
    if (probe.size() >= 8) {
      EXPECT_EQ(sealed.find(probe), std::string::npos);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, SealRoundTrip,
                         ::testing::Values(std::size_t{0}, std::size_t{1}, kSeg - 1, kSeg, kSeg + 1, 3 * kSeg,
                                           3 * kSeg + 5));

TEST(Seal, EveryFileGetsItsOwnNoncePrefix) {
  SecretBytes key = random_key();
  std::string a = seal_string("same plaintext", key);
  std::string b = seal_string("same plaintext", key);
  EXPECT_NE(a.substr(12, 7), b.substr(12, 7));
  EXPECT_NE(a.substr(header_size()), b.substr(header_size()));
}

TEST(Seal, IgnoresTheStreamsExceptionMask) {
  // seal/unseal work on the stream buffers: a caller's exception mask (failbit on a short read) does not bite.
  SecretBytes key = random_key();
  std::string plaintext = random_plaintext(kSeg + 7);
  std::istringstream in(plaintext);
  in.exceptions(std::ios::failbit | std::ios::badbit);
  std::ostringstream out;
  out.exceptions(std::ios::failbit | std::ios::badbit);
  EXPECT_EQ(seal(in, out, key, fake_wrapped_key()), plaintext.size());

  std::istringstream sealed(out.str());
  sealed.exceptions(std::ios::failbit | std::ios::badbit);
  std::ostringstream back;
  back.exceptions(std::ios::failbit | std::ios::badbit);
  SealHeader header = read_seal_header(sealed);
  EXPECT_EQ(unseal(header, sealed, back, key), plaintext.size());
  EXPECT_EQ(back.str(), plaintext);
}

// ---------------------------------------------------------------------------------------------
// The header

TEST(SealHeader, LayoutAndParse) {
  SecretBytes key = random_key();
  Bytes wrapped = fake_wrapped_key(57);
  std::string sealed = seal_string("hello", key, wrapped);
  ASSERT_GE(sealed.size(), header_size(57));

  EXPECT_EQ(sealed.substr(0, 8), std::string("KHSEAL\0\x01", 8));
  EXPECT_EQ(sealed.substr(8, 4), std::string("\x00\x01\x00\x00", 4));  // 65536, big-endian
  EXPECT_EQ(sealed.substr(19, 4), std::string("\x00\x00\x00\x39", 4));  // 57
  EXPECT_EQ(sealed.substr(23, 57), std::string(wrapped.begin(), wrapped.end()));

  std::istringstream in(sealed);
  SealHeader header = read_seal_header(in);
  EXPECT_EQ(header.wrapped_key, wrapped);
  EXPECT_EQ(header.segment_size, kSegmentPlaintextBytes);
  EXPECT_EQ(std::string(header.nonce_prefix.begin(), header.nonce_prefix.end()), sealed.substr(12, 7));
  EXPECT_EQ(std::string(header.bytes.begin(), header.bytes.end()), sealed.substr(0, header_size(57)));
  // Positioned at the first (here: only, last) segment: 5 bytes + tag.
  EXPECT_EQ(static_cast<std::size_t>(in.tellg()), header_size(57));
  EXPECT_EQ(sealed.size() - header_size(57), 5 + kTag);
}

std::string header_refusal(const std::string& bytes) {
  std::istringstream in(bytes);
  try {
    read_seal_header(in);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    expect_user_message(e.what());
    return e.what();
  }
  return "";
}

std::string make_header(std::uint32_t segment_size, std::uint32_t key_length, std::size_t key_bytes,
                        char version = 1) {
  std::string h("KHSEAL\0", 7);
  h.push_back(version);
  for (int shift : {24, 16, 8, 0}) h.push_back(static_cast<char>(segment_size >> shift));
  h.append("1234567");
  for (int shift : {24, 16, 8, 0}) h.push_back(static_cast<char>(key_length >> shift));
  h.append(key_bytes, 'k');
  return h;
}

TEST(SealHeader, RefusesWhatIsNotASupportedHeader) {
  EXPECT_EQ(header_refusal(make_header(kSeg, 40, 40)), "");
  EXPECT_EQ(header_refusal(make_header(4096, 1, 1)), "");
  EXPECT_EQ(header_refusal(make_header(1024 * 1024, 4096, 4096)), "");

  EXPECT_NE(header_refusal("").find("truncated"), std::string::npos);
  EXPECT_NE(header_refusal("-----BEGIN CERTIFICATE-----\n").find("not a keyhold sealed file"), std::string::npos);
  EXPECT_NE(header_refusal("KHSEAX").find("not a keyhold sealed file"), std::string::npos);
  EXPECT_NE(header_refusal(make_header(kSeg, 40, 40, 2)).find("version 2"), std::string::npos);
  EXPECT_NE(header_refusal(make_header(kSeg, 40, 40, 0)).find("version 0"), std::string::npos);
  EXPECT_NE(header_refusal(std::string("KHSEAL\0\x02", 8)).find("version 2"), std::string::npos);
  for (std::uint32_t size : {0u, 1u, 4095u, 1024u * 1024u + 1u, 0xffffffffu}) {
    EXPECT_NE(header_refusal(make_header(size, 40, 40)).find("segment size"), std::string::npos) << size;
  }
  for (std::uint32_t length : {0u, 4097u, 0xffffffffu}) {
    EXPECT_NE(header_refusal(make_header(kSeg, length, 40)).find("wrapped key length"), std::string::npos) << length;
  }
  EXPECT_NE(header_refusal(make_header(kSeg, 40, 39)).find("truncated"), std::string::npos);
}

TEST(SealHeader, RefusesAHeaderTruncatedAnywhere) {
  std::string header = make_header(kSeg, 40, 40);
  for (std::size_t n = 0; n < header.size(); ++n) {
    EXPECT_NE(header_refusal(header.substr(0, n)).find("truncated"), std::string::npos) << n;
  }
}

// ---------------------------------------------------------------------------------------------
// Bad arguments and broken streams

TEST(Seal, RefusesBadArgumentsBeforeWritingAnything) {
  for (std::size_t size : {0, 16, 24, 31, 33, 64}) {
    SecretBytes key = random_key(size);
    std::istringstream in("data");
    std::ostringstream out;
    try {
      seal(in, out, key, fake_wrapped_key());
      ADD_FAILURE() << "a " << size << "-byte key was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
    EXPECT_EQ(out.str(), "");
  }
  SecretBytes key = random_key();
  for (std::size_t size : {std::size_t{0}, std::size_t{kMaxWrappedKeyBytes + 1}}) {
    std::istringstream in("data");
    std::ostringstream out;
    try {
      seal(in, out, key, fake_wrapped_key(size));
      ADD_FAILURE() << "a " << size << "-byte wrapped key was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
    EXPECT_EQ(out.str(), "");
  }
}

TEST(Seal, RefusesAnInputStreamThatFailedToOpen) {
  std::ifstream missing("/nonexistent/keyhold-seal-test");
  std::ostringstream out;
  try {
    seal(missing, out, random_key(), fake_wrapped_key());
    ADD_FAILURE() << "sealed a stream that failed to open (as an empty file)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  }
  EXPECT_EQ(out.str(), "");
}

// Accepts `limit` bytes, then refuses everything.
class FullDisk : public std::streambuf {
 public:
  explicit FullDisk(std::size_t limit) : limit_(limit) {}

 protected:
  std::streamsize xsputn(const char*, std::streamsize n) override {
    std::streamsize ok = std::min<std::streamsize>(n, static_cast<std::streamsize>(limit_ - used_));
    used_ += static_cast<std::size_t>(ok);
    return ok;
  }
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    char ch = traits_type::to_char_type(c);
    return xsputn(&ch, 1) == 1 ? c : traits_type::eof();
  }

 private:
  std::size_t limit_;
  std::size_t used_ = 0;
};

TEST(Seal, WriteFailuresAreUnavailable) {
  SecretBytes key = random_key();
  std::string plaintext = random_plaintext(2 * kSeg);
  for (std::size_t limit : {std::size_t{0}, std::size_t{10}, segment_offset(1) + 3}) {
    FullDisk disk(limit);
    std::ostream out(&disk);
    std::istringstream in(plaintext);
    try {
      seal(in, out, key, fake_wrapped_key());
      ADD_FAILURE() << "a failed write went unnoticed";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unavailable) << e.what();
    }
  }
  std::string sealed = seal_string(plaintext, key);
  FullDisk disk(kSeg + 1);
  std::ostream out(&disk);
  std::istringstream in(sealed);
  SealHeader header = read_seal_header(in);
  try {
    unseal(header, in, out, key);
    ADD_FAILURE() << "a failed write went unnoticed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable) << e.what();
  }
}

TEST(Unseal, RefusesABadKeySizeAndAnInconsistentHeader) {
  SecretBytes key = random_key();
  std::string sealed = seal_string("some text", key);
  for (std::size_t size : {0, 16, 31, 33}) {
    std::istringstream in(sealed);
    std::ostringstream out;
    SealHeader header = read_seal_header(in);
    try {
      unseal(header, in, out, random_key(size));
      ADD_FAILURE() << "a " << size << "-byte key was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
  }
  std::istringstream in(sealed);
  SealHeader header = read_seal_header(in);
  std::ostringstream out;
  SealHeader changed = header;
  changed.nonce_prefix[0] ^= 1;
  EXPECT_THROW(unseal(changed, in, out, key), Error);
  changed = header;
  changed.segment_size = 4096;
  EXPECT_THROW(unseal(changed, in, out, key), Error);
  changed = header;
  changed.bytes.clear();
  EXPECT_THROW(unseal(changed, in, out, key), Error);
  EXPECT_EQ(out.str(), "");
}

// ---------------------------------------------------------------------------------------------
// Damaged files. The main sample has four segments: three full ones and a last one of 5 bytes.
// The "aligned" sample (3 full segments) ends with an empty last segment.

class SealTamper : public ::testing::Test {
 protected:
  SecretBytes key_ = random_key();
  std::string plaintext_ = random_plaintext(3 * kSeg + 5, 7);
  std::string sealed_ = seal_string(plaintext_, key_);
  std::string aligned_plaintext_ = random_plaintext(3 * kSeg, 8);
  std::string aligned_ = seal_string(aligned_plaintext_, key_);
};

TEST_F(SealTamper, TheSamplesAreIntact) {
  ASSERT_EQ(sealed_.size(), segment_offset(3) + 5 + kTag);
  ASSERT_EQ(aligned_.size(), segment_offset(3) + kTag);
  EXPECT_EQ(unseal_string(sealed_, key_), plaintext_);
  EXPECT_EQ(unseal_string(aligned_, key_), aligned_plaintext_);
}

TEST_F(SealTamper, EveryBitOfTheHeaderIsAuthenticated) {
  for (std::size_t i = 0; i < header_size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = sealed_;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      expect_refused(damaged, key_, plaintext_, 0, "header byte " + std::to_string(i) + " bit " + std::to_string(bit));
    }
  }
}

TEST_F(SealTamper, AFlippedBitInAnySegmentOrTag) {
  for (std::size_t k = 0; k < 4; ++k) {
    std::size_t begin = segment_offset(k);
    std::size_t length = segment_of(sealed_, k).size();
    std::size_t ct = length - kTag;
    std::vector<std::size_t> positions = {0, ct / 2, ct - 1, ct, ct + 7, length - 1};
    for (std::size_t pos : positions) {
      if (pos >= length) continue;
      std::string damaged = sealed_;
      damaged[begin + pos] = static_cast<char>(damaged[begin + pos] ^ 0x10);
      expect_refused(damaged, key_, plaintext_, k,
                     "segment " + std::to_string(k) + (pos >= ct ? " tag" : " ciphertext") + " byte " +
                         std::to_string(pos));
    }
  }
  // The empty last segment is a tag only.
  std::string damaged = aligned_;
  damaged.back() = static_cast<char>(damaged.back() ^ 1);
  expect_refused(damaged, key_, aligned_plaintext_, 3, "empty last segment tag");
}

TEST_F(SealTamper, TruncatedAtEverySegmentBoundary) {
  for (std::size_t k = 0; k <= 3; ++k) {
    expect_refused(sealed_.substr(0, segment_offset(k)), key_, plaintext_, k, "cut before segment " + std::to_string(k));
    expect_refused(aligned_.substr(0, segment_offset(k)), key_, aligned_plaintext_, k,
                   "aligned, cut before segment " + std::to_string(k));
  }
}

TEST_F(SealTamper, TruncatedInsideASegment) {
  for (std::size_t k = 0; k <= 3; ++k) {
    std::size_t length = segment_of(sealed_, k).size();
    for (std::size_t keep : {std::size_t{1}, kTag - 1, kTag, kTag + 1, kSeg / 2, kSeg, kSeg + kTag - 1}) {
      if (keep >= length) continue;
      expect_refused(sealed_.substr(0, segment_offset(k) + keep), key_, plaintext_, k,
                     "segment " + std::to_string(k) + " cut to " + std::to_string(keep) + " bytes");
    }
  }
  expect_refused(aligned_.substr(0, aligned_.size() - 1), key_, aligned_plaintext_, 3, "aligned, last byte cut");
  // Whatever the cut, the file is refused.
  for (std::size_t cut = 1; cut < 64; ++cut) {
    std::istringstream in(sealed_.substr(0, sealed_.size() - cut));
    std::ostringstream out;
    EXPECT_THROW(
        {
          SealHeader header = read_seal_header(in);
          unseal(header, in, out, key_);
        },
        Error);
  }
}

TEST_F(SealTamper, SwappedSegments) {
  auto swapped = [&](std::size_t a, std::size_t b) {
    std::string damaged = sealed_;
    std::string sa = segment_of(sealed_, a), sb = segment_of(sealed_, b);
    damaged.replace(segment_offset(a), kFullSegment, sb);
    damaged.replace(segment_offset(b), kFullSegment, sa);
    return damaged;
  };
  expect_refused(swapped(0, 1), key_, plaintext_, 0, "swap 0 and 1");
  expect_refused(swapped(1, 2), key_, plaintext_, 1, "swap 1 and 2");
  expect_refused(swapped(0, 2), key_, plaintext_, 0, "swap 0 and 2");
  // The short last segment moved before a full one (and that full one moved to the end).
  std::string damaged = sealed_.substr(0, segment_offset(2)) + segment_of(sealed_, 3) + segment_of(sealed_, 2);
  expect_refused(damaged, key_, plaintext_, 2, "last segment moved up");
}

TEST_F(SealTamper, DroppedOrDuplicatedSegments) {
  // Dropping the last segment is a truncation at a segment boundary.
  expect_refused(sealed_.substr(0, segment_offset(3)), key_, plaintext_, 3, "last segment dropped");
  expect_refused(aligned_.substr(0, segment_offset(3)), key_, aligned_plaintext_, 3, "empty last segment dropped");
  std::string without_1 = sealed_.substr(0, segment_offset(1)) + sealed_.substr(segment_offset(2));
  expect_refused(without_1, key_, plaintext_, 1, "segment 1 dropped");
  std::string replayed = sealed_.substr(0, segment_offset(2)) + segment_of(sealed_, 1) + sealed_.substr(segment_offset(2));
  expect_refused(replayed, key_, plaintext_, 2, "segment 1 replayed as segment 2");
}

TEST_F(SealTamper, AppendedData) {
  expect_refused(sealed_ + "x", key_, plaintext_, 3, "one byte appended");
  expect_refused(sealed_ + segment_of(sealed_, 0), key_, plaintext_, 3, "a full segment appended");
  expect_refused(sealed_ + segment_of(sealed_, 3), key_, plaintext_, 3, "the last segment repeated");
  expect_refused(aligned_ + "x", key_, aligned_plaintext_, 3, "aligned, one byte appended");
  expect_refused(aligned_ + segment_of(aligned_, 0), key_, aligned_plaintext_, 3, "aligned, a full segment appended");
  expect_refused(aligned_ + segment_of(aligned_, 3), key_, aligned_plaintext_, 3, "aligned, empty segment repeated");
  std::string empty = seal_string("", key_);
  expect_refused(empty + "x", key_, "", 0, "empty file, one byte appended");
  expect_refused(empty + empty.substr(header_size()), key_, "", 0, "empty file, empty segment repeated");
  // A whole valid file appended to another one.
  expect_refused(aligned_ + aligned_, key_, aligned_plaintext_, 3, "two files concatenated");
}

TEST_F(SealTamper, WrongDataKey) {
  expect_refused(sealed_, random_key(), plaintext_, 0, "another key");
  SecretBytes almost = copy_key(key_);
  almost.data()[31] ^= 1;
  expect_refused(sealed_, almost, plaintext_, 0, "one key bit off");
}

TEST_F(SealTamper, PartsOfAnotherFileWithTheSameKey) {
  // Same data key and wrapped key (as if a caller reused them): the nonce prefix still tells files apart.
  std::string other_plaintext = random_plaintext(3 * kSeg + 5, 9);
  std::string other = seal_string(other_plaintext, key_);
  std::string spliced = sealed_;
  spliced.replace(segment_offset(1), kFullSegment, segment_of(other, 1));
  expect_refused(spliced, key_, plaintext_, 1, "segment 1 of another file");
  std::string rehead = other.substr(0, header_size()) + sealed_.substr(header_size());
  expect_refused(rehead, key_, plaintext_, 0, "header of another file");
}

// ---------------------------------------------------------------------------------------------
// The documented format, implemented again here with plain EVP calls.

Bytes gcm(bool encrypt, const SecretBytes& key, const Bytes& nonce, const std::string& aad, const Bytes& in,
          const Bytes& tag_in, Bytes* tag_out, bool* ok) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  EXPECT_EQ(EVP_CipherInit_ex2(ctx.get(), EVP_aes_256_gcm(), key.data(), nonce.data(), encrypt ? 1 : 0, nullptr), 1);
  int n = 0;
  EXPECT_EQ(EVP_CipherUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const std::uint8_t*>(aad.data()),
                             static_cast<int>(aad.size())),
            1);
  Bytes out(in.size() + 16);
  int length = 0;
  if (!in.empty()) {
    EXPECT_EQ(EVP_CipherUpdate(ctx.get(), out.data(), &length, in.data(), static_cast<int>(in.size())), 1);
  }
  if (!encrypt) {
    EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, 16, const_cast<std::uint8_t*>(tag_in.data())), 1);
  }
  int final_length = 0;
  *ok = EVP_CipherFinal_ex(ctx.get(), out.data() + length, &final_length) == 1;
  out.resize(static_cast<std::size_t>(length + final_length));
  if (encrypt) {
    tag_out->resize(16);
    EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, 16, tag_out->data()), 1);
  }
  return out;
}

Bytes nonce_for(const std::string& prefix, std::uint32_t index, bool last) {
  Bytes nonce(prefix.begin(), prefix.end());
  for (int shift : {24, 16, 8, 0}) nonce.push_back(static_cast<std::uint8_t>(index >> shift));
  nonce.push_back(last ? 1 : 0);
  return nonce;
}

Bytes to_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

TEST(SealFormat, IndependentDecryptionOfWhatSealWrites) {
  SecretBytes key = random_key();
  std::string plaintext = random_plaintext(2 * kSeg + 1000, 3);
  std::string sealed = seal_string(plaintext, key);
  std::string header = sealed.substr(0, header_size());
  std::string prefix = header.substr(12, 7);
  std::string recovered;
  for (std::uint32_t i = 0; i < 3; ++i) {
    std::string segment = segment_of(sealed, i);
    bool last = i == 2;
    EXPECT_EQ(segment.size(), last ? 1000 + kTag : kFullSegment);
    Bytes ct = to_bytes(segment.substr(0, segment.size() - kTag));
    Bytes tag = to_bytes(segment.substr(segment.size() - kTag));
    bool ok = false;
    Bytes pt = gcm(false, key, nonce_for(prefix, i, last), header, ct, tag, nullptr, &ok);
    EXPECT_TRUE(ok) << "segment " << i;
    // The same segment does not open with the other flag value.
    gcm(false, key, nonce_for(prefix, i, !last), header, ct, tag, nullptr, &ok);
    EXPECT_FALSE(ok) << "segment " << i;
    recovered.append(pt.begin(), pt.end());
  }
  EXPECT_EQ(recovered, plaintext);
}

// Builds a sealed file from the documentation alone. If flag_last_full, a plaintext that fills
// its last segment is flagged there instead of getting an empty last segment (not our convention).
std::string seal_by_hand(const std::string& plaintext, const SecretBytes& key, std::uint32_t segment_size,
                         bool flag_last_full = false) {
  std::string header = make_header(segment_size, 40, 0);
  Bytes wrapped = fake_wrapped_key();
  header.append(wrapped.begin(), wrapped.end());
  std::string prefix = header.substr(12, 7);
  std::string out = header;
  std::size_t count = plaintext.size() / segment_size + 1;
  if (flag_last_full && plaintext.size() % segment_size == 0 && !plaintext.empty()) --count;
  for (std::size_t i = 0; i < count; ++i) {
    Bytes chunk = to_bytes(plaintext.substr(std::min(plaintext.size(), i * segment_size), segment_size));
    Bytes tag;
    bool ok = false;
    Bytes ct = gcm(true, key, nonce_for(prefix, static_cast<std::uint32_t>(i), i + 1 == count), header, chunk, {},
                   &tag, &ok);
    EXPECT_TRUE(ok);
    out.append(ct.begin(), ct.end());
    out.append(tag.begin(), tag.end());
  }
  return out;
}

TEST(SealFormat, UnsealReadsAFileBuiltFromTheDocumentation) {
  SecretBytes key = random_key();
  for (std::uint32_t segment_size : {4096u, 65536u, 1024u * 1024u}) {
    for (std::size_t size : {std::size_t{0}, std::size_t{100}, std::size_t{segment_size}, 3 * std::size_t{segment_size} + 100}) {
      SCOPED_TRACE(std::to_string(segment_size) + " / " + std::to_string(size));
      std::string plaintext = random_plaintext(size, 11);
      std::string sealed = seal_by_hand(plaintext, key, segment_size);
      std::istringstream in(sealed);
      std::ostringstream out;
      SealHeader header = read_seal_header(in);
      EXPECT_EQ(header.segment_size, segment_size);
      EXPECT_EQ(unseal(header, in, out, key), size);
      EXPECT_EQ(out.str(), plaintext);
    }
  }
}

TEST(SealFormat, AFullLastSegmentIsRefused) {
  // Our convention: a full-length segment is never the last one. A writer that flags a full
  // segment as last (and writes no empty last segment) produces a file we refuse as truncated,
  // after having written only the segments before it.
  SecretBytes key = random_key();
  std::string plaintext = random_plaintext(2 * 4096, 12);
  std::string sealed = seal_by_hand(plaintext, key, 4096, true);
  std::istringstream in(sealed);
  std::ostringstream out;
  SealHeader header = read_seal_header(in);
  EXPECT_THROW(unseal(header, in, out, key), Error);
  EXPECT_EQ(out.str(), plaintext.substr(0, 4096));
}

// ---------------------------------------------------------------------------------------------
// Constant memory: 256 MiB through seal and unseal at once, never held anywhere.

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Byte p of the test stream is byte (p % 8) of splitmix64(p / 8).
void fill_pattern(std::uint64_t position, char* out, std::size_t size) {
  for (std::size_t i = 0; i < size;) {
    std::uint64_t p = position + i;
    std::uint64_t word = splitmix64(p / 8);
    for (std::size_t b = p % 8; b < 8 && i < size; ++b, ++i) out[i] = static_cast<char>(word >> (8 * b));
  }
}

class Generator : public std::streambuf {
 public:
  explicit Generator(std::uint64_t size) : remaining_(size), buffer_(64 * 1024) {}

 protected:
  int_type underflow() override {
    if (remaining_ == 0) return traits_type::eof();
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, buffer_.size()));
    fill_pattern(position_, buffer_.data(), n);
    position_ += n;
    remaining_ -= n;
    setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
    return traits_type::to_int_type(buffer_[0]);
  }

 private:
  std::uint64_t remaining_;
  std::uint64_t position_ = 0;
  std::vector<char> buffer_;
};

class Verifier : public std::streambuf {
 public:
  std::uint64_t size() const { return position_; }
  bool matches() const { return matches_; }

 protected:
  std::streamsize xsputn(const char* data, std::streamsize n) override {
    for (std::streamsize done = 0; done < n;) {
      std::size_t chunk = static_cast<std::size_t>(std::min<std::streamsize>(n - done, scratch_.size()));
      fill_pattern(position_, scratch_.data(), chunk);
      if (std::memcmp(scratch_.data(), data + done, chunk) != 0) matches_ = false;
      position_ += chunk;
      done += static_cast<std::streamsize>(chunk);
    }
    return n;
  }
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    char ch = traits_type::to_char_type(c);
    xsputn(&ch, 1);
    return c;
  }

 private:
  std::uint64_t position_ = 0;
  bool matches_ = true;
  std::vector<char> scratch_ = std::vector<char>(64 * 1024);
};

// A bounded in-memory pipe between two threads (like a shell pipe between `keyhold seal` and `keyhold unseal`).
class Pipe {
 public:
  explicit Pipe(std::size_t capacity) : ring_(capacity) {}

  // Blocks while full; returns less than size only when the reader has gone.
  std::size_t write(const char* data, std::size_t size) {
    std::unique_lock lock(mutex_);
    std::size_t done = 0;
    while (done < size) {
      changed_.wait(lock, [&] { return reader_gone_ || used_ < ring_.size(); });
      if (reader_gone_) break;
      std::size_t tail = (head_ + used_) % ring_.size();
      std::size_t n = std::min({size - done, ring_.size() - used_, ring_.size() - tail});
      std::memcpy(ring_.data() + tail, data + done, n);
      used_ += n;
      done += n;
      changed_.notify_all();
    }
    return done;
  }
  // Blocks while empty; returns 0 at end of stream.
  std::size_t read(char* data, std::size_t size) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return writer_done_ || used_ > 0; });
    std::size_t n = std::min({size, used_, ring_.size() - head_});
    std::memcpy(data, ring_.data() + head_, n);
    head_ = (head_ + n) % ring_.size();
    used_ -= n;
    changed_.notify_all();
    return n;
  }
  void close_writer() {
    std::lock_guard lock(mutex_);
    writer_done_ = true;
    changed_.notify_all();
  }
  void close_reader() {
    std::lock_guard lock(mutex_);
    reader_gone_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<char> ring_;
  std::size_t head_ = 0;
  std::size_t used_ = 0;
  bool writer_done_ = false;
  bool reader_gone_ = false;
};

class PipeWriter : public std::streambuf {
 public:
  explicit PipeWriter(Pipe& pipe) : pipe_(pipe) {}

 protected:
  std::streamsize xsputn(const char* data, std::streamsize n) override {
    return static_cast<std::streamsize>(pipe_.write(data, static_cast<std::size_t>(n)));
  }
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    char ch = traits_type::to_char_type(c);
    return pipe_.write(&ch, 1) == 1 ? c : traits_type::eof();
  }

 private:
  Pipe& pipe_;
};

class PipeReader : public std::streambuf {
 public:
  explicit PipeReader(Pipe& pipe) : pipe_(pipe), buffer_(16 * 1024) {}

 protected:
  int_type underflow() override {
    std::size_t n = pipe_.read(buffer_.data(), buffer_.size());
    if (n == 0) return traits_type::eof();
    setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
    return traits_type::to_int_type(buffer_[0]);
  }

 private:
  Pipe& pipe_;
  std::vector<char> buffer_;
};

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // KiB on Linux
}

struct StreamResult {
  std::uint64_t sealed = 0;
  std::uint64_t unsealed = 0;
  std::uint64_t verified = 0;
  bool matches = false;
  long rss_before_kib = 0;
  long rss_after_kib = 0;
  double seconds = 0;
  char error[256] = {};
};

void note_error(StreamResult& result, const char* stage, const std::exception& e) {
  if (result.error[0] == '\0') std::snprintf(result.error, sizeof result.error, "%s: %s", stage, e.what());
}

// Seals a generated stream in one thread into a pipe that another unseals into a verifier.
StreamResult stream_through(std::uint64_t size) {
  StreamResult result;
  SecretBytes key = random_key();
  SecretBytes unseal_key = copy_key(key);
  Bytes wrapped = fake_wrapped_key();
  Pipe pipe(1 << 20);
  result.rss_before_kib = peak_rss_kib();
  auto start = std::chrono::steady_clock::now();

  std::thread sealer([&] {
    try {
      Generator generator(size);
      std::istream in(&generator);
      PipeWriter writer(pipe);
      std::ostream out(&writer);
      result.sealed = seal(in, out, key, wrapped);
    } catch (const std::exception& e) {
      note_error(result, "seal", e);
    }
    pipe.close_writer();
  });
  Verifier verifier;
  try {
    PipeReader reader(pipe);
    std::istream in(&reader);
    std::ostream out(&verifier);
    SealHeader header = read_seal_header(in);
    result.unsealed = unseal(header, in, out, unseal_key);
  } catch (const std::exception& e) {
    note_error(result, "unseal", e);
  }
  pipe.close_reader();
  sealer.join();

  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.rss_after_kib = peak_rss_kib();
  result.verified = verifier.size();
  result.matches = verifier.matches();
  return result;
}

TEST(SealMemory, StreamsWithoutHoldingTheFile) {
#if defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kSize = 64ULL << 20;  // ASan is slow; still 4x the memory bound
#else
  constexpr std::uint64_t kSize = 256ULL << 20;
#endif
  constexpr std::uint64_t kOdd = 12345;  // not a whole number of segments

  // In a child process: its peak RSS starts from the current RSS, not from the peak that
  // earlier tests in this binary reached, so the measurement does not depend on test order.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    ::close(fds[0]);
    StreamResult result = stream_through(kSize + kOdd);
    const char* p = reinterpret_cast<const char*>(&result);
    for (std::size_t done = 0; done < sizeof result;) {
      ssize_t n = ::write(fds[1], p + done, sizeof result - done);
      if (n <= 0) ::_exit(2);
      done += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  StreamResult result;
  char* p = reinterpret_cast<char*>(&result);
  std::size_t done = 0;
  while (done < sizeof result) {
    ssize_t n = ::read(fds[0], p + done, sizeof result - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  ASSERT_EQ(done, sizeof result);

  long growth = result.rss_after_kib - result.rss_before_kib;
  RecordProperty("seconds", std::to_string(result.seconds));
  RecordProperty("peak_rss_growth_kib", std::to_string(growth));
  std::printf("sealed and unsealed %llu MiB in %.2f s; peak RSS %ld -> %ld KiB (+%ld KiB)\n",
              static_cast<unsigned long long>(kSize >> 20), result.seconds, result.rss_before_kib,
              result.rss_after_kib, growth);

  EXPECT_STREQ(result.error, "");
  EXPECT_EQ(result.sealed, kSize + kOdd);
  EXPECT_EQ(result.unsealed, kSize + kOdd);
  EXPECT_EQ(result.verified, kSize + kOdd);
  EXPECT_TRUE(result.matches);
  EXPECT_LT(growth, 16 * 1024);
}

}  // namespace
}  // namespace keyhold::envelope
