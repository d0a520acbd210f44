// keyhold renew's parts without a CA: the renewal file, when a certificate
// is due, RFC 3339 times, the crash-safe file set and its journal, and the
// key/certificate checks made before anything is renamed.
#include "keyhold/renew/renewal.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "keyhold/core/error.hpp"
#include "keyhold/renew/file_set.hpp"
#include "keyhold/renew/https_client.hpp"
#include "keyhold/renew/material.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace keyhold::renew {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kFile = "/etc/keyhold/renew.toml";

RenewalFile parse(const std::string& text) { return parse_renewal_file(text, kFile); }

// The one-line message of the InvalidArgument that parsing text throws.
std::string refusal(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return {};
}

const std::string kLocalX509 = R"([[certificate]]
name = "web"
kind = "x509"
ca = "issuing"
profile = "server"
names = ["web.example.org", "10.0.0.5"]
cert = "/etc/ssl/web.pem"
chain = "/etc/ssl/web-chain.pem"
key = "/etc/ssl/web-key.pem"
)";

TEST(RenewalFile, TheIssueExampleReadsAsARemoteEntry) {
  RenewalFile file = parse(R"(
[[certificate]]
name = "web"
kind = "x509"                          # x509 | ssh-user | ssh-host
server = "https://kms.example.org:8443" # remote mode
trust = "/etc/keyhold/ca.pem"
ca = "issuing"
profile = "server"
names = ["web.example.org", "10.0.0.5"]
cert = "/etc/ssl/web.pem"
chain = "/etc/ssl/web-chain.pem"
key = "/etc/ssl/web-key.pem"
renew_before = "10d"
deploy_hook = "systemctl reload nginx"
)");
  ASSERT_EQ(file.entries.size(), 1u);
  const Entry& e = file.entries[0];
  EXPECT_EQ(e.name, "web");
  EXPECT_EQ(e.kind, Kind::X509);
  EXPECT_EQ(e.line, 2u);
  EXPECT_TRUE(e.remote());
  EXPECT_EQ(*e.server, "https://kms.example.org:8443");
  EXPECT_EQ(*e.trust, "/etc/keyhold/ca.pem");
  EXPECT_EQ(e.ca, "issuing");
  EXPECT_THAT(e.names, ElementsAre("web.example.org", "10.0.0.5"));
  EXPECT_EQ(e.cert, "/etc/ssl/web.pem");
  EXPECT_EQ(*e.chain, "/etc/ssl/web-chain.pem");
  EXPECT_EQ(*e.key, "/etc/ssl/web-key.pem");
  EXPECT_EQ(*e.policy.renew_before, 10 * 24h);
  EXPECT_FALSE(e.policy.renew_at_percent);
  EXPECT_EQ(*e.deploy_hook, "systemctl reload nginx");
  EXPECT_TRUE(e.rekey);
}

