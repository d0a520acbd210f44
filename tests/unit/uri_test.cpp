// RFC 7512 PKCS#11 URIs through p11-kit: the attributes keyhold selects
// tokens and modules by, and the errors for malformed ones.
#include <gtest/gtest.h>

#include <cstring>

#include "keyhold/hsm/uri.hpp"

namespace keyhold::hsm {
namespace {

CK_TOKEN_INFO token(const char* label, const char* manufacturer, const char* model, const char* serial) {
  CK_TOKEN_INFO info{};
  auto pad = [](unsigned char* field, std::size_t size, const char* value) {
    std::memset(field, ' ', size);
    std::memcpy(field, value, std::strlen(value));
  };
  pad(info.label, sizeof info.label, label);
  pad(info.manufacturerID, sizeof info.manufacturerID, manufacturer);
  pad(info.model, sizeof info.model, model);
  pad(info.serialNumber, sizeof info.serialNumber, serial);
  return info;
}

TEST(Uri, MatchesTokensByEveryAttributeItGives) {
  CK_TOKEN_INFO t = token("keyhold-dev", "SoftHSM project", "SoftHSM v2", "1234abcd");
  EXPECT_TRUE(Uri::parse("pkcs11:token=keyhold-dev").matches_token(t));
  EXPECT_TRUE(Uri::parse("pkcs11:serial=1234abcd").matches_token(t));
  EXPECT_TRUE(Uri::parse("pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;token=keyhold-dev").matches_token(t));
  EXPECT_FALSE(Uri::parse("pkcs11:token=other").matches_token(t));
  EXPECT_FALSE(Uri::parse("pkcs11:token=keyhold-dev;serial=ffff").matches_token(t));
  EXPECT_TRUE(Uri::parse("pkcs11:").matches_token(t)) << "an empty URI matches any token";
}

TEST(Uri, MatchesSlotIdWhenGiven) {
  CK_SLOT_INFO slot{};
  std::memset(slot.slotDescription, ' ', sizeof slot.slotDescription);
  std::memset(slot.manufacturerID, ' ', sizeof slot.manufacturerID);
  EXPECT_TRUE(Uri::parse("pkcs11:slot-id=7").matches_slot(7, slot));
  EXPECT_FALSE(Uri::parse("pkcs11:slot-id=7").matches_slot(8, slot));
  EXPECT_TRUE(Uri::parse("pkcs11:token=x").matches_slot(8, slot));
}

TEST(Uri, GivesModuleAndPinSourceAndSeesPinValue) {
  Uri uri = Uri::parse("pkcs11:token=a?module-name=softhsm2&pin-source=file:/etc/keyhold/pin");
  EXPECT_EQ(uri.module_name(), "softhsm2");
  EXPECT_FALSE(uri.module_path().has_value());
  EXPECT_EQ(uri.pin_source(), "file:/etc/keyhold/pin");
  EXPECT_FALSE(uri.has_pin_value());
  EXPECT_EQ(uri.token_label(), "a");
  EXPECT_EQ(Uri::parse("pkcs11:token=a?module-path=/usr/lib/softhsm/libsofthsm2.so").module_path(),
            "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_TRUE(Uri::parse("pkcs11:token=a?pin-value=1234").has_pin_value());
}

TEST(Uri, MalformedUrisAreRefusedWithTheReason) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (Case c : {Case{"https://example.org", "does not start with 'pkcs11:'"},
                 Case{"pkcs11:token=%zz", "malformed PKCS#11 URI"},
                 Case{"pkcs11:tokn=typo", "does not understand"}}) {
    try {
      Uri::parse(c.text);
      ADD_FAILURE() << c.text << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
}

TEST(Uri, PrintsObjectUrisThatParseBackToTheSameObject) {
  CK_TOKEN_INFO t = token("keyhold-dev", "SoftHSM project", "SoftHSM v2", "1234abcd");
  std::vector<std::uint8_t> id = {0x01, 0xab, 0xff};
  std::string text = Uri::for_object(t, "web signing", id, CKO_PRIVATE_KEY);
  EXPECT_EQ(text.rfind("pkcs11:", 0), 0u);
  EXPECT_NE(text.find("object=web%20signing"), std::string::npos) << text;
  EXPECT_NE(text.find("id=%01%AB%FF"), std::string::npos) << text;
  EXPECT_NE(text.find("type=private"), std::string::npos) << text;
  Uri back = Uri::parse(text);
  EXPECT_EQ(back.object_label(), "web signing");
  EXPECT_TRUE(back.matches_token(t));
  EXPECT_EQ(Uri::for_token(t), "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=1234abcd;token=keyhold-dev");
}

}  // namespace
}  // namespace keyhold::hsm
