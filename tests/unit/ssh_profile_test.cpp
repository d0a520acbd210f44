// SSH certificate profiles: what a signing request may ask for, and what a profile may say.
#include "keyhold/ssh/profile.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "keyhold/core/error.hpp"

namespace keyhold::ssh {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using Options = std::vector<std::pair<std::string, std::string>>;

constexpr std::uint64_t kNow = 1'800'000'000;  // 2027-01-15T08:00:00Z
constexpr std::uint64_t kHour = 3600;

const std::string kStandard =
    "permit-X11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, permit-user-rc";
const std::string kKnownExtensionList = "no-touch-required, " + kStandard;

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

Profile user_profile() {
  Profile profile = make_profile("user", CertificateKind::User);
  profile.principals = {"deploy-*", "alice"};
  return profile;
}

Profile host_profile() {
  Profile profile = make_profile("hosts", CertificateKind::Host);
  profile.principals = {"*.example.org", "10.0.0.*", "2001:db8::*", "web01"};
  profile.default_validity = 30 * 24h;
  profile.max_validity = 365 * 24h;
  return profile;
}

SignRequest user_request(std::vector<std::string> principals = {"alice"}) {
  SignRequest request;
  request.kind = CertificateKind::User;
  request.subject_key_type = "ssh-ed25519";
  request.key_id = "alice@laptop";
  request.principals = std::move(principals);
  return request;
}

SignRequest host_request(std::vector<std::string> principals = {"web.example.org"}) {
  SignRequest request = user_request(std::move(principals));
  request.kind = CertificateKind::Host;
  request.key_id = "web.example.org host key";
  return request;
}

class CheckRequest : public ::testing::Test {
 protected:
  SignDecision check(const SignRequest& request) { return check_sign_request(profile_, request, kNow); }
  std::string error(const SignRequest& request) {
    return error_of([&] { check_sign_request(profile_, request, kNow); });
  }
  SignDecision check_host(const SignRequest& request) { return check_sign_request(hosts_, request, kNow); }
  std::string host_error(const SignRequest& request) {
    return error_of([&] { check_sign_request(hosts_, request, kNow); });
  }
  SignRequest with_option(std::string name, std::string value) {
    SignRequest request = user_request();
    request.options = {{std::move(name), std::move(value)}};
    return request;
  }
  std::string option_error(std::string name, std::string value) {
    return error(with_option(std::move(name), std::move(value)));
  }
  SignRequest with_extensions(std::vector<std::string> extensions, bool no_defaults = false) {
    SignRequest request = user_request();
    request.extensions = std::move(extensions);
    request.no_default_extensions = no_defaults;
    return request;
  }
  SignRequest with_key(std::string type, int rsa_bits = 0) {
    SignRequest request = user_request();
    request.subject_key_type = std::move(type);
    request.subject_rsa_bits = rsa_bits;
    return request;
  }