TEST(RenewalFile, EveryKindAndOptionIsRead) {
  RenewalFile file = parse(kLocalX509 + R"(renew_at_percent = 66.5
jitter = "6h"
days = 30
rekey = false
key_type = "ec-p384"

[[certificate]]
name = "token-web"
kind = "x509"
ca = "issuing"
profile = "server"
names = ["api.example.org"]
cert = "relative/api.pem"
key = "token"

[[certificate]]
name = "alice"
kind = "ssh-user"
ca = "users"
principals = ["alice", "deploy"]
key_id = "alice@example.org"
key = "/home/alice/.ssh/id_ed25519"
validity = "12h"

[[certificate]]
name = "host"
kind = "ssh-host"
server = "https://kms.example.org/"
trust = "/etc/keyhold/ca.pem"
ca = "hosts"
key = "/etc/ssh/ssh_host_ed25519_key"
tls_cert = "/etc/keyhold/host.pem"
tls_key = "/etc/keyhold/host-key.pem"
)");
  ASSERT_EQ(file.entries.size(), 4u);
  const Entry& web = file.entries[0];
  EXPECT_DOUBLE_EQ(*web.policy.renew_at_percent, 66.5);
  EXPECT_EQ(*web.policy.jitter, 6h);
  EXPECT_EQ(*web.days, 30);
  EXPECT_FALSE(web.rekey);
  EXPECT_EQ(*web.key_type, "ec-p384");

  const Entry& token = file.entries[1];
  EXPECT_TRUE(token.key_in_token);
  EXPECT_FALSE(token.key);
  EXPECT_EQ(token.cert, "/etc/keyhold/relative/api.pem") << "relative to the renewal file's directory";
  EXPECT_FALSE(token.remote());

  const Entry& alice = file.entries[2];
  EXPECT_EQ(alice.kind, Kind::SshUser);
  EXPECT_THAT(alice.names, ElementsAre("alice", "deploy"));
  EXPECT_EQ(*alice.key_id, "alice@example.org");
  EXPECT_EQ(alice.cert, "/home/alice/.ssh/id_ed25519-cert.pub") << "OpenSSH's own name beside the key";
  EXPECT_EQ(*alice.validity, 12h);

  const Entry& host = file.entries[3];
  EXPECT_EQ(host.kind, Kind::SshHost);
  EXPECT_EQ(*host.server, "https://kms.example.org") << "the trailing slash is dropped";
  EXPECT_EQ(*host.tls_cert, "/etc/keyhold/host.pem");
  EXPECT_EQ(*host.tls_key, "/etc/keyhold/host-key.pem");
  EXPECT_TRUE(host.names.empty()) << "remote: the server keeps the principals";
}

TEST(RenewalFile, AnEmptyFileHasNothingToRenew) {
  EXPECT_TRUE(parse("# nothing yet\n").entries.empty());
}

