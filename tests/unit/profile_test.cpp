// Certificate profiles: what a request may ask for, and what a profile may say.
#include "keyhold/pki/profile.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "keyhold/core/error.hpp"

namespace keyhold::pki {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using Subject = std::vector<std::pair<std::string, std::string>>;

// The message of the keyhold::Error that f throws, which must be InvalidArgument.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no keyhold::Error was thrown";
  return "<no error>";
}

// The example of docs/configuration.md.
Profile server_profile() {
  Profile profile;
  profile.name = "server";
  profile.key_types = {"ec-p256", "rsa"};
  profile.key_usage = {"digitalSignature", "keyEncipherment"};
  profile.extended_key_usage = {"serverAuth"};
  profile.dns = {"*.example.com", ".example.org"};
  profile.ip = {"10.0.0.0/8"};
  profile.subject_fields = {"CN", "O"};
  profile.crl_distribution_points = {"http://pki.example.org/crl/issuing.crl"};
  return profile;
}

IssuanceRequest ec_request(std::vector<std::string> dns = {"www.example.com"}) {
  IssuanceRequest request;
  request.key = {"ec", 256, "P-256"};
  request.sans.dns = std::move(dns);
  request.subject = {{"CN", "www.example.com"}};
  return request;
}

IssuanceRequest rsa_request(int bits) {
  IssuanceRequest request = ec_request();
  request.key = {"rsa", bits, ""};
  return request;
}

class CheckRequest : public ::testing::Test {
 protected:
  ProfileDecision check(const IssuanceRequest& request) { return check_request(profile_, request); }
  std::string error(const IssuanceRequest& request) {
    return error_of([&] { check_request(profile_, request); });
  }
  ProfileDecision check_dns(const std::string& name) { return check(ec_request({name})); }
  std::string dns_error(const std::string& name) { return error(ec_request({name})); }
  IssuanceRequest with_ip(std::vector<std::string> ip) {
    IssuanceRequest request = ec_request({});
    request.sans.ip = std::move(ip);
    return request;
  }
  IssuanceRequest with_uri(std::vector<std::string> uri) {
    IssuanceRequest request = ec_request({});
    request.sans.uri = std::move(uri);
    return request;
  }
  IssuanceRequest with_email(std::vector<std::string> email) {
    IssuanceRequest request = ec_request({});
    request.sans.email = std::move(email);
    return request;
  }
  IssuanceRequest with_subject(Subject subject) {
    IssuanceRequest request = ec_request();
    request.subject = std::move(subject);
    return request;
  }

  Profile profile_ = server_profile();
};

TEST(Profile, DefaultsAreTheDocumentedOnesAndValid) {
  Profile profile;
  EXPECT_THAT(profile.key_types, ElementsAre("rsa", "ec-p256", "ec-p384", "ed25519"));
  EXPECT_EQ(profile.min_rsa_bits, 2048);
  EXPECT_EQ(profile.default_days, 90);
  EXPECT_EQ(profile.max_days, 397);
  EXPECT_THAT(profile.key_usage, ElementsAre("digitalSignature"));
  EXPECT_THAT(profile.extended_key_usage, ElementsAre("serverAuth"));
  EXPECT_TRUE(profile.require_san);
  EXPECT_THAT(profile.subject_fields, ElementsAre("CN"));
  EXPECT_FALSE(profile.development_only);
  profile.name = "default";
  EXPECT_NO_THROW(validate_profile(profile));
  EXPECT_NO_THROW(validate_profile(server_profile()));
}

TEST_F(CheckRequest, AcceptsARequestInsideTheProfile) {
  IssuanceRequest request = ec_request({"www.example.com", "api.example.org"});
  request.sans.ip = {"10.1.2.3"};
  request.subject = {{"CN", "www.example.com"}, {"O", "Example Ltd"}};
  ProfileDecision decision = check(request);
  EXPECT_EQ(decision.days, 90);
  EXPECT_EQ(decision.subject, (Subject{{"CN", "www.example.com"}, {"O", "Example Ltd"}}));
  EXPECT_THAT(decision.warnings, IsEmpty());
}

// ---- keys --------------------------------------------------------------------

TEST_F(CheckRequest, RefusesRsaKeysBelowTheMinimum) {
  EXPECT_NO_THROW(check(rsa_request(2048)));
  EXPECT_NO_THROW(check(rsa_request(4096)));
  EXPECT_EQ(error(rsa_request(1024)), "RSA-1024 is too small: profile 'server' needs at least 2048 bits");
  EXPECT_EQ(error(rsa_request(2047)), "RSA-2047 is too small: profile 'server' needs at least 2048 bits");

  profile_.min_rsa_bits = 3072;
  EXPECT_NO_THROW(check(rsa_request(3072)));
  EXPECT_EQ(error(rsa_request(2048)), "RSA-2048 is too small: profile 'server' needs at least 3072 bits");

  // Never below 2048, even from a profile that skipped validation.
  profile_.min_rsa_bits = 1024;
  EXPECT_EQ(error(rsa_request(1024)), "RSA-1024 is too small: profile 'server' needs at least 2048 bits");
}