  Profile profile_ = user_profile();
  Profile hosts_ = host_profile();
};

// ---- Defaults and kinds ----------------------------------------------------------

TEST(SshProfile, DefaultsAreTheDocumentedOnesAndValid) {
  Profile profile;
  EXPECT_EQ(profile.kind, CertificateKind::User);
  EXPECT_THAT(profile.principals, ElementsAre("*"));
  EXPECT_THAT(profile.key_types, ElementsAre("ed25519", "ecdsa", "rsa"));
  EXPECT_EQ(profile.min_rsa_bits, 2048);
  EXPECT_EQ(profile.default_validity, 8h);
  EXPECT_EQ(profile.max_validity, 24h);
  EXPECT_THAT(profile.extensions, ElementsAre("permit-X11-forwarding", "permit-agent-forwarding",
                                              "permit-port-forwarding", "permit-pty", "permit-user-rc"));
  EXPECT_EQ(profile.default_extensions, profile.extensions);
  EXPECT_THAT(profile.critical_options, ElementsAre("force-command", "source-address", "verify-required"));
  EXPECT_FALSE(profile.development_only);
  profile.name = "default";
  EXPECT_NO_THROW(validate_profile(profile));
  EXPECT_NO_THROW(validate_profile(user_profile()));
  EXPECT_NO_THROW(validate_profile(host_profile()));
}

TEST(SshProfile, MakeProfileGivesAHostProfileNoExtensionsOrOptions) {
  Profile host = make_profile("h", CertificateKind::Host);
  EXPECT_EQ(host.name, "h");
  EXPECT_EQ(host.kind, CertificateKind::Host);
  EXPECT_THAT(host.principals, ElementsAre("*"));
  EXPECT_THAT(host.extensions, IsEmpty());
  EXPECT_THAT(host.default_extensions, IsEmpty());
  EXPECT_THAT(host.critical_options, IsEmpty());
  EXPECT_NO_THROW(validate_profile(host));

  Profile user = make_profile("u", CertificateKind::User);
  EXPECT_EQ(user.extensions.size(), 5u);
  EXPECT_EQ(user.critical_options.size(), 3u);
  EXPECT_NO_THROW(validate_profile(user));
}

TEST(SshProfile, NamesTheKinds) {
  EXPECT_EQ(to_string(CertificateKind::User), "user");
  EXPECT_EQ(to_string(CertificateKind::Host), "host");
  EXPECT_EQ(parse_certificate_kind("user"), CertificateKind::User);
  EXPECT_EQ(parse_certificate_kind("host"), CertificateKind::Host);
  EXPECT_EQ(parse_certificate_kind("User"), std::nullopt);
  EXPECT_EQ(parse_certificate_kind("users"), std::nullopt);
  EXPECT_EQ(parse_certificate_kind(""), std::nullopt);
}

TEST_F(CheckRequest, AcceptsARequestInsideTheProfile) {
  SignDecision decision = check(user_request({"alice", "deploy-web"}));
  EXPECT_EQ(decision.valid_after, kNow - 60);
  EXPECT_EQ(decision.valid_before, kNow + 8 * kHour);
  EXPECT_THAT(decision.options, IsEmpty());
  EXPECT_THAT(decision.extensions, ElementsAre("permit-X11-forwarding", "permit-agent-forwarding",
                                               "permit-port-forwarding", "permit-pty", "permit-user-rc"));
  EXPECT_THAT(decision.warnings, IsEmpty());

  SignDecision host = check_host(host_request({"web.example.org", "10.0.0.7"}));
  EXPECT_EQ(host.valid_after, kNow - 60);
  EXPECT_EQ(host.valid_before, kNow + 30 * 24 * kHour);
  EXPECT_THAT(host.options, IsEmpty());
  EXPECT_THAT(host.extensions, IsEmpty());
}

TEST_F(CheckRequest, RefusesTheOtherKindOfCertificate) {
  EXPECT_EQ(error_of([&] { check_sign_request(hosts_, user_request(), kNow); }),
            "profile 'hosts' signs host certificates, not user certificates");
  EXPECT_EQ(error_of([&] { check_sign_request(profile_, host_request(), kNow); }),
            "profile 'user' signs user certificates, not host certificates");
}

// ---- Subject keys ------------------------------------------------------------------

TEST_F(CheckRequest, AcceptsEveryKnownKeyType) {
  for (const char* type : {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}) {
    EXPECT_NO_THROW(check(with_key(type))) << type;
  }
  for (int bits : {2048, 3072, 4096, 16384}) EXPECT_NO_THROW(check(with_key("ssh-rsa", bits))) << bits;
}

TEST_F(CheckRequest, RefusesKeysOpenSshShouldNotTrust) {
  EXPECT_EQ(error(with_key("ssh-dss")), "DSA keys are refused (ssh-dss: OpenSSH has disabled them since 7.0)");
  EXPECT_EQ(error(with_key("ssh-ed25519-cert-v01@openssh.com")),
            "the subject key 'ssh-ed25519-cert-v01@openssh.com' is a certificate: give the plain public key");
  EXPECT_EQ(error(with_key("sk-ssh-ed25519@openssh.com")),
            "FIDO security keys (sk-ssh-ed25519@openssh.com) are not supported");
  EXPECT_EQ(error(with_key("rsa-sha2-512")),
            "'rsa-sha2-512' is an RSA signature algorithm, not a key type (an RSA key is ssh-rsa)");
  EXPECT_EQ(error(with_key("ecdsa-sha2-1.3.132.0.10")),
            "unknown key type 'ecdsa-sha2-1.3.132.0.10' (known: ssh-ed25519, ecdsa-sha2-nistp256, "
            "ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa)");
  EXPECT_THAT(error(with_key("ssh-ed25519\n")), HasSubstr("'ssh-ed25519\\x0a'"));
}

TEST_F(CheckRequest, RefusesKeyTypesTheProfileDoesNotList) {
  profile_.key_types = {"ed25519", "ecdsa"};
  EXPECT_EQ(error(with_key("ssh-rsa", 4096)), "profile 'user' does not allow ssh-rsa keys (allowed: ed25519, ecdsa)");
  profile_.key_types = {"rsa"};
  EXPECT_EQ(error(with_key("ecdsa-sha2-nistp521")),
            "profile 'user' does not allow ecdsa-sha2-nistp521 keys (allowed: rsa)");
  EXPECT_NO_THROW(check(with_key("ssh-rsa", 2048)));
}

TEST_F(CheckRequest, RefusesRsaKeysOfTheWrongSize) {
  EXPECT_EQ(error(with_key("ssh-rsa", 1024)), "RSA keys of 1024 bits are too small (at least 2048)");
  EXPECT_EQ(error(with_key("ssh-rsa", 2047)), "RSA keys of 2047 bits are too small (at least 2048)");
  EXPECT_EQ(error(with_key("ssh-rsa", 0)), "RSA keys of 0 bits are too small (at least 2048)");
  EXPECT_EQ(error(with_key("ssh-rsa", 16385)), "RSA keys of 16385 bits are too large (OpenSSH accepts at most 16384)");
  profile_.min_rsa_bits = 3072;
  EXPECT_EQ(error(with_key("ssh-rsa", 2048)), "RSA keys of 2048 bits are too small for profile 'user' (at least 3072)");
  EXPECT_NO_THROW(check(with_key("ssh-rsa", 3072)));
  // The size of other keys is not RSA's business.
  EXPECT_NO_THROW(check(with_key("ssh-ed25519", 1024)));
}

// ---- Key ids -------------------------------------------------------------------------

TEST_F(CheckRequest, AcceptsPrintableKeyIds) {
  for (std::string id :
       {std::string("alice@laptop (ticket 42)"), std::string("J\xc3\xb6rg's key"), std::string(256, 'k')}) {
    SignRequest request = user_request();
    request.key_id = id;
    EXPECT_NO_THROW(check(request)) << id;
  }
}

TEST_F(CheckRequest, RefusesBadKeyIds) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "the key id is empty"},
      {std::string(257, 'k'), "the key id is 257 bytes long; at most 256 are allowed"},
      {"alice\nroot", "the key id 'alice\\x0aroot' contains a control character"},
      {"alice\x7f", "the key id 'alice\\x7f' contains a control character"},
      {"alice\xc2\x85", "the key id 'alice\\xc2\\x85' contains a control character"},  // U+0085, a C1 control
      {"alice\xff", "the key id 'alice\\xff' is not valid UTF-8"},
      {"\xc0\xaf", "the key id '\\xc0\\xaf' is not valid UTF-8"},  // overlong '/'
  };
  for (const auto& [id, message] : cases) {
    SignRequest request = user_request();
    request.key_id = id;
    EXPECT_EQ(error(request), message);
  }
}

// ---- Principals ------------------------------------------------------------------------