TEST(RenewalFile, MistakesAreRefusedWithFileAndLine) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"[[certificate]]\nname = \"web\"\nkynd = \"x509\"\n", ":3: unknown key 'kynd' in [[certificate]] (did you mean 'kind'?)"},
      {"[[certificate]]\nname = \"web\"\nflavour = 1\n", ":3: unknown key 'flavour' in [[certificate]] (known keys: name, kind,"},
      {"[certificates]\n", ":1: unknown key 'certificates'"},
      {"[certificate]\nname = \"web\"\n", ":1: 'certificate' must be written as [[certificate]] tables"},
      {"[[certificate]]\nname = \"web\"\nname = \"x\"\n", ":3: "},  // TOML itself: redefinition
      {"[[certificate]]\nkind = \"x509\"\n", ":1: [[certificate]] needs 'name'"},
      {"[[certificate]]\nname = \"web server\"\nkind = \"x509\"\n", ":2: invalid entry name 'web server'"},
      {"[[certificate]]\nname = \"web\"\n", ":1: entry 'web' needs 'kind'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"tls\"\n", ":3: 'kind' must be x509, ssh-user or ssh-host, not 'tls'"},
      {"[[certificate]]\nname = \"web\"\nkind = 509\n", ":3: 'kind' must be a string, not an integer"},
      {kLocalX509 + "renew_before = \"ten days\"\n", ":10: 'renew_before' must be a duration such as '12h'"},
      {kLocalX509 + "renew_before = \"10d\"\nrenew_at_percent = 66\n", ":11: give 'renew_before' or 'renew_at_percent', not both"},
      {kLocalX509 + "renew_at_percent = 100\n", ":10: 'renew_at_percent' must be above 0 and below 100"},
      {kLocalX509 + "renew_at_percent = \"66\"\n", ":10: 'renew_at_percent' must be a number, not a string"},
      {kLocalX509 + "jitter = \"0h\"\n", ":10: 'jitter' must be a duration"},
      {kLocalX509 + "days = 0\n", ":10: 'days' must be between 1 and 3650"},
      {kLocalX509 + "rekey = \"yes\"\n", ":10: 'rekey' must be true or false, not a string"},
      {kLocalX509 + "key_type = \"dsa\"\n", ":10: 'key_type' must be one of ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072, rsa-4096, not 'dsa'"},
      {kLocalX509 + "deploy_hook = \"\"\n", ":10: 'deploy_hook' must not be empty"},
      {kLocalX509 + "validity = \"8h\"\n", ":10: 'validity' is only for local SSH entries"},
      {kLocalX509 + "trust = \"/ca.pem\"\n", ":10: 'trust' is only for remote entries"},
      {kLocalX509 + "principals = [\"root\"]\n", ":10: 'principals' is for SSH entries; X.509 entries list 'names'"},
      {kLocalX509 + "tls_cert = \"/x.pem\"\n", ":10: 'tls_cert' is only for remote SSH entries"},
      {kLocalX509 + "key_id = \"web\"\n", ":10: 'key_id' is only for SSH entries"},
      {kLocalX509 + "\n[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\n"
                    "cert = \"/a.pem\"\nkey = \"/a-key.pem\"\n",
       ":11: duplicate entry name 'web' (first at line 1)"},
      {kLocalX509 + "\n[[certificate]]\nname = \"other\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\n"
                    "cert = \"/etc/ssl/web.pem\"\nkey = \"/a-key.pem\"\n",
       ":11: entry 'other' writes /etc/ssl/web.pem (its cert), which entry 'web' (line 1) writes too"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\ncert = \"/a.pem\"\n",
       ":1: entry 'web' needs 'key'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nnames = [\"a\"]\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":1: entry 'web' needs 'profile'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":1: entry 'web' needs 'names'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = []\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":6: 'names' must not be empty"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a b\"]\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":6: 'names' holds 'a b': each must be non-empty, without spaces"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\", \"a\"]\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":6: 'names' names 'a' twice"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a/b\"]\ncert = \"/a.pem\"\nkey = \"/k\"\n",
       ":6: 'names' holds 'a/b', which is neither a DNS name nor an IP address"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\ncert = \"/a.pem\"\nkey = \"/a.pem\"\n",
       ":8: 'key' and 'cert' name the same file /a.pem"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"http://kms\"\n",
       ":4: 'server' must be an https:// URL such as https://kms.example.org:8443, not 'http://kms'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"https://kms:99999\"\n", ":4: 'server' must be an https:// URL"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"https://kms\"\nca = \"i\"\ncert = \"/a\"\nkey = \"/k\"\n",
       ":1: entry 'web' needs 'trust'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"https://kms\"\ntrust = \"/ca\"\nca = \"i\"\ncert = \"/a\"\n"
       "key = \"token\"\n",
       ":8: key = \"token\" is for local entries (on the CA host)"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"https://kms\"\ntrust = \"/ca\"\nca = \"i\"\ncert = \"/a\"\n"
       "key = \"/k\"\ndays = 30\n",
       ":9: 'days' is only for local X.509 entries"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\ncert = \"/a\"\n"
       "key = \"token\"\nrekey = false\n",
       ":9: rekey = false is not supported with key = \"token\""},
      {"[[certificate]]\nname = \"u\"\nkind = \"ssh-user\"\nca = \"users\"\nnames = [\"alice\"]\nkey = \"/k\"\n",
       ":5: 'names' is for X.509 entries; SSH entries list 'principals'"},
      {"[[certificate]]\nname = \"u\"\nkind = \"ssh-user\"\nca = \"users\"\nprincipals = [\"alice\"]\nkey = \"token\"\n",
       ":6: key = \"token\" is for X.509 entries"},
      {"[[certificate]]\nname = \"u\"\nkind = \"ssh-user\"\nca = \"users\"\nprincipals = [\"alice\"]\nkey = \"/k\"\nchain = \"/c\"\n",
       ":7: 'chain' is only for X.509 entries"},
      {"[[certificate]]\nname = \"u\"\nkind = \"ssh-user\"\nca = \"users\"\nprincipals = [\"alice\"]\nkey = \"/k\"\n"
       "key_type = \"ec-p256\"\n",
       ":7: 'key_type' must be one of ed25519, ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096, not 'ec-p256'"},
      {"[[certificate]]\nname = \"h\"\nkind = \"ssh-host\"\nserver = \"https://kms\"\ntrust = \"/ca\"\nca = \"hosts\"\n"
       "key = \"/k\"\ntls_cert = \"/t.pem\"\n",
       ":1: entry 'h' needs 'tls_key'"},
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\nnames = [\"a\"]\ncert = \"/a\"\nkey = \"/k\"\n"
       "deploy_hook = \"reload\\nnginx\"\n",
       ":9: 'deploy_hook' must be UTF-8 text without control characters"},
      {"[[certificate]\n", ":1: "},
  };
  for (const Case& c : cases) {
    std::string message = refusal(c.text);
    EXPECT_THAT(message, StartsWith(std::string(kFile) + ":")) << c.text;
    EXPECT_THAT(message, HasSubstr(c.message)) << c.text;
  }
}