TEST_F(CheckRequest, RefusesHugeRsaKeys) {
  EXPECT_NO_THROW(check(rsa_request(16384)));
  EXPECT_EQ(error(rsa_request(32768)), "RSA-32768 is too large: keyhold allows at most 16384 bits");
}

TEST_F(CheckRequest, AllowsOnlyP256AndP384Curves) {
  IssuanceRequest request = ec_request();
  request.key.curve = "secp521r1";
  EXPECT_EQ(error(request), "curve secp521r1 is not allowed (P-256, P-384)");
  request.key.curve = "";
  EXPECT_EQ(error(request), "an EC key without a named curve is not allowed (P-256, P-384)");

  request.key = {"ec", 384, "P-384"};
  EXPECT_EQ(error(request), "key type ec-p384 is not allowed by profile 'server' (allowed: ec-p256, rsa)");
  profile_.key_types.push_back("ec-p384");
  EXPECT_NO_THROW(check(request));
}

TEST_F(CheckRequest, AllowsOnlyTheProfilesKeyTypes) {
  IssuanceRequest request = ec_request();
  request.key = {"ed25519", 256, ""};
  EXPECT_EQ(error(request), "key type ed25519 is not allowed by profile 'server' (allowed: ec-p256, rsa)");
  profile_.key_types = {"ed25519"};
  EXPECT_NO_THROW(check(request));
  EXPECT_EQ(error(rsa_request(4096)), "key type rsa is not allowed by profile 'server' (allowed: ed25519)");
}

TEST_F(CheckRequest, RefusesUnknownKeyAlgorithms) {
  IssuanceRequest request = ec_request();
  request.key = {"dsa", 2048, ""};
  EXPECT_EQ(error(request), "key algorithm 'dsa' is not allowed (rsa, ec, ed25519)");
  request.key = {"", 0, ""};
  EXPECT_EQ(error(request), "key algorithm '' is not allowed (rsa, ec, ed25519)");
}

TEST_F(CheckRequest, KeepsOnlyTheKeyUsageTheKeyTypeCanHave) {
  EXPECT_THAT(check(ec_request()).key_usage, ElementsAre("digitalSignature"));
  EXPECT_THAT(check(rsa_request(2048)).key_usage, ElementsAre("digitalSignature", "keyEncipherment"));

  profile_.key_types = {"rsa", "ec-p256", "ed25519"};
  profile_.key_usage = {"digitalSignature", "contentCommitment", "keyAgreement", "dataEncipherment"};
  EXPECT_THAT(check(ec_request()).key_usage, ElementsAre("digitalSignature", "contentCommitment", "keyAgreement"));
  EXPECT_THAT(check(rsa_request(2048)).key_usage,
              ElementsAre("digitalSignature", "contentCommitment", "dataEncipherment"));
  IssuanceRequest ed = ec_request();
  ed.key = {"ed25519", 256, ""};
  EXPECT_THAT(check(ed).key_usage, ElementsAre("digitalSignature", "contentCommitment"));

  // An unvalidated profile with nothing left for the key is refused, not issued without key usage.
  profile_.key_usage = {"keyAgreement"};
  EXPECT_EQ(error(rsa_request(2048)), "profile 'server' has no key usage for rsa keys (its key_usage: keyAgreement)");
}

// ---- DNS names -----------------------------------------------------------------

TEST_F(CheckRequest, WildcardPatternAllowsExactlyOneLabel) {
  profile_.dns = {"*.example.com"};
  EXPECT_NO_THROW(check_dns("www.example.com"));
  EXPECT_NO_THROW(check_dns("x-1.example.com"));
  EXPECT_NO_THROW(check_dns("*.example.com"));  // the wildcard itself
  EXPECT_EQ(dns_error("a.b.example.com"),
            "profile 'server' does not allow DNS name 'a.b.example.com' (allowed: *.example.com)");
  EXPECT_EQ(dns_error("example.com"), "profile 'server' does not allow DNS name 'example.com' (allowed: *.example.com)");
  EXPECT_THAT(dns_error("*.b.example.com"), HasSubstr("does not allow DNS name '*.b.example.com'"));
  EXPECT_THAT(dns_error("wwwexample.com"), HasSubstr("does not allow DNS name 'wwwexample.com'"));
  EXPECT_THAT(dns_error("www.example.com.evil.net"), HasSubstr("does not allow"));
}

TEST_F(CheckRequest, SubdomainPatternAllowsAnyDepthButNotTheDomain) {
  profile_.dns = {".example.org"};
  EXPECT_NO_THROW(check_dns("a.example.org"));
  EXPECT_NO_THROW(check_dns("a.b.c.example.org"));
  EXPECT_NO_THROW(check_dns("*.example.org"));
  EXPECT_NO_THROW(check_dns("*.b.example.org"));
  EXPECT_EQ(dns_error("example.org"), "profile 'server' does not allow DNS name 'example.org' (allowed: .example.org)");
  EXPECT_THAT(dns_error("badexample.org"), HasSubstr("does not allow DNS name 'badexample.org'"));
}

TEST_F(CheckRequest, ExactPatternAllowsOnlyThatName) {
  profile_.dns = {"example.com"};
  EXPECT_NO_THROW(check_dns("example.com"));
  EXPECT_THAT(dns_error("www.example.com"), HasSubstr("does not allow DNS name 'www.example.com'"));
  EXPECT_THAT(dns_error("*.example.com"), HasSubstr("does not allow DNS name '*.example.com'"));
}