TEST_F(CheckRequest, MatchesUserPrincipalsAgainstThePatterns) {
  EXPECT_NO_THROW(check(user_request({"alice"})));
  EXPECT_NO_THROW(check(user_request({"deploy-web", "deploy-", "deploy-a.b@c"})));
  EXPECT_EQ(error(user_request({"alice", "root"})),
            "profile 'user' does not allow principal 'root' (allowed: deploy-*, alice)");
  EXPECT_EQ(error(user_request({"Alice"})),
            "profile 'user' does not allow principal 'Alice' (allowed: deploy-*, alice)");
  EXPECT_EQ(error(user_request({"xdeploy-web"})),
            "profile 'user' does not allow principal 'xdeploy-web' (allowed: deploy-*, alice)");
  EXPECT_EQ(error(user_request({"alice2"})),
            "profile 'user' does not allow principal 'alice2' (allowed: deploy-*, alice)");
  profile_.principals = {"*"};
  EXPECT_NO_THROW(check(user_request({"root", "anybody@EXAMPLE.COM", "x"})));
  profile_.principals = {"*-admin", "ops-*-ro"};
  EXPECT_NO_THROW(check(user_request({"db-admin", "ops-eu-west-ro", "ops--ro"})));
  EXPECT_THAT(error(user_request({"ops-ro"})), StartsWith("profile 'user' does not allow principal 'ops-ro'"));
}

TEST_F(CheckRequest, RefusesMalformedUserPrincipals) {
  profile_.principals = {"*"};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a b", "principal 'a b' contains a space"},
      {"a,b", "principal 'a,b' contains a comma (OpenSSH separates principals with commas)"},
      {"a\tb", "principal 'a\\x09b' contains a control character"},
      {"alice\n", "principal 'alice\\x0a' contains a control character"},
      {"", "principal '' is empty"},
      {"j\xc3\xb6rg", "principal 'j\\xc3\\xb6rg' contains a non-ASCII character"},
      {std::string(257, 'p'),
       "principal '" + std::string(200, 'p') + "...' is 257 bytes long; at most 256 are allowed"},
      {"deploy-*",
       "principal 'deploy-*' contains '*': sshd compares user principals literally, so it would only match a user of "
       "that very name"},
      {"al?ce",
       "principal 'al?ce' contains '?': sshd compares user principals literally, so it would only match a user of "
       "that very name"},
  };
  for (const auto& [principal, message] : cases) EXPECT_EQ(error(user_request({principal})), message);
  EXPECT_NO_THROW(check(user_request({std::string(256, 'p')})));
}

TEST_F(CheckRequest, RefusesAnEmptyPrincipalListForBothKinds) {
  EXPECT_EQ(error(user_request({})),
            "an empty principal list is refused for a user certificate: OpenSSH would accept it for every user");
  EXPECT_EQ(host_error(host_request({})),
            "an empty principal list is refused for a host certificate: OpenSSH would accept it for every host");
}

TEST_F(CheckRequest, RefusesDuplicateAndTooManyPrincipals) {
  EXPECT_EQ(error(user_request({"alice", "deploy-a", "alice"})), "principal 'alice' is given twice");
  profile_.principals = {"*"};
  std::vector<std::string> many;
  for (int i = 0; i < 256; ++i) many.push_back("u" + std::to_string(i));
  EXPECT_NO_THROW(check(user_request(many)));
  many.push_back("u256");
  EXPECT_EQ(error(user_request(many)), "257 principals are too many (OpenSSH accepts at most 256)");
}

TEST_F(CheckRequest, AcceptsHostNamesWildcardsAndAddressesAsHostPrincipals) {
  EXPECT_NO_THROW(check_host(host_request(
      {"web.example.org", "a.b.example.org", "*.example.org", "web01", "10.0.0.1", "10.0.0.254", "2001:db8::1"})));
  hosts_.principals = {"*"};
  EXPECT_NO_THROW(check_host(
      host_request({"localhost", "xn--bcher-kva.example", "*.internal", "::1", "::ffff:192.0.2.1", "a-b.c-d.e"})));
}

TEST_F(CheckRequest, MatchesHostPrincipalsAgainstThePatterns) {
  const std::string allowed = " (allowed: *.example.org, 10.0.0.*, 2001:db8::*, web01)";
  EXPECT_EQ(host_error(host_request({"example.org"})),
            "profile 'hosts' does not allow principal 'example.org'" + allowed);
  EXPECT_EQ(host_error(host_request({"evil.org"})), "profile 'hosts' does not allow principal 'evil.org'" + allowed);
  EXPECT_EQ(host_error(host_request({"web02"})), "profile 'hosts' does not allow principal 'web02'" + allowed);
  EXPECT_EQ(host_error(host_request({"10.0.1.1"})), "profile 'hosts' does not allow principal '10.0.1.1'" + allowed);
  EXPECT_EQ(host_error(host_request({"*.org"})), "profile 'hosts' does not allow principal '*.org'" + allowed);
}

TEST_F(CheckRequest, RefusesMalformedHostPrincipals) {
  hosts_.principals = {"*"};
  const std::string not_a_host = "' is not a host name, a wildcard name or an IP address: ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"web example.org", "host principal 'web example.org' contains a space"},
      {"web,db", "host principal 'web,db' contains a comma (OpenSSH separates principals with commas)"},
      {"Web.Example.org",
       "host principal 'Web.Example.org' contains upper-case letters: ssh lower-cases the host name before it "
       "matches host principals (write 'web.example.org')"},
      {"2001:DB8::1",
       "host principal '2001:DB8::1' contains upper-case letters: ssh lower-cases the host name before it matches "
       "host principals (write '2001:db8::1')"},
      {"web.example.org.",
       "host principal 'web.example.org." + not_a_host + "it ends with a dot (write it without the trailing dot)"},
      {"a_b.example.org",
       "host principal 'a_b.example.org" + not_a_host + "it holds '_', which is not a letter, digit or '-'"},
      {"*", "host principal '*" + not_a_host + "a wildcard may only be the whole first label, as in '*.example.org'"},
      {"web.*.example.org", "host principal 'web.*.example.org" + not_a_host +
                                "a wildcard may only be the whole first label, as in '*.example.org'"},
      {"10.0.0.*",
       "host principal '10.0.0.*" + not_a_host + "a wildcard may only be the whole first label, as in '*.example.org'"},
      {"web?.example.org",
       "host principal 'web?.example.org" + not_a_host + "it holds '?', which is not a letter, digit or '-'"},
      {"1.2.3", "host principal '1.2.3" + not_a_host + "its last label is all digits, and it is not an IPv4 address"},
      {"256.0.0.1",
       "host principal '256.0.0.1" + not_a_host + "its last label is all digits, and it is not an IPv4 address"},
      {"-web.example.org", "host principal '-web.example.org" + not_a_host + "label '-web' starts or ends with '-'"},
      {"a..b", "host principal 'a..b" + not_a_host + "it has an empty label"},
      {"fe80::1%eth0",
       "host principal 'fe80::1%eth0" + not_a_host + "it holds ':', which is not a letter, digit or '-'"},
      {std::string(64, 'a') + ".example.org", "host principal '" + std::string(64, 'a') + ".example.org" + not_a_host +
                                                  "label '" + std::string(64, 'a') + "' is longer than 63 characters"},
  };
  for (const auto& [principal, message] : cases) EXPECT_EQ(host_error(host_request({principal})), message);
}