TEST(RenewalFile, IsReadFromDiskWithRelativePathsBesideIt) {
  testing::TempDir dir;
  fs::path file = dir.path() / "renew.toml";
  std::ofstream(file) << "[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"i\"\nprofile = \"p\"\n"
                         "names = [\"a.example\"]\ncert = \"web.pem\"\nkey = \"keys/web-key.pem\"\n";
  RenewalFile renewal = load_renewal_file(file);
  EXPECT_EQ(renewal.path, file);
  EXPECT_EQ(renewal.entries.at(0).cert, dir.path() / "web.pem");
  EXPECT_EQ(*renewal.entries.at(0).key, dir.path() / "keys/web-key.pem");

  try {
    load_renewal_file(dir.path() / "missing.toml");
    ADD_FAILURE() << "a missing renewal file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("no renewal file " + (dir.path() / "missing.toml").string()));
  }
}

// ---- When a certificate is due ---------------------------------------------

const TimePoint kIssued = Clock::from_time_t(1767225600);  // 2026-01-01T00:00:00Z

CurrentValidity hundred_days() { return {kIssued, kIssued + 100 * 24h, "1a2b"}; }

TEST(DueDecision, ByDefaultWhenLessThanAThirdOfTheLifetimeIsLeft) {
  DuePolicy policy;
  DueDecision day50 = decide(policy, hundred_days(), kIssued + 50 * 24h, false, 0);
  EXPECT_FALSE(day50.due);
  EXPECT_EQ(day50.reason, "not due (expires in 50d; renewal from 2026-03-08T16:00:00Z)");
  EXPECT_EQ(*day50.renew_from, kIssued + 100 * 24h - (100 * 24h) / 3);

  DueDecision day70 = decide(policy, hundred_days(), kIssued + 70 * 24h, false, 0);
  EXPECT_TRUE(day70.due);
  EXPECT_EQ(day70.reason, "less than a third of its lifetime (100d) is left (expires in 30d)");

  EXPECT_FALSE(decide(policy, hundred_days(), kIssued + 66 * 24h, false, 0).due);
  EXPECT_TRUE(decide(policy, hundred_days(), kIssued + 67 * 24h, false, 0).due);
}

TEST(DueDecision, RenewBeforeCountsBackFromExpiry) {
  DuePolicy policy;
  policy.renew_before = 10 * 24h;
  EXPECT_FALSE(decide(policy, hundred_days(), kIssued + 89 * 24h, false, 0).due);
  DueDecision d = decide(policy, hundred_days(), kIssued + 91 * 24h, false, 0);
  EXPECT_TRUE(d.due);
  EXPECT_EQ(d.reason, "it expires within renew_before (10d) (expires in 9d)");

  policy.renew_before = 200 * 24h;
  DueDecision always = decide(policy, hundred_days(), kIssued + 1h, false, 0);
  EXPECT_TRUE(always.due);
  EXPECT_THAT(always.reason, HasSubstr("longer than its lifetime (100d): it renews on every run"));
}