TEST_F(CheckRequest, StarPatternAllowsAnyValidName) {
  profile_.dns = {"*"};
  for (const char* name : {"localhost", "a.b.c.d.example", "*.example.com", "xn--bcher-kva.example"}) {
    EXPECT_NO_THROW(check_dns(name)) << name;
  }
  EXPECT_THAT(dns_error("bad_name.example"), HasSubstr("is not a valid host name"));
}

TEST_F(CheckRequest, ComparesDnsNamesCaseInsensitively) {
  EXPECT_NO_THROW(check_dns("WWW.Example.COM"));
  profile_.dns = {"*.EXAMPLE.com"};
  EXPECT_NO_THROW(check_dns("www.example.com"));
}

TEST_F(CheckRequest, NamesEveryAllowedPatternWhenRefusing) {
  EXPECT_EQ(dns_error("evil.example.net"),
            "profile 'server' does not allow DNS name 'evil.example.net' (allowed: *.example.com, .example.org)");
  profile_.dns = {};
  EXPECT_EQ(dns_error("www.example.com"),
            "profile 'server' does not allow DNS name 'www.example.com' (it allows no DNS names)");
}

TEST_F(CheckRequest, RefusesMalformedDnsNames) {
  profile_.dns = {"*"};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"www.example.com.", "it ends with a dot"},
      {"a..example.com", "empty label"},
      {".example.com", "empty label"},
      {"", "it is empty"},
      {"bad_name.example.com", "'_', which is not a letter, digit or '-'"},
      {"sp ace.example.com", "not a letter, digit or '-'"},
      {"-a.example.com", "starts or ends with '-'"},
      {"a-.example.com", "starts or ends with '-'"},
      {std::string(64, 'a') + ".example.com", "longer than 63 characters"},
      {std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(63, 'd'),
       "longer than 253 characters"},
      {"*", "a wildcard may only be the whole first label"},
      {"a*.example.com", "a wildcard may only be the whole first label"},
      {"*.*.example.com", "a wildcard may only be the whole first label"},
      {"www.*.example.com", "a wildcard may only be the whole first label"},
      {"10.0.0.1", "its last label is all digits"},
      {"b\xc3\xbc" "cher.example", "not a letter, digit or '-'"},
  };
  for (const auto& [name, reason] : cases) {
    std::string message = dns_error(name);
    EXPECT_THAT(message, StartsWith("DNS name '")) << name;
    EXPECT_THAT(message, HasSubstr("' is not a valid host name: ")) << name;
    EXPECT_THAT(message, HasSubstr(reason)) << name;
  }
  EXPECT_NO_THROW(check_dns(std::string(63, 'a') + ".example.com"));
  EXPECT_NO_THROW(check_dns("123.example.com"));
}

TEST_F(CheckRequest, EscapesControlCharactersInMessages) {
  std::string message = dns_error("a\nb.example.com");
  EXPECT_EQ(message, "DNS name 'a\\x0ab.example.com' is not a valid host name: it holds '\\x0a', which is not a "
                     "letter, digit or '-'");
  EXPECT_THAT(message, Not(HasSubstr("\n")));
}

// ---- IP addresses -----------------------------------------------------------------

TEST_F(CheckRequest, AllowsIpAddressesInsideTheRanges) {
  EXPECT_NO_THROW(check(with_ip({"10.0.0.0", "10.255.255.255", "10.1.2.3"})));
  EXPECT_EQ(error(with_ip({"11.0.0.1"})), "profile 'server' does not allow IP address '11.0.0.1' (allowed: 10.0.0.0/8)");
  EXPECT_EQ(error(with_ip({"9.255.255.255"})),
            "profile 'server' does not allow IP address '9.255.255.255' (allowed: 10.0.0.0/8)");

  profile_.ip = {"192.168.10.0/23", "2001:db8::/32", "::1/128"};
  EXPECT_NO_THROW(check(with_ip({"192.168.11.254", "2001:db8:ffff::1", "::1"})));
  EXPECT_THAT(error(with_ip({"192.168.12.1"})), HasSubstr("does not allow IP address '192.168.12.1'"));
  EXPECT_THAT(error(with_ip({"2001:db9::1"})), HasSubstr("does not allow IP address '2001:db9::1'"));
  EXPECT_THAT(error(with_ip({"::2"})), HasSubstr("does not allow IP address '::2'"));
}

TEST_F(CheckRequest, KeepsIpv4AndIpv6Apart) {
  profile_.ip = {"0.0.0.0/0"};
  EXPECT_NO_THROW(check(with_ip({"1.2.3.4", "255.255.255.255"})));
  EXPECT_THAT(error(with_ip({"::1"})), HasSubstr("does not allow IP address '::1'"));

  // An IPv4-mapped IPv6 address is IPv6.
  profile_.ip = {"10.0.0.0/8"};
  EXPECT_EQ(error(with_ip({"::ffff:10.0.0.1"})),
            "profile 'server' does not allow IP address '::ffff:10.0.0.1' (allowed: 10.0.0.0/8) (an IPv4-mapped IPv6 "
            "address is IPv6, not IPv4)");
  profile_.ip = {"::/0"};
  EXPECT_NO_THROW(check(with_ip({"::ffff:10.0.0.1", "2001:db8::1"})));
  EXPECT_THAT(error(with_ip({"10.0.0.1"})), HasSubstr("does not allow IP address '10.0.0.1'"));
}