// ---- Validity ----------------------------------------------------------------------------

TEST_F(CheckRequest, GivesTheDefaultValidityFromNowWithClockSkew) {
  SignDecision decision = check(user_request());
  EXPECT_EQ(decision.valid_after, kNow - 60);
  EXPECT_EQ(decision.valid_before, kNow + 8 * kHour);
  // Early in the epoch, valid_after stops at 0.
  decision = check_sign_request(profile_, user_request(), 30);
  EXPECT_EQ(decision.valid_after, 0u);
  EXPECT_EQ(decision.valid_before, 30 + 8 * kHour);
}

TEST_F(CheckRequest, GivesTheRequestedValidityUpToTheMaximum) {
  SignRequest request = user_request();
  request.validity = 24h;
  SignDecision decision = check(request);
  EXPECT_EQ(decision.valid_after, kNow - 60);
  EXPECT_EQ(decision.valid_before, kNow + 24 * kHour);
  request.validity = 1s;
  EXPECT_EQ(check(request).valid_before, kNow + 1);

  request.validity = 48h;
  EXPECT_EQ(error(request), "validity 48h exceeds profile 'user' maximum of 24h");
  request.validity = 24h + 1s;
  EXPECT_EQ(error(request), "validity 86401s exceeds profile 'user' maximum of 24h");
  request.validity = 0s;
  EXPECT_EQ(error(request), "validity must be positive, not 0s");
  request.validity = -5min;
  EXPECT_EQ(error(request), "validity must be positive, not -300s");

  SignRequest host = host_request();
  host.validity = 366 * 24h;
  EXPECT_EQ(host_error(host), "validity 366d exceeds profile 'hosts' maximum of 365d");
  host.validity = 90min;
  EXPECT_EQ(check_host(host).valid_before, kNow + 90 * 60);
}

TEST_F(CheckRequest, TakesAnExplicitWindow) {
  SignRequest request = user_request();
  request.valid_from = kNow + kHour;
  request.valid_to = kNow + 25 * kHour;
  SignDecision decision = check(request);
  EXPECT_EQ(decision.valid_after, kNow + kHour);  // exactly as asked: no clock skew
  EXPECT_EQ(decision.valid_before, kNow + 25 * kHour);

  // Started in the past, still valid now.
  request.valid_from = kNow - 2 * kHour;
  request.valid_to = kNow + kHour;
  EXPECT_EQ(check(request).valid_after, kNow - 2 * kHour);

  request.valid_from = kNow;
  request.valid_to = kNow + 48 * kHour;
  EXPECT_EQ(error(request),
            "validity from 2027-01-15T08:00:00Z to 2027-01-17T08:00:00Z (48h) exceeds profile 'user' maximum of 24h");
  request.valid_to = kNow;
  EXPECT_EQ(error(request), "valid_to (2027-01-15T08:00:00Z) must be after valid_from (2027-01-15T08:00:00Z)");
  request.valid_from = kNow - 3 * kHour;
  request.valid_to = kNow - kHour;
  EXPECT_EQ(error(request),
            "valid_to ends at 2027-01-15T07:00:00Z, which is not after now (2027-01-15T08:00:00Z): the certificate "
            "would never be valid");
  request.valid_from = 0;
  request.valid_to = std::numeric_limits<std::uint64_t>::max();  // OpenSSH's "forever"
  EXPECT_THAT(error(request), HasSubstr("exceeds profile 'user' maximum of 24h"));
}

TEST_F(CheckRequest, TakesHalfAWindow) {
  SignRequest request = user_request();
  request.valid_from = kNow + kHour;
  SignDecision decision = check(request);
  EXPECT_EQ(decision.valid_after, kNow + kHour);
  EXPECT_EQ(decision.valid_before, kNow + 9 * kHour);  // the default validity from valid_from
  request.valid_from = kNow - 9 * kHour;
  EXPECT_EQ(error(request),
            "valid_from 2027-01-14T23:00:00Z with profile 'user' default validity of 8h ends at "
            "2027-01-15T07:00:00Z, which is not after now (2027-01-15T08:00:00Z): the certificate would never be "
            "valid");

  request = user_request();
  request.valid_to = kNow + 24 * kHour;
  decision = check(request);
  EXPECT_EQ(decision.valid_after, kNow - 60);
  EXPECT_EQ(decision.valid_before, kNow + 24 * kHour);
  request.valid_to = kNow + 30 * kHour;
  EXPECT_EQ(error(request), "validity until 2027-01-16T14:00:00Z (30h from now) exceeds profile 'user' maximum of 24h");
  request.valid_to = kNow;
  EXPECT_EQ(error(request),
            "valid_to ends at 2027-01-15T08:00:00Z, which is not after now (2027-01-15T08:00:00Z): the certificate "
            "would never be valid");
}