TEST(DueDecision, RenewAtPercentCountsFromIssue) {
  DuePolicy policy;
  policy.renew_at_percent = 66;
  EXPECT_FALSE(decide(policy, hundred_days(), kIssued + 65 * 24h, false, 0).due);
  DueDecision d = decide(policy, hundred_days(), kIssued + 66 * 24h, false, 0);
  EXPECT_TRUE(d.due);
  EXPECT_EQ(d.reason, "66% of its lifetime (100d) has passed (expires in 34d)");
}

TEST(DueDecision, JitterDelaysWithinTheWindowButNeverPastHalfTheTimeLeft) {
  DuePolicy policy;
  policy.jitter = 24h;
  const TimePoint point = kIssued + 100 * 24h - (100 * 24h) / 3;
  EXPECT_EQ(*decide(policy, hundred_days(), kIssued, false, 0).renew_from, point);
  EXPECT_EQ(*decide(policy, hundred_days(), kIssued, false, 0.5).renew_from, point + 12h);
  EXPECT_FALSE(decide(policy, hundred_days(), point + 11h, false, 0.5).due);
  EXPECT_TRUE(decide(policy, hundred_days(), point + 12h, false, 0.5).due);
  EXPECT_THAT(decide(policy, hundred_days(), point, false, 0.5).reason, HasSubstr(", with jitter)"));

  // A jitter longer than the time left: at most half of what is left after the renewal point.
  policy.jitter = 1000 * 24h;
  TimePoint latest = *decide(policy, hundred_days(), kIssued, false, 0.999999).renew_from;
  EXPECT_LT(latest, point + (kIssued + 100 * 24h - point) / 2 + 1s);
  EXPECT_GT(latest, point);
}

TEST(DueDecision, JitterFractionIsStablePerMachineEntryAndCertificate) {
  double a = jitter_fraction("machine-a", "web", "1a2b");
  EXPECT_EQ(a, jitter_fraction("machine-a", "web", "1a2b"));
  EXPECT_GE(a, 0.0);
  EXPECT_LT(a, 1.0);
  EXPECT_NE(a, jitter_fraction("machine-b", "web", "1a2b"));
  EXPECT_NE(a, jitter_fraction("machine-a", "mail", "1a2b"));
  EXPECT_NE(a, jitter_fraction("machine-a", "web", "1a2c"));
  EXPECT_FALSE(machine_identity().empty());
}

TEST(DueDecision, NoCertificateExpiredAndForcedAreDue) {
  DuePolicy policy;
  DueDecision none = decide(policy, std::nullopt, kIssued, false, 0);
  EXPECT_TRUE(none.due);
  EXPECT_EQ(none.reason, "no certificate yet");
  EXPECT_FALSE(none.renew_from);

  DueDecision expired = decide(policy, hundred_days(), kIssued + 101 * 24h, false, 0);
  EXPECT_TRUE(expired.due);
  EXPECT_EQ(expired.reason, "it expired at 2026-04-11T00:00:00Z");

  DueDecision forced = decide(policy, hundred_days(), kIssued + 1 * 24h, true, 0);
  EXPECT_TRUE(forced.due);
  EXPECT_EQ(forced.reason, "forced (--force); it expires in 99d");
}

TEST(Durations, TwoLargestUnits) {
  EXPECT_EQ(format_duration(0s), "0s");
  EXPECT_EQ(format_duration(45s), "45s");
  EXPECT_EQ(format_duration(3h + 12min + 5s), "3h 12m");
  EXPECT_EQ(format_duration(50 * 24h + 3h + 59min), "50d 3h");
  EXPECT_EQ(format_duration(50 * 24h + 59min), "50d");
  EXPECT_EQ(format_duration(-(2h + 1min)), "-2h 1m");
}