TEST_F(CheckRequest, RefusesMalformedIpAddresses) {
  profile_.ip = {"0.0.0.0/0", "::/0"};
  for (const char* text : {"10.0.0.256", "10.0.0.1/32", "010.0.0.1", "10.1", "fe80::1%eth0", "", " 10.0.0.1",
                           "2001:db8:::1", "www.example.com"}) {
    EXPECT_EQ(error(with_ip({text})), "IP address '" + std::string(text) + "' is not an IPv4 or IPv6 address")
        << text;
  }
}

// ---- URIs -------------------------------------------------------------------------

TEST_F(CheckRequest, MatchesUrisWholeAgainstGlobs) {
  profile_.uri = {"spiffe://example.org/*"};
  EXPECT_NO_THROW(check(with_uri({"spiffe://example.org/ns/prod/sa/web"})));
  EXPECT_NO_THROW(check(with_uri({"spiffe://example.org/"})));
  EXPECT_EQ(error(with_uri({"spiffe://example.org.evil.net/x"})),
            "profile 'server' does not allow URI 'spiffe://example.org.evil.net/x' (allowed: spiffe://example.org/*)");
  EXPECT_THAT(error(with_uri({"https://example.org/x"})), HasSubstr("does not allow URI"));
  // Case-sensitive.
  EXPECT_THAT(error(with_uri({"SPIFFE://example.org/x"})), HasSubstr("does not allow URI"));

  profile_.uri = {"https://*.example.com/api", "urn:example:a"};
  EXPECT_NO_THROW(check(with_uri({"https://a.example.com/api", "https://a.b.example.com/api", "urn:example:a"})));
  // Whole: neither a prefix nor an extension matches.
  EXPECT_THAT(error(with_uri({"https://a.example.com/api/v2"})), HasSubstr("does not allow URI"));
  EXPECT_THAT(error(with_uri({"urn:example:ab"})), HasSubstr("does not allow URI"));

  profile_.uri = {};
  EXPECT_EQ(error(with_uri({"urn:example:a"})), "profile 'server' does not allow URI 'urn:example:a' (it allows no URIs)");
  profile_.uri = {"*"};
  EXPECT_NO_THROW(check(with_uri({"urn:x:y", "https://anything/at/all?q=1"})));
}

TEST_F(CheckRequest, RefusesMalformedUris) {
  profile_.uri = {"*"};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"no-scheme", "it has no scheme"},
      {"/relative/path", "it has no scheme"},
      {"1http://x", "it has no scheme"},
      {":x", "it has no scheme"},
      {"spiffe:", "nothing after the scheme"},
      {"https://a b", "space, a control character or a non-ASCII character"},
      {"https://\xc3\xa4.example", "non-ASCII"},
      {"", "it is empty"},
  };
  for (const auto& [uri, reason] : cases) {
    std::string message = error(with_uri({uri}));
    EXPECT_THAT(message, StartsWith("URI '")) << uri;
    EXPECT_THAT(message, HasSubstr("' is not valid: ")) << uri;
    EXPECT_THAT(message, HasSubstr(reason)) << uri;
  }
}

// ---- email addresses ------------------------------------------------------------------

TEST_F(CheckRequest, MatchesTheDomainOfEmailAddresses) {
  profile_.email = {"example.org"};
  EXPECT_NO_THROW(check(with_email({"alice@example.org", "Bob.Smith+tag@EXAMPLE.org"})));
  EXPECT_EQ(error(with_email({"alice@mail.example.org"})),
            "profile 'server' does not allow email address 'alice@mail.example.org' (allowed: example.org)");
  EXPECT_THAT(error(with_email({"alice@example.org.evil.net"})), HasSubstr("does not allow email address"));

  profile_.email = {".example.org"};
  EXPECT_NO_THROW(check(with_email({"alice@mail.example.org", "bob@a.b.example.org"})));
  EXPECT_THAT(error(with_email({"alice@example.org"})), HasSubstr("does not allow email address 'alice@example.org'"));
  EXPECT_THAT(error(with_email({"alice@badexample.org"})), HasSubstr("does not allow email address"));

  profile_.email = {};
  EXPECT_EQ(error(with_email({"alice@example.org"})),
            "profile 'server' does not allow email address 'alice@example.org' (it allows no email addresses)");
  profile_.email = {"*"};
  EXPECT_NO_THROW(check(with_email({"anyone@anywhere.example"})));
}