TEST_F(CheckRequest, RefusesAValidityTogetherWithAWindow) {
  SignRequest request = user_request();
  request.validity = 1h;
  request.valid_from = kNow;
  EXPECT_EQ(error(request), "a validity and valid_from/valid_to cannot both be given: ask for one or the other");
  request.valid_from.reset();
  request.valid_to = kNow + kHour;
  EXPECT_EQ(error(request), "a validity and valid_from/valid_to cannot both be given: ask for one or the other");
}

TEST_F(CheckRequest, RefusesAValidityThatDoesNotFit) {
  constexpr std::uint64_t kLast = std::numeric_limits<std::uint64_t>::max();
  EXPECT_THAT(error_of([&] { check_sign_request(profile_, user_request(), kLast - 100); }),
              HasSubstr("plus the validity does not fit a certificate"));
  SignRequest request = user_request();
  request.valid_from = kLast - 100;
  EXPECT_THAT(error(request), HasSubstr("plus the default validity does not fit a certificate"));
  EXPECT_THAT(error(request), HasSubstr("(seconds since the epoch)"));
}

// ---- Critical options ---------------------------------------------------------------------

TEST_F(CheckRequest, AcceptsAllowedCriticalOptionsSortedByName) {
  SignRequest request = user_request();
  request.options = {{"source-address", "10.0.0.0/8,192.168.0.1"}, {"force-command", "/usr/bin/backup --full"}};
  SignDecision decision = check(request);
  EXPECT_EQ(decision.options,
            (Options{{"force-command", "/usr/bin/backup --full"}, {"source-address", "10.0.0.0/8,192.168.0.1"}}));
}

TEST_F(CheckRequest, ChecksForceCommand) {
  EXPECT_NO_THROW(check(with_option("force-command", "rsync --server -e.LsfxC . /srv/backup/")));
  EXPECT_NO_THROW(check(with_option("force-command", "echo \"gr\xc3\xbc\xc3\x9f\" | tee -a log")));
  EXPECT_NO_THROW(check(with_option("force-command", std::string(4096, 'c'))));
  EXPECT_EQ(option_error("force-command", ""), "critical option 'force-command': the command is empty");
  EXPECT_EQ(option_error("force-command", "ls\nrm -rf /"),
            "critical option 'force-command': the command 'ls\\x0arm -rf /' contains a control character");
  EXPECT_EQ(option_error("force-command", "ls\r"),
            "critical option 'force-command': the command 'ls\\x0d' contains a control character");
  EXPECT_EQ(option_error("force-command", "ls \xff"),
            "critical option 'force-command': the command 'ls \\xff' is not valid UTF-8");
  EXPECT_EQ(option_error("force-command", std::string(4097, 'c')),
            "critical option 'force-command': the command is 4097 bytes long; at most 4096 are allowed");
}

TEST_F(CheckRequest, ChecksSourceAddress) {
  for (const char* value : {"10.0.0.0/8", "192.168.0.1", "10.0.0.0/8,192.168.0.1", "2001:db8::/32,::1",
                            "0.0.0.0/0,::/0", "192.0.2.1/32", "2001:DB8::/32", "::ffff:10.0.0.0/104"}) {
    EXPECT_NO_THROW(check(with_option("source-address", value))) << value;
  }
  const std::string what = "critical option 'source-address': ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"10.0.0.0/33", "'10.0.0.0/33' is not an address or CIDR (an IPv4 prefix is 0 to 32)"},
      {"::/129", "'::/129' is not an address or CIDR (an IPv6 prefix is 0 to 128)"},
      {"10.0.0.0/08", "'10.0.0.0/08' is not an address or CIDR (an IPv4 prefix is 0 to 32)"},
      {"10.0.0.0/", "'10.0.0.0/' is not an address or CIDR (an IPv4 prefix is 0 to 32)"},
      {"10.0.0.0/-1", "'10.0.0.0/-1' is not an address or CIDR (an IPv4 prefix is 0 to 32)"},
      {"10.0.0.1/8",
       "'10.0.0.1/8' has host bits set after the prefix, which sshd refuses (did you mean '10.0.0.0/8'?)"},
      {"2001:db8::1/32",
       "'2001:db8::1/32' has host bits set after the prefix, which sshd refuses (did you mean '2001:db8::/32'?)"},
      {"example.org", "'example.org' is not an address or CIDR ('example.org' is not an IPv4 or IPv6 address)"},
      {"10.1", "'10.1' is not an address or CIDR ('10.1' is not an IPv4 or IPv6 address)"},
      {"10.0.0.0/8,,10.1.0.0/16", "'10.0.0.0/8,,10.1.0.0/16' has an empty entry"},
      {"10.0.0.0/8,", "'10.0.0.0/8,' has an empty entry"},
      {"10.0.0.0/8, 10.1.0.0/16", "' 10.1.0.0/16' contains a space (separate entries with ',' alone)"},
      {"10.0.0.0/8,10.0.0.0/8", "'10.0.0.0/8' is listed twice"},
      {"", "it needs addresses or CIDRs separated by commas, such as '10.0.0.0/8,192.0.2.1'"},
  };
  for (const auto& [value, message] : cases) EXPECT_EQ(option_error("source-address", value), what + message);
}

TEST_F(CheckRequest, SignsVerifyRequiredWithAWarningThatSshdEnforcesItOnlyForFidoKeys) {
  SignDecision decision = check(with_option("verify-required", ""));
  ASSERT_EQ(decision.options.size(), 1u);
  EXPECT_EQ(decision.options[0].first, "verify-required");
  EXPECT_EQ(decision.options[0].second, "");
  EXPECT_THAT(decision.warnings, ElementsAre("critical option 'verify-required' has no effect on an ssh-ed25519 key: "
                                             "sshd enforces it only for FIDO security keys (sk-*)"));
  EXPECT_EQ(option_error("verify-required", "yes"), "critical option 'verify-required' takes no value, not 'yes'");
}

