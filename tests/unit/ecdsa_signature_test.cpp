// keyhold's own DER encoding of ECDSA signatures must be byte for byte what
// OpenSSL's i2d_ECDSA_SIG produces, including the edge cases of INTEGER
// encoding (leading zeros, top bit set).
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/rand.h>

#include "keyhold/core/error.hpp"
#include "keyhold/crypto/ecdsa_signature.hpp"

namespace keyhold::crypto {
namespace {

std::vector<std::uint8_t> openssl_der(const std::vector<std::uint8_t>& raw) {
  std::size_t half = raw.size() / 2;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(raw.data(), static_cast<int>(half), nullptr),
                 BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr));
  unsigned char* out = nullptr;
  int length = i2d_ECDSA_SIG(sig, &out);
  std::vector<std::uint8_t> der(out, out + length);
  OPENSSL_free(out);
  ECDSA_SIG_free(sig);
  return der;
}

TEST(EcdsaSignature, DerMatchesOpenSslOnEdgeCases) {
  for (std::size_t half : {32u, 48u, 66u}) {
    std::vector<std::vector<std::uint8_t>> cases;
    std::vector<std::uint8_t> v(2 * half, 0);
    v[half - 1] = 1;  // r = 1
    v[2 * half - 1] = 1;
    cases.push_back(v);
    std::fill(v.begin(), v.end(), 0xff);  // top bit set on both
    cases.push_back(v);
    std::fill(v.begin(), v.end(), 0x7f);  // top bit clear, full length
    cases.push_back(v);
    std::fill(v.begin(), v.begin() + 3, 0);  // leading zero bytes in r, then a set top bit
    v[3] = 0x80;
    cases.push_back(v);
    for (int i = 0; i < 2000; ++i) {
      RAND_bytes(v.data(), static_cast<int>(v.size()));
      if (i % 3 == 0) v[0] = 0;
      if (i % 5 == 0) v[half] = 0x80;
      cases.push_back(v);
    }
    for (const auto& raw : cases) ASSERT_EQ(ecdsa_raw_to_der(raw), openssl_der(raw)) << "half " << half;
  }
}

TEST(EcdsaSignature, RefusesOddOrEmptyInput) {
  EXPECT_THROW(ecdsa_raw_to_der(std::vector<std::uint8_t>{}), Error);
  EXPECT_THROW(ecdsa_raw_to_der(std::vector<std::uint8_t>(63, 1)), Error);
}

}  // namespace
}  // namespace keyhold::crypto