TEST_F(CheckRequest, RefusesMalformedEmailAddresses) {
  profile_.email = {"*"};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"alice", "exactly one '@'"},
      {"a@b@example.org", "exactly one '@'"},
      {"@example.org", "nothing before the '@'"},
      {"alice@", "its domain is not a valid host name: it is empty"},
      {"alice@exa_mple.org", "its domain is not a valid host name"},
      {"alice@example.org.", "its domain is not a valid host name: it ends with a dot"},
      {"alice@[10.0.0.1]", "its domain is not a valid host name"},
      {"al ice@example.org", "its local part holds a space"},
      {"j\xc3\xb6rg@example.org", "non-ASCII"},
  };
  for (const auto& [email, reason] : cases) {
    std::string message = error(with_email({email}));
    EXPECT_THAT(message, StartsWith("email address '")) << email;
    EXPECT_THAT(message, HasSubstr(reason)) << email;
  }
}

// ---- SAN required ------------------------------------------------------------------------

TEST_F(CheckRequest, RequiresASubjectAltNameWhenTheProfileSaysSo) {
  IssuanceRequest request = ec_request({});
  EXPECT_EQ(error(request), "a subjectAltName is required by profile 'server'");
  profile_.require_san = false;
  ProfileDecision decision = check(request);
  EXPECT_EQ(decision.subject, (Subject{{"CN", "www.example.com"}}));
}

TEST_F(CheckRequest, RefusesACertificateThatNamesNobody) {
  profile_.require_san = false;
  IssuanceRequest request = ec_request({});
  request.subject = {{"OU", "web"}};
  EXPECT_EQ(error(request),
            "the certificate would name nobody: the request has no subjectAltName and none of the subject fields "
            "profile 'server' copies (CN, O)");
}

// ---- subject ----------------------------------------------------------------------------------

TEST_F(CheckRequest, CopiesOnlyTheAllowedSubjectFieldsInRequestOrder) {
  ProfileDecision decision = check(
      with_subject({{"C", "DE"}, {"O", "Example GmbH"}, {"OU", "web"}, {"CN", "www.example.com"}, {"OU", "ops"}}));
  EXPECT_EQ(decision.subject, (Subject{{"O", "Example GmbH"}, {"CN", "www.example.com"}}));
  EXPECT_THAT(decision.warnings,
              ElementsAre("profile 'server' does not copy subject fields C, OU from the request (it copies CN, O)"));

  profile_.subject_fields = {"CN", "O", "OU", "L", "ST", "C", "serialNumber"};
  Subject all = {{"CN", "a"}, {"O", "b"}, {"OU", "c"}, {"L", "d"}, {"ST", "e"}, {"C", "FR"}, {"serialNumber", "42"}};
  EXPECT_EQ(check(with_subject(all)).subject, all);
  EXPECT_THAT(check(with_subject(all)).warnings, IsEmpty());
}

TEST_F(CheckRequest, RefusesControlCharactersInSubjectValues) {
  EXPECT_EQ(error(with_subject({{"CN", "www.example.com"}, {"O", "Example\nLtd"}})),
            "subject field 'O' contains a control character");
  EXPECT_EQ(error(with_subject({{"CN", std::string("nul\0here", 8)}})), "subject field 'CN' contains a control character");
  EXPECT_EQ(error(with_subject({{"CN", "del\x7f"}})), "subject field 'CN' contains a control character");
  EXPECT_EQ(error(with_subject({{"CN", "c1\xc2\x85"}})), "subject field 'CN' contains a control character");
  // Also in a field the profile would not copy.
  EXPECT_EQ(error(with_subject({{"OU", "tab\there"}})), "subject field 'OU' contains a control character");
  EXPECT_NO_THROW(check(with_subject({{"CN", "Z\xc3\xbcrich \xe2\x82\xac \xf0\x9f\x94\x91"}})));
}