TEST_F(CheckRequest, RefusesUnknownAndDisallowedCriticalOptions) {
  const std::string known =
      " (known: force-command, source-address, verify-required; a vendor critical option is name@domain)";
  EXPECT_EQ(option_error("no-pty", ""), "unknown critical option 'no-pty'" + known);
  EXPECT_EQ(option_error("permit-pty", ""), "unknown critical option 'permit-pty'" + known);
  EXPECT_EQ(option_error("Force-Command", "ls"),
            "unknown critical option 'Force-Command' (did you mean 'force-command'?)");
  EXPECT_EQ(option_error("", "x"), "unknown critical option ''" + known);
  profile_.critical_options = {"source-address"};
  EXPECT_EQ(option_error("force-command", "ls"),
            "profile 'user' does not allow critical option 'force-command' (allowed: source-address)");
  profile_.critical_options = {};
  EXPECT_EQ(option_error("source-address", "10.0.0.1"),
            "profile 'user' does not allow critical option 'source-address' (it allows none)");
}

TEST_F(CheckRequest, AcceptsVendorCriticalOptionsOnlyWhenListed) {
  EXPECT_EQ(option_error("audit@example.org", "on"),
            "profile 'user' does not allow critical option 'audit@example.org' (allowed: force-command, "
            "source-address, verify-required)");
  profile_.critical_options.push_back("audit@example.org");
  EXPECT_EQ(check(with_option("audit@example.org", "on")).options, (Options{{"audit@example.org", "on"}}));
  EXPECT_EQ(check(with_option("audit@example.org", "")).options, (Options{{"audit@example.org", ""}}));
  EXPECT_EQ(option_error("audit@example.org", "a\x01"),
            "critical option 'audit@example.org': the value 'a\\x01' contains a control character");
}

TEST_F(CheckRequest, RefusesACriticalOptionTwice) {
  SignRequest request = user_request();
  request.options = {{"force-command", "ls"}, {"source-address", "10.0.0.1"}, {"force-command", "ls"}};
  EXPECT_EQ(error(request), "critical option 'force-command' is given twice");
}

TEST_F(CheckRequest, RefusesCriticalOptionsOnHostCertificates) {
  SignRequest request = host_request();
  request.options = {{"source-address", "10.0.0.1"}};
  EXPECT_EQ(host_error(request),
            "host certificates carry no critical options (ssh refuses a host certificate that has any); "
            "'source-address' was asked for");
}

// ---- Extensions --------------------------------------------------------------------------

TEST_F(CheckRequest, GivesTheDefaultExtensionsPlusThoseAskedFor) {
  profile_.default_extensions = {"permit-pty"};
  EXPECT_THAT(check(user_request()).extensions, ElementsAre("permit-pty"));
  EXPECT_THAT(check(with_extensions({"permit-port-forwarding"})).extensions,
              ElementsAre("permit-port-forwarding", "permit-pty"));
  EXPECT_THAT(check(with_extensions({"permit-pty"})).extensions, ElementsAre("permit-pty"));
  EXPECT_THAT(check(with_extensions({}, true)).extensions, IsEmpty());
  EXPECT_THAT(check(with_extensions({"permit-user-rc", "permit-X11-forwarding"}, true)).extensions,
              ElementsAre("permit-X11-forwarding", "permit-user-rc"));
}

TEST_F(CheckRequest, RefusesUnknownAndDisallowedExtensions) {
  EXPECT_EQ(
      error(with_extensions({"permit-everything"})),
      "unknown extension 'permit-everything' (known: " + kKnownExtensionList + "; a vendor extension is name@domain)");
  EXPECT_EQ(error(with_extensions({"permit-x11-forwarding"})),
            "unknown extension 'permit-x11-forwarding' (did you mean 'permit-X11-forwarding'?)");
  EXPECT_EQ(error(with_extensions({"no-touch-required"})),
            "profile 'user' does not allow extension 'no-touch-required' (allowed: " + kStandard + ")");
  EXPECT_EQ(error(with_extensions({"login@github.com"})),
            "profile 'user' does not allow extension 'login@github.com' (allowed: " + kStandard + ")");
  profile_.extensions = {"permit-pty"};
  profile_.default_extensions = {"permit-pty"};
  EXPECT_EQ(error(with_extensions({"permit-agent-forwarding"})),
            "profile 'user' does not allow extension 'permit-agent-forwarding' (allowed: permit-pty)");
  EXPECT_EQ(error(with_extensions({"permit-pty", "permit-pty"})), "extension 'permit-pty' is given twice");
}

TEST_F(CheckRequest, AcceptsListedVendorExtensions) {
  profile_.extensions.push_back("login@github.com");
  EXPECT_THAT(check(with_extensions({"login@github.com"}, true)).extensions, ElementsAre("login@github.com"));
}

TEST_F(CheckRequest, WarnsThatNoTouchRequiredDoesNothingForTheseKeys) {
  profile_.extensions.push_back("no-touch-required");
  SignDecision decision = check(with_extensions({"no-touch-required"}, true));
  EXPECT_THAT(decision.extensions, ElementsAre("no-touch-required"));
  EXPECT_THAT(decision.warnings,
              ElementsAre("extension 'no-touch-required' has no effect on an ssh-ed25519 key (it applies to FIDO "
                          "security keys only)"));
}

TEST_F(CheckRequest, GivesHostCertificatesNoExtensions) {
  SignRequest request = host_request();
  request.extensions = {"permit-pty"};
  EXPECT_EQ(host_error(request), "host certificates carry no extensions; 'permit-pty' was asked for");
  request.extensions.clear();
  request.no_default_extensions = true;
  EXPECT_THAT(check_host(request).extensions, IsEmpty());
}

TEST_F(CheckRequest, WarnsAboutDevelopmentProfiles) {
  profile_.development_only = true;
  SignDecision decision = check(user_request());
  ASSERT_EQ(decision.warnings.size(), 1u);
  EXPECT_EQ(decision.warnings[0],
            "profile 'user' is for development only (development_only = true): it allows principals and validities "
            "that no production profile should");
}