TEST(Rfc3339, UtcOffsetsAndFractionsAreRead) {
  EXPECT_EQ(*parse_rfc3339("2026-01-01T00:00:00Z"), kIssued);
  EXPECT_EQ(*parse_rfc3339("2026-01-01t00:00:00z"), kIssued);
  EXPECT_EQ(*parse_rfc3339("2026-01-01T01:30:00.250+01:30"), kIssued);
  EXPECT_EQ(*parse_rfc3339("2025-12-31T22:00:00-02:00"), kIssued);
  EXPECT_EQ(*parse_rfc3339("2024-02-29T00:00:00Z"), Clock::from_time_t(1709164800));
  for (const char* bad : {"", "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
                          "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+1:00", "2026-01-01T00:00:00.Z",
                          "2026-01-01T00:00:00Zjunk", "yesterday"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
}

TEST(HttpsUrl, HostPortAndPrefix) {
  HttpsUrl a = *parse_https_url("https://kms.example.org:8443");
  EXPECT_EQ(a.host, "kms.example.org");
  EXPECT_EQ(a.port, 8443);
  EXPECT_EQ(a.base_path, "");
  EXPECT_FALSE(a.host_is_address);
  HttpsUrl b = *parse_https_url("https://127.0.0.1/keyhold/");
  EXPECT_EQ(b.port, 443);
  EXPECT_EQ(b.base_path, "/keyhold");
  EXPECT_TRUE(b.host_is_address);
  HttpsUrl c = *parse_https_url("https://[::1]:1");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 1);
  EXPECT_TRUE(c.host_is_address);
  for (const char* bad : {"http://kms", "https://", "https://kms:0", "https://kms:x", "https://user@kms",
                          "https://kms/a?b", "https://[::1", "https://kms:", "ftp://kms"}) {
    EXPECT_FALSE(parse_https_url(bad)) << bad;
  }
}

// ---- Files ---------------------------------------------------------------------

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

SecretBytes bytes(const std::string& text) {
  return SecretBytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

unsigned mode_of(const fs::path& p) {
  struct stat st{};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

std::vector<NewFile> new_set(const fs::path& dir, const std::string& tag) {
  std::vector<NewFile> files;
  files.push_back({dir / "web.pem", bytes("cert " + tag), 0644});
  files.push_back({dir / "web-key.pem", bytes("key " + tag), 0600});
  return files;
}

TEST(FileSet, InstallKeepsThePreviousVersionModeAndLeavesNothingBehind) {
  testing::TempDir dir;
  fs::path journal = journal_path(dir.path() / "web.pem");
  std::vector<fs::path> checked;
  install(journal, new_set(dir.path(), "1"), [&](const std::vector<fs::path>& temporaries) {
    checked = temporaries;
    EXPECT_EQ(slurp(temporaries[0]), "cert 1") << "complete before the check";
    EXPECT_EQ(mode_of(temporaries[1]), 0600u);
    EXPECT_FALSE(fs::exists(dir.path() / "web.pem")) << "nothing renamed before the check";
  });
  EXPECT_THAT(checked, ElementsAre(dir.path() / ".web.pem.keyhold-new", dir.path() / ".web-key.pem.keyhold-new"));
  EXPECT_EQ(slurp(dir.path() / "web.pem"), "cert 1");
  EXPECT_EQ(mode_of(dir.path() / "web.pem"), 0644u);
  EXPECT_EQ(mode_of(dir.path() / "web-key.pem"), 0600u);
  EXPECT_FALSE(fs::exists(dir.path() / "web.pem.prev")) << "there was no previous version";

  ::chmod((dir.path() / "web.pem").c_str(), 0640);
  install(journal, new_set(dir.path(), "2"), [](const std::vector<fs::path>&) {});
  EXPECT_EQ(slurp(dir.path() / "web.pem"), "cert 2");
  EXPECT_EQ(slurp(dir.path() / "web.pem.prev"), "cert 1");
  EXPECT_EQ(slurp(dir.path() / "web-key.pem.prev"), "key 1");
  EXPECT_EQ(mode_of(dir.path() / "web.pem"), 0640u) << "the mode of the file it replaced";
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre("web-key.pem", "web-key.pem.prev", "web.pem", "web.pem.prev"));
}

TEST(FileSet, AFailedCheckRenamesNothingAndRemovesTheTemporaryFiles) {
  testing::TempDir dir;
  spit(dir.path() / "web.pem", "old cert");
  fs::path journal = journal_path(dir.path() / "web.pem");
  EXPECT_THROW(install(journal, new_set(dir.path(), "new"),
                       [](const std::vector<fs::path>&) { throw Error(ErrorCode::FailedPrecondition, "mismatch"); }),
               Error);
  EXPECT_EQ(slurp(dir.path() / "web.pem"), "old cert");
  EXPECT_FALSE(fs::exists(dir.path() / ".web.pem.keyhold-new"));
  EXPECT_FALSE(fs::exists(dir.path() / ".web-key.pem.keyhold-new"));
  EXPECT_FALSE(fs::exists(journal));
}

TEST(FileSet, ASymbolicLinkIsRefusedBeforeAnythingIsWritten) {
  testing::TempDir dir;
  spit(dir.path() / "real.pem", "real");
  fs::create_symlink(dir.path() / "real.pem", dir.path() / "web.pem");
  try {
    install(journal_path(dir.path() / "web.pem"), new_set(dir.path(), "x"), [](const std::vector<fs::path>&) {});
    ADD_FAILURE() << "a symbolic link was replaced";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is a symbolic link"));
  }
  EXPECT_EQ(slurp(dir.path() / "real.pem"), "real");
  EXPECT_FALSE(fs::exists(dir.path() / ".web-key.pem.keyhold-new"));
}

TEST(FileSet, RecoverRollsAnInterruptedInstallationForward) {
  testing::TempDir dir;
  fs::path cert = dir.path() / "web.pem", key = dir.path() / "web-key.pem";
  spit(cert, "cert new");  // renamed already
  spit(key, "key old");
  spit(dir.path() / ".web-key.pem.keyhold-new", "key new");
  fs::path journal = journal_path(cert);
  spit(journal, "keyhold renew journal 1\n" + (dir.path() / ".web.pem.keyhold-new").string() + "\t" + cert.string() +
                    "\n" + (dir.path() / ".web-key.pem.keyhold-new").string() + "\t" + key.string() + "\nend\n");

  Recovery dry = recover(journal, {cert, key}, true);
  EXPECT_TRUE(dry.pending);
  EXPECT_FALSE(dry.completed);
  EXPECT_EQ(slurp(key), "key old") << "--dry-run changes nothing";

  Recovery done = recover(journal, {cert, key}, false);
  EXPECT_TRUE(done.completed);
  EXPECT_THAT(done.files, ElementsAre(cert, key));
  EXPECT_EQ(slurp(cert), "cert new");
  EXPECT_EQ(slurp(key), "key new");
  EXPECT_EQ(slurp(dir.path() / "web-key.pem.prev"), "key old");
  EXPECT_FALSE(fs::exists(journal));
  EXPECT_FALSE(recover(journal, {cert, key}, false).pending) << "once only";
}

TEST(FileSet, RecoverWithoutAJournalRemovesLeftoverTemporaryFiles) {
  testing::TempDir dir;
  fs::path cert = dir.path() / "web.pem";
  spit(cert, "cert old");
  spit(dir.path() / ".web.pem.keyhold-new", "cert new, never journalled");
  EXPECT_TRUE(fs::exists(dir.path() / ".web.pem.keyhold-new"));
  recover(journal_path(cert), {cert}, true);
  EXPECT_TRUE(fs::exists(dir.path() / ".web.pem.keyhold-new")) << "--dry-run changes nothing";
  Recovery r = recover(journal_path(cert), {cert}, false);
  EXPECT_FALSE(r.pending);
  EXPECT_FALSE(fs::exists(dir.path() / ".web.pem.keyhold-new"));
  EXPECT_EQ(slurp(cert), "cert old");
}

TEST(FileSet, AJournalNamingAMissingFileIsLeftForTheOperator) {
  testing::TempDir dir;
  fs::path cert = dir.path() / "web.pem";
  fs::path journal = journal_path(cert);
  spit(journal, "keyhold renew journal 1\n" + (dir.path() / ".web.pem.keyhold-new").string() + "\t" + cert.string() + "\nend\n");
  EXPECT_THROW(recover(journal, {cert}, false), Error);
  EXPECT_TRUE(fs::exists(journal));
  spit(journal, "something else\n");
  try {
    recover(journal, {cert}, false);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not one keyhold renew wrote"));
  }
}

// ---- Keys and certificates ------------------------------------------------------

TEST(Material, ANewKeyAndCsrCarryTheNames) {
  SecretBytes key = generate_x509_key("ec-p256");
  EXPECT_THAT(std::string(key.as_string()), StartsWith("-----BEGIN PRIVATE KEY-----"));
  std::string csr = make_csr(key, {"web.example.org", "10.0.0.5"}, std::nullopt);
  EXPECT_THAT(csr, StartsWith("-----BEGIN CERTIFICATE REQUEST-----"));
  for (const char* type : {"ec-p384", "ed25519", "rsa-2048"}) {
    SecretBytes other = generate_x509_key(type);
    EXPECT_THAT(make_csr(other, {"a.example"}, std::nullopt), StartsWith("-----BEGIN CERTIFICATE REQUEST-----")) << type;
  }
}

TEST(Material, AnOpenSshPrivateKeyNamesItsPublicKey) {
  testing::TempDir dir;
  for (const char* type : {"ed25519", "ecdsa", "rsa"}) {
    fs::path key = dir.path() / type;
    ASSERT_EQ(testing::run_process({"ssh-keygen", "-q", "-t", type, "-N", "", "-C", "test", "-f", key.string()}).exit_code, 0);
    std::string private_key = slurp(key), public_line = slurp(key.string() + ".pub");
    EXPECT_EQ(openssh_private_key_public_blob(private_key), ssh_public_key_blob(public_line)) << type;
  }
  EXPECT_NE(openssh_private_key_public_blob(slurp(dir.path() / "ed25519")), ssh_public_key_blob(slurp(dir.path() / "rsa.pub")));
  EXPECT_THROW(openssh_private_key_public_blob("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Error);
}

TEST(Material, TheSetCheckWantsTheCertificatesOwnKey) {
  // A self-signed certificate made by openssl for its key, and a stranger's key.
  testing::TempDir dir;
  fs::path key = dir.path() / "key.pem", cert = dir.path() / "cert.pem";
  ASSERT_EQ(testing::run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                  "-nodes", "-keyout", key.string(), "-out", cert.string(), "-subj", "/CN=a.example",
                                  "-addext", "subjectAltName=DNS:a.example,IP:10.0.0.5", "-days", "100"})
                .exit_code,
            0);
  SecretBytes own = bytes(slurp(key));
  check_x509_set(slurp(cert), own, slurp(cert));  // its own issuer: self-signed
  X509Details details = read_x509(slurp(cert));
  EXPECT_EQ(details.subject, "CN=a.example");
  EXPECT_THAT(details.names, ElementsAre("a.example", "10.0.0.5"));
  EXPECT_EQ(details.validity.not_after - details.validity.not_before, 100 * 24h);
  try {
    check_x509_set(slurp(cert), generate_x509_key("ec-p256"), "");
    ADD_FAILURE() << "a stranger's key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "the new certificate is not for the new key");
  }
  std::string csr = make_csr(own, {}, slurp(cert));  // the same identity, for remote renewal
  testing::ProcessResult r = testing::run_process({"openssl", "req", "-noout", "-text", "-verify"}, {{}, csr, {}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Subject: CN = a.example"));
  EXPECT_THAT(r.out, HasSubstr("DNS:a.example, IP Address:10.0.0.5"));
}

}  // namespace
}  // namespace keyhold::renew