TEST_F(CheckRequest, RefusesInvalidUtf8AndEmptySubjectValues) {
  for (const char* value : {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    EXPECT_EQ(error(with_subject({{"O", value}})), "subject field 'O' is not valid UTF-8");
  }
  EXPECT_EQ(error(with_subject({{"CN", ""}})), "subject field 'CN' is empty");
}

TEST_F(CheckRequest, RefusesSubjectValuesBeyondTheirUpperBounds) {
  profile_.subject_fields = {"CN", "C", "L", "serialNumber"};
  EXPECT_NO_THROW(check(with_subject({{"CN", std::string(64, 'a')}})));
  std::string sixty_four_umlauts;
  for (int i = 0; i < 64; ++i) sixty_four_umlauts += "\xc3\xbc";
  EXPECT_NO_THROW(check(with_subject({{"CN", sixty_four_umlauts}})));  // characters, not bytes
  EXPECT_EQ(error(with_subject({{"CN", std::string(65, 'a')}})),
            "subject field 'CN' is 65 characters long; at most 64 are allowed (RFC 5280 appendix A)");
  EXPECT_NO_THROW(check(with_subject({{"L", std::string(128, 'a')}})));
  EXPECT_THAT(error(with_subject({{"L", std::string(129, 'a')}})), HasSubstr("at most 128"));

  EXPECT_NO_THROW(check(with_subject({{"C", "DE"}})));
  EXPECT_EQ(error(with_subject({{"C", "DEU"}})),
            "subject field 'C' must be a two-letter country code (ISO 3166), not 'DEU'");
  EXPECT_THAT(error(with_subject({{"C", "1A"}})), HasSubstr("two-letter country code"));

  EXPECT_NO_THROW(check(with_subject({{"serialNumber", "ABC-123 (x)"}})));
  EXPECT_EQ(error(with_subject({{"serialNumber", "a@b"}})),
            "subject field 'serialNumber' holds characters a PrintableString cannot: 'a@b'");
}

// ---- validity ------------------------------------------------------------------------------

TEST_F(CheckRequest, UsesTheDefaultValidityWhenNoneIsRequested) {
  EXPECT_EQ(check(ec_request()).days, 90);
  profile_.default_days = 30;
  EXPECT_EQ(check(ec_request()).days, 30);
}

TEST_F(CheckRequest, RefusesValidityBeyondTheMaximum) {
  IssuanceRequest request = ec_request();
  for (int days : {1, 30, 397}) {
    request.days = days;
    EXPECT_EQ(check(request).days, days);
  }
  request.days = 400;
  EXPECT_EQ(error(request), "requested validity 400 days exceeds profile 'server' maximum of 397");
  request.days = 398;
  EXPECT_EQ(error(request), "requested validity 398 days exceeds profile 'server' maximum of 397");
  request.days = 0;
  EXPECT_EQ(error(request), "requested validity must be at least 1 day, not 0");
  request.days = -5;
  EXPECT_EQ(error(request), "requested validity must be at least 1 day, not -5");
}

TEST_F(CheckRequest, WarnsAboutADevelopmentProfile) {
  EXPECT_THAT(check(ec_request()).warnings, IsEmpty());
  profile_.development_only = true;
  EXPECT_THAT(check(ec_request()).warnings,
              ElementsAre("profile 'server' is for development only (development_only = true): it allows names that "
                          "no production profile should"));
}

// ---- validate_profile --------------------------------------------------------------------

class ValidateProfile : public ::testing::Test {
 protected:
  std::string error() {
    return error_of([&] { validate_profile(profile_); });
  }
  Profile profile_ = server_profile();
};

TEST_F(ValidateProfile, AcceptsNamesLikeKeyNames) {
  for (std::string name : {std::string("server"), std::string("server-client"), std::string("a"),
                           std::string("x_1.2"), std::string(64, 'p')}) {
    profile_.name = name;
    EXPECT_NO_THROW(validate_profile(profile_)) << name;
  }
  for (std::string name : {std::string(""), std::string("-x"), std::string(".x"), std::string("a b"),
                           std::string(65, 'p'), std::string("caf\xc3\xa9")}) {
    profile_.name = name;
    EXPECT_THAT(error(), StartsWith("invalid profile name '")) << name;
  }
}

TEST_F(ValidateProfile, ChecksKeyTypes) {
  profile_.key_types = {"rsa", "ec-p256", "ec-p384", "ed25519"};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.key_types = {"ec-p256", "rsa-2048"};
  EXPECT_EQ(error(), "profile 'server': unknown key type 'rsa-2048' (known: rsa, ec-p256, ec-p384, ed25519; the "
                     "smallest RSA size is min_rsa_bits)");
  profile_.key_types = {"ec-p521"};
  EXPECT_EQ(error(), "profile 'server': unknown key type 'ec-p521' (known: rsa, ec-p256, ec-p384, ed25519)");
  profile_.key_types = {"Ed25519"};
  EXPECT_EQ(error(), "profile 'server': unknown key type 'Ed25519' (did you mean 'ed25519'?)");
  profile_.key_types = {};
  EXPECT_EQ(error(), "profile 'server': key_types must not be empty");
}

TEST_F(ValidateProfile, ChecksMinRsaBits) {
  for (int bits : {2048, 3072, 16384}) {
    profile_.min_rsa_bits = bits;
    EXPECT_NO_THROW(validate_profile(profile_));
  }
  profile_.min_rsa_bits = 1024;
  EXPECT_EQ(error(), "profile 'server': min_rsa_bits must be between 2048 and 16384, not 1024");
  profile_.min_rsa_bits = 16385;
  EXPECT_EQ(error(), "profile 'server': min_rsa_bits must be between 2048 and 16384, not 16385");
}

TEST_F(ValidateProfile, ChecksDays) {
  profile_.default_days = 1;
  profile_.max_days = 1;
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.default_days = 36500;
  profile_.max_days = 36500;
  EXPECT_NO_THROW(validate_profile(profile_));

  profile_.default_days = 0;
  EXPECT_EQ(error(), "profile 'server': default_days must be between 1 and 36500, not 0");
  profile_.default_days = 90;
  profile_.max_days = 36501;
  EXPECT_EQ(error(), "profile 'server': max_days must be between 1 and 36500, not 36501");
  profile_.default_days = 400;
  profile_.max_days = 397;
  EXPECT_EQ(error(), "profile 'server': default_days (400) must not be more than max_days (397)");
}

TEST_F(ValidateProfile, ChecksKeyUsageNames) {
  profile_.key_types = {"rsa"};
  profile_.key_usage = {"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement"};
  EXPECT_NO_THROW(validate_profile(profile_));

  profile_.key_usage = {"digitalSignatur"};
  EXPECT_EQ(error(), "profile 'server': unknown key usage 'digitalSignatur' (known: digitalSignature, "
                     "contentCommitment, keyEncipherment, dataEncipherment, keyAgreement)");
  profile_.key_usage = {"DigitalSignature"};
  EXPECT_EQ(error(), "profile 'server': unknown key usage 'DigitalSignature' (did you mean 'digitalSignature'?)");
  profile_.key_usage = {"nonRepudiation"};
  EXPECT_EQ(error(),
            "profile 'server': unknown key usage 'nonRepudiation' (X.509 renamed nonRepudiation to contentCommitment)");
  for (const char* ca_usage : {"keyCertSign", "cRLSign"}) {
    profile_.key_usage = {"digitalSignature", ca_usage};
    EXPECT_EQ(error(), "profile 'server': key usage '" + std::string(ca_usage) +
                           "' is for CA certificates; a profile is for leaf certificates");
  }
  profile_.key_usage = {};
  EXPECT_EQ(error(), "profile 'server': key_usage must not be empty");
}

TEST_F(ValidateProfile, RefusesKeyUsageThatLeavesAnAllowedKeyTypeNothing) {
  profile_.key_types = {"rsa", "ed25519"};
  profile_.key_usage = {"keyEncipherment"};
  EXPECT_EQ(error(), "profile 'server': key_usage (keyEncipherment) leaves nothing for ed25519 keys, which can have "
                     "digitalSignature, contentCommitment");
  profile_.key_types = {"ec-p256"};
  profile_.key_usage = {"keyAgreement"};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.key_types = {"rsa"};
  EXPECT_EQ(error(), "profile 'server': key_usage (keyAgreement) leaves nothing for rsa keys, which can have "
                     "digitalSignature, contentCommitment, keyEncipherment, dataEncipherment");
}

TEST_F(ValidateProfile, ChecksExtendedKeyUsageNames) {
  profile_.extended_key_usage = {"serverAuth", "clientAuth",   "codeSigning",
                                 "emailProtection", "timeStamping", "ocspSigning"};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.extended_key_usage = {"serverAuth", "anyExtendedKeyUsage"};
  EXPECT_EQ(error(), "profile 'server': extended key usage 'anyExtendedKeyUsage' is refused: name the usages that "
                     "certificates of the profile are for");
  profile_.extended_key_usage = {"webAuth"};
  EXPECT_EQ(error(), "profile 'server': unknown extended key usage 'webAuth' (known: serverAuth, clientAuth, "
                     "codeSigning, emailProtection, timeStamping, ocspSigning)");
  profile_.extended_key_usage = {"OCSPSigning"};
  EXPECT_EQ(error(), "profile 'server': unknown extended key usage 'OCSPSigning' (did you mean 'ocspSigning'?)");
  profile_.extended_key_usage = {};
  EXPECT_EQ(error(), "profile 'server': extended_key_usage must not be empty");
}

TEST_F(ValidateProfile, ChecksDnsPatterns) {
  profile_.dns = {"*", "*.example.com", ".example.org", "example.net", "localhost", "*.com"};
  EXPECT_NO_THROW(validate_profile(profile_));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "it is empty"},
      {"*.", "it ends with a dot"},
      {"**.example.com", "a wildcard may only be the whole first label"},
      {"a.*.example.com", "a wildcard may only be the whole first label"},
      {"*example.com", "a wildcard may only be the whole first label"},
      {".*.example.com", "a wildcard may only be the whole first label"},
      {".", "it is empty"},
      {"..example.com", "empty label"},
      {"example.com.", "it ends with a dot"},
      {"ex ample.com", "not a letter, digit or '-'"},
      {"10.0.0.0", "all digits"},
  };
  for (const auto& [pattern, reason] : cases) {
    profile_.dns = {pattern};
    std::string message = error();
    EXPECT_THAT(message, StartsWith("profile 'server': DNS pattern '" + pattern + "' is not valid: ")) << pattern;
    EXPECT_THAT(message, HasSubstr(reason)) << pattern;
    EXPECT_THAT(message, HasSubstr("(patterns: '*', '*.example.com', '.example.com', 'example.com')")) << pattern;
  }
}