TEST_F(CheckRequest, ReportsTheFirstProblemInCheckOrder) {
  // Kind, key, key id, principals, validity, options, extensions.
  SignRequest request = user_request({"root"});
  request.subject_key_type = "ssh-dss";
  request.key_id = "";
  request.validity = 48h;
  EXPECT_THAT(error(request), StartsWith("DSA keys"));
  request.subject_key_type = "ssh-ed25519";
  EXPECT_EQ(error(request), "the key id is empty");
  request.key_id = "k";
  EXPECT_THAT(error(request), StartsWith("profile 'user' does not allow principal 'root'"));
  request.principals = {"alice"};
  request.options = {{"bogus", ""}};
  EXPECT_THAT(error(request), StartsWith("validity 48h"));
  request.validity.reset();
  request.extensions = {"bogus"};
  EXPECT_THAT(error(request), StartsWith("unknown critical option 'bogus'"));
}

// ---- validate_profile ----------------------------------------------------------------------

std::string profile_error(const Profile& profile) {
  return error_of([&] { validate_profile(profile); });
}

TEST(ValidateSshProfile, RefusesBadNames) {
  Profile profile = user_profile();
  profile.name = "web server";
  EXPECT_EQ(profile_error(profile),
            "invalid SSH profile name 'web server': use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit");
  EXPECT_NO_THROW(validate_profile_name("ops.ro_1-x"));
  EXPECT_THROW(validate_profile_name(""), Error);
  EXPECT_THROW(validate_profile_name("-x"), Error);
  EXPECT_THROW(validate_profile_name(std::string(65, 'p')), Error);
}

TEST(ValidateSshProfile, ChecksPrincipalPatterns) {
  for (const char* pattern : {"*", "deploy-*", "*-admin", "alice@EXAMPLE.COM", "a*b*c"}) {
    EXPECT_NO_THROW(validate_principal_pattern(pattern, CertificateKind::User)) << pattern;
  }
  for (const char* pattern : {"*", "*.example.org", "web-*.example.org", "10.0.0.*", "2001:db8::*", "web01"}) {
    EXPECT_NO_THROW(validate_principal_pattern(pattern, CertificateKind::Host)) << pattern;
  }
  auto user_error = [](const std::string& pattern) {
    return error_of([&] { validate_principal_pattern(pattern, CertificateKind::User); });
  };
  auto host_error = [](const std::string& pattern) {
    return error_of([&] { validate_principal_pattern(pattern, CertificateKind::Host); });
  };
  EXPECT_EQ(user_error(""), "principal pattern '' is empty (use '*' for any principal)");
  EXPECT_EQ(user_error("a b"), "principal pattern 'a b' contains a space");
  EXPECT_EQ(user_error("a,b"), "principal pattern 'a,b' contains a comma (OpenSSH separates principals with commas)");
  EXPECT_EQ(user_error("a\x1b"), "principal pattern 'a\\x1b' contains a control character");
  EXPECT_EQ(user_error("\xc3\xa9"), "principal pattern '\\xc3\\xa9' contains a non-ASCII character");
  EXPECT_EQ(user_error("web?"), "principal pattern 'web?' contains '?', which is not a wildcard here: only '*' is");
  EXPECT_EQ(host_error("*.Example.org"),
            "principal pattern '*.Example.org' contains upper-case letters: ssh lower-cases the host name before it "
            "matches host principals (write '*.example.org')");
  EXPECT_EQ(host_error("a_b.example.org"),
            "principal pattern 'a_b.example.org' holds '_', which cannot be in a host name or an IP address");
  EXPECT_EQ(host_error("alice@example.org"),
            "principal pattern 'alice@example.org' holds '@', which cannot be in a host name or an IP address");
}

TEST(ValidateSshProfile, ChecksPrincipals) {
  Profile profile = user_profile();
  profile.principals = {};
  EXPECT_EQ(profile_error(profile),
            "profile 'user': principals must not be empty (use [\"*\"] to allow any principal)");
  profile.principals = {"alice", "bob", "alice"};
  EXPECT_EQ(profile_error(profile), "profile 'user': principal pattern 'alice' is listed twice in principals");
  profile.principals = {"ops team"};
  EXPECT_EQ(profile_error(profile), "profile 'user': principal pattern 'ops team' contains a space");
  Profile hosts = host_profile();
  hosts.principals = {"Web01"};
  EXPECT_THAT(profile_error(hosts), StartsWith("profile 'hosts': principal pattern 'Web01' contains upper-case"));
}

TEST(ValidateSshProfile, ChecksKeyTypes) {
  for (const char* type : {"ed25519", "ecdsa", "rsa"}) EXPECT_NO_THROW(validate_key_type(type));
  auto key_error = [](const std::string& type) { return error_of([&] { validate_key_type(type); }); };
  EXPECT_EQ(key_error("dsa"), "DSA keys are refused (OpenSSH has disabled them since 7.0)");
  EXPECT_EQ(key_error("ssh-dss"), "DSA keys are refused (OpenSSH has disabled them since 7.0)");
  EXPECT_EQ(key_error("ssh-ed25519"), "unknown key type 'ssh-ed25519' (did you mean 'ed25519'?)");
  EXPECT_EQ(key_error("rsa-2048"),
            "unknown key type 'rsa-2048' (did you mean 'rsa'? the smallest RSA size is min_rsa_bits)");
  EXPECT_EQ(key_error("ecdsa-p256"),
            "unknown key type 'ecdsa-p256' (did you mean 'ecdsa'? it allows P-256, P-384 and P-521)");
  EXPECT_EQ(key_error("ec-p384"),
            "unknown key type 'ec-p384' (did you mean 'ecdsa'? it allows P-256, P-384 and P-521)");
  EXPECT_EQ(key_error("Ed25519"), "unknown key type 'Ed25519' (did you mean 'ed25519'?)");
  EXPECT_EQ(key_error("x25519"), "unknown key type 'x25519' (known: ed25519, ecdsa, rsa)");

  Profile profile = user_profile();
  profile.key_types = {};
  EXPECT_EQ(profile_error(profile), "profile 'user': key_types must not be empty");
  profile.key_types = {"rsa", "ecdsa", "rsa"};
  EXPECT_EQ(profile_error(profile), "profile 'user': key type 'rsa' is listed twice in key_types");
  profile.key_types = {"ed25519"};
  profile.min_rsa_bits = 1024;
  EXPECT_EQ(profile_error(profile), "profile 'user': min_rsa_bits must be between 2048 and 16384, not 1024");
  profile.min_rsa_bits = 16385;
  EXPECT_EQ(profile_error(profile), "profile 'user': min_rsa_bits must be between 2048 and 16384, not 16385");
  profile.min_rsa_bits = 16384;
  EXPECT_NO_THROW(validate_profile(profile));
}

TEST(ValidateSshProfile, ChecksValidities) {
  Profile profile = user_profile();
  profile.default_validity = 30s;
  EXPECT_EQ(profile_error(profile), "profile 'user': default_validity must be between 1m and 3650d, not 30s");
  profile.default_validity = 1min;
  EXPECT_NO_THROW(validate_profile(profile));
  profile.max_validity = 3651 * 24h;
  EXPECT_EQ(profile_error(profile), "profile 'user': max_validity must be between 1m and 3650d, not 3651d");
  profile.max_validity = 3650 * 24h;
  EXPECT_NO_THROW(validate_profile(profile));
  profile.default_validity = 48h;
  profile.max_validity = 24h;
  EXPECT_EQ(profile_error(profile), "profile 'user': default_validity (48h) must not be more than max_validity (24h)");
}

TEST(ValidateSshProfile, ChecksExtensionsAndOptions) {
  for (const char* name : {"permit-pty", "no-touch-required", "login@github.com", "a.b_c-d@example.org"}) {
    EXPECT_NO_THROW(validate_extension_name(name)) << name;
  }
  for (const char* name : {"force-command", "source-address", "verify-required", "audit@example.org"}) {
    EXPECT_NO_THROW(validate_critical_option_name(name)) << name;
  }
  auto extension_error = [](const std::string& name) { return error_of([&] { validate_extension_name(name); }); };
  EXPECT_EQ(extension_error("permit-everything"), "unknown extension 'permit-everything' (known: " +
                                                      kKnownExtensionList + "; a vendor extension is name@domain)");
  EXPECT_EQ(extension_error("@example.org"),
            "extension name '@example.org' is not valid: it has nothing before the '@'");
  EXPECT_EQ(extension_error("a@b@example.org"),
            "extension name 'a@b@example.org' is not valid: it holds more than one '@'");
  EXPECT_EQ(extension_error("x@exa_mple.org"),
            "extension name 'x@exa_mple.org' is not valid: its domain is not a host name: it holds '_', which is not "
            "a letter, digit or '-'");
  EXPECT_EQ(extension_error("a b@example.org"),
            "extension name 'a b@example.org' is not valid: its name part holds ' ', which is not a letter, digit, "
            "'.', '_' or '-'");
  EXPECT_EQ(extension_error(std::string(53, 'x') + "@example.org"),
            "extension name '" + std::string(53, 'x') +
                "@example.org' is not valid: it is longer than 64 characters (RFC 4251 section 6)");
  EXPECT_NO_THROW(validate_extension_name(std::string(52, 'x') + "@example.org"));
  EXPECT_EQ(error_of([] { validate_critical_option_name("no-pty"); }),
            "unknown critical option 'no-pty' (known: force-command, source-address, verify-required; a vendor "
            "critical option is name@domain)");

  Profile profile = user_profile();
  profile.default_extensions = {"permit-pty", "no-touch-required"};
  EXPECT_EQ(profile_error(profile),
            "profile 'user': default extension 'no-touch-required' is not in extensions "
            "(allowed: " +
                kStandard + ")");
  profile = user_profile();
  profile.extensions = {"permit-pty", "permit-pty"};
  profile.default_extensions = {};
  EXPECT_EQ(profile_error(profile), "profile 'user': extension 'permit-pty' is listed twice in extensions");
  profile = user_profile();
  profile.default_extensions = {"permit-pty", "permit-pty"};
  EXPECT_EQ(profile_error(profile), "profile 'user': extension 'permit-pty' is listed twice in default_extensions");
  profile = user_profile();
  profile.extensions.push_back("permit-all");
  EXPECT_THAT(profile_error(profile), StartsWith("profile 'user': unknown extension 'permit-all'"));
  profile = user_profile();
  profile.critical_options = {"force-command", "force-command"};
  EXPECT_EQ(profile_error(profile),
            "profile 'user': critical option 'force-command' is listed twice in critical_options");
  profile.critical_options = {"no-port-forwarding"};
  EXPECT_THAT(profile_error(profile), StartsWith("profile 'user': unknown critical option 'no-port-forwarding'"));
  profile = user_profile();
  profile.extensions = {};
  profile.default_extensions = {};
  profile.critical_options = {};
  EXPECT_NO_THROW(validate_profile(profile));  // a profile may allow none
}

TEST(ValidateSshProfile, RefusesExtensionsAndOptionsInHostProfiles) {
  Profile hosts = host_profile();
  hosts.extensions = {"permit-pty"};
  EXPECT_EQ(profile_error(hosts),
            "profile 'hosts': host certificates carry no extensions: extensions must be empty (it lists permit-pty)");
  hosts = host_profile();
  hosts.default_extensions = {"permit-pty"};
  EXPECT_EQ(profile_error(hosts),
            "profile 'hosts': host certificates carry no extensions: default_extensions must be "
            "empty (it lists permit-pty)");
  hosts = host_profile();
  hosts.critical_options = {"source-address"};
  EXPECT_EQ(profile_error(hosts),
            "profile 'hosts': host certificates carry no critical options (ssh refuses a host certificate that has "
            "any): critical_options must be empty (it lists source-address)");
  // The user defaults on a host profile are refused, not ignored: make_profile gives the right ones.
  Profile defaults;
  defaults.name = "h";
  defaults.kind = CertificateKind::Host;
  EXPECT_THAT(profile_error(defaults), HasSubstr("host certificates carry no extensions"));
}

}  // namespace
}  // namespace keyhold::ssh