TEST_F(ValidateProfile, ChecksIpRanges) {
  profile_.ip = {"10.0.0.0/8", "192.168.1.1/32", "::1/128", "0.0.0.0/0", "::/0", "fd00::/8", "2001:db8::/32"};
  EXPECT_NO_THROW(validate_profile(profile_));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"10.0.0.0", "it has no '/prefix'"},
      {"10.0.0.1/8", "host bits are set after the prefix (did you mean '10.0.0.0/8'?)"},
      {"fd00::1/8", "did you mean 'fd00::/8'?"},
      {"10.0.0.0/33", "the prefix length of an IPv4 range is a number from 0 to 32"},
      {"::/129", "the prefix length of an IPv6 range is a number from 0 to 128"},
      {"10.0.0.0/08", "a number from 0 to 32"},
      {"10.0.0.0/-1", "a number from 0 to 32"},
      {"10.0.0.0/", "a number from 0 to 32"},
      {"10.0.0.0/8/8", "a number from 0 to 32"},
      {"example.com/8", "'example.com' is not an IPv4 or IPv6 address"},
      {"10.0.0/8", "'10.0.0' is not an IPv4 or IPv6 address"},
  };
  for (const auto& [cidr, reason] : cases) {
    profile_.ip = {cidr};
    std::string message = error();
    EXPECT_THAT(message, StartsWith("profile 'server': IP range '" + cidr +
                                    "' is not a CIDR such as '10.0.0.0/8' or 'fd00::/8': "))
        << cidr;
    EXPECT_THAT(message, HasSubstr(reason)) << cidr;
  }
}

TEST_F(ValidateProfile, ChecksUriPatterns) {
  profile_.uri = {"*", "spiffe://example.org/*", "urn:example:*"};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.uri = {""};
  EXPECT_EQ(error(), "profile 'server': URI pattern '' is empty (use '*' for any URI)");
  profile_.uri = {"spiffe://example.org/a b"};
  EXPECT_EQ(error(), "profile 'server': URI pattern 'spiffe://example.org/a b' holds a space, a control character or "
                     "a non-ASCII character");
}

TEST_F(ValidateProfile, ChecksEmailPatterns) {
  profile_.email = {"*", "example.org", ".example.org"};
  EXPECT_NO_THROW(validate_profile(profile_));
  for (const char* pattern : {"alice@example.org", "*.example.org", "", "exa_mple.org", "example.org."}) {
    profile_.email = {pattern};
    EXPECT_THAT(error(), StartsWith("profile 'server': email pattern '" + std::string(pattern) + "' is not valid: "))
        << pattern;
  }
  profile_.email = {"alice@example.org"};
  EXPECT_EQ(error(), "profile 'server': email pattern 'alice@example.org' is not valid: it names a domain, not an "
                     "address (patterns: '*', 'example.org', '.example.org')");
}

TEST_F(ValidateProfile, ChecksSubjectFieldNames) {
  profile_.subject_fields = {"CN", "O", "OU", "L", "ST", "C", "serialNumber"};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.subject_fields = {"CN", "emailAddress"};
  EXPECT_EQ(error(), "profile 'server': unknown subject field 'emailAddress' (known: CN, O, OU, L, ST, C, serialNumber)");
  profile_.subject_fields = {"cn"};
  EXPECT_EQ(error(), "profile 'server': unknown subject field 'cn' (did you mean 'CN'?)");
}

TEST_F(ValidateProfile, AcceptsAnEmptySubjectOnlyWithARequiredSan) {
  profile_.subject_fields = {};
  EXPECT_NO_THROW(validate_profile(profile_));
  profile_.require_san = false;
  EXPECT_EQ(error(), "profile 'server': require_san = false needs subject_fields: a certificate must name its subject "
                     "in a subjectAltName or in the subject");
}

TEST_F(ValidateProfile, ChecksUrls) {
  profile_.crl_distribution_points = {"http://pki.example.org/crl/issuing.crl", "HTTPS://pki.example.org:8443/x.crl"};
  profile_.ocsp_urls = {"http://ocsp.example.org"};
  profile_.ca_issuers_urls = {"http://pki.example.org/issuing.cer"};
  EXPECT_NO_THROW(validate_profile(profile_));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ldap://ldap.example.org/cn=CA", "must start with http:// or https://"},
      {"pki.example.org/crl", "must start with http:// or https://"},
      {"", "must start with http:// or https://"},
      {"http://", "has no host"},
      {"http:///crl", "has no host"},
      {"http://:8080/crl", "has no host"},
      {"http://user:pw@pki.example.org/crl", "must not hold a user name or password"},
      {"http://pki.example.org/a b.crl", "holds a space"},
  };
  for (const auto& [url, reason] : cases) {
    for (auto list : {&Profile::crl_distribution_points, &Profile::ocsp_urls, &Profile::ca_issuers_urls}) {
      Profile profile = server_profile();
      profile.*list = {url};
      std::string message = error_of([&] { validate_profile(profile); });
      EXPECT_THAT(message, StartsWith("profile 'server': URL '" + url + "' ")) << url;
      EXPECT_THAT(message, HasSubstr(reason)) << url;
    }
  }
}

TEST(ValidateProfileEntries, NameTheValueWithoutAProfile) {
  EXPECT_EQ(error_of([] { validate_ip_range("10.0.0.0/33"); }),
            "IP range '10.0.0.0/33' is not a CIDR such as '10.0.0.0/8' or 'fd00::/8': the prefix length of an IPv4 "
            "range is a number from 0 to 32");
  EXPECT_EQ(error_of([] { validate_profile_name("bad name"); }),
            "invalid profile name 'bad name': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit");
  EXPECT_NO_THROW(validate_dns_pattern("*.example.com"));
  EXPECT_NO_THROW(validate_url("https://pki.example.org/ca.cer"));
  EXPECT_NO_THROW(validate_key_type("ec-p384"));
  EXPECT_NO_THROW(validate_subject_field("serialNumber"));
  EXPECT_NO_THROW(validate_email_pattern(".example.org"));
  EXPECT_NO_THROW(validate_uri_pattern("spiffe://example.org/*"));
  EXPECT_NO_THROW(validate_key_usage("keyAgreement"));
  EXPECT_NO_THROW(validate_extended_key_usage("timeStamping"));
}

}  // namespace
}  // namespace keyhold::pki
