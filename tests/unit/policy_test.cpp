// The service's least-privilege policy: reading it, refusing what it must not
// say, and deciding requests (default deny).
#include "keyhold/authz/policy.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "keyhold/core/error.hpp"

namespace keyhold::authz {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr const char* kFile = "policy.toml";

Policy parse(const std::string& text) { return Policy::parse(text, kFile); }

// The message of the keyhold::Error that parsing `text` throws, which must be InvalidArgument.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no keyhold::Error was thrown for:\n" << text;
  return "<no error>";
}

// A rule as text: one key per line, so that line numbers in tests are easy to count.
std::string rule(const std::string& name, const std::string& identities, const std::string& operations,
                 const std::string& resources, const std::string& when = "") {
  std::string text = "[[rule]]\nname = \"" + name + "\"\nidentities = " + identities + "\noperations = " + operations +
                     "\nresources = " + resources + "\n";
  if (!when.empty()) text += "[rule.when]\n" + when;
  return text;
}

Request request(std::string identity, std::string operation, std::string resource) {
  Request r;
  r.identity = std::move(identity);
  r.operation = std::move(operation);
  r.resource = std::move(resource);
  return r;
}

bool allows(const Policy& policy, const Request& r) { return policy.check(r).allowed; }

bool allows(const Policy& policy, const std::string& identity, const std::string& operation,
            const std::string& resource) {
  return allows(policy, request(identity, operation, resource));
}

// ---- Reading -----------------------------------------------------------------------

TEST(PolicyParse, ReadsEveryField) {
  Policy policy = parse(
      "# one rule per kind of constraint\n"
      "[[rule]]\n"
      "name = \"payments-service\"\n"
      "identities = [\"spiffe://example.org/payments\", \"payments.example.org\"]\n"
      "operations = [\"kek.datakey\", \"kek.decrypt\"]\n"
      "resources = [\"kek:payments-*\", \"kek:shared\"]\n"
      "[rule.when]\n"
      "context = { tenant = \"payments\", env = \"prod\" }\n"
      "\n"
      "[[rule]]\n"
      "name = \"web-team\"\n"
      "identities = [\"spiffe://example.org/web/*\"]\n"
      "operations = [\"pki.issue\"]\n"
      "resources = [\"ca:issuing\"]\n"
      "[rule.when]\n"
      "dns_suffixes = [\".web.example.org\", \"web.example.net\"]\n"
      "profiles = [\"server\"]\n"
      "\n"
      "[[rule]]\n"
      "name = \"ssh-users\"\n"
      "identities = [\"spiffe://example.org/users/*\"]\n"
      "operations = [\"ssh.sign\"]\n"
      "resources = [\"ssh-ca:users\"]\n"
      "when = { principals = [\"$identity\", \"deploy-*\"], profiles = [\"user\"] }\n");
  EXPECT_EQ(policy.rules(), 3u);

  Request kek = request("spiffe://example.org/payments", "kek.decrypt", "kek:payments-eu");
  kek.context = {{"tenant", "payments"}, {"env", "prod"}};
  Decision decision = policy.check(kek);
  EXPECT_TRUE(decision.allowed) << decision.detail;
  EXPECT_EQ(decision.rule, "payments-service");
  EXPECT_THAT(decision.reason, IsEmpty());
  kek.identity = "payments.example.org";
  kek.resource = "kek:shared";
  kek.operation = "kek.datakey";
  EXPECT_TRUE(allows(policy, kek));
  kek.context.erase("env");
  EXPECT_FALSE(allows(policy, kek));

  Request cert = request("spiffe://example.org/web/frontend", "pki.issue", "ca:issuing");
  cert.dns_names = {"www.web.example.org", "web.example.net"};
  cert.profile = "server";
  EXPECT_EQ(policy.check(cert).rule, "web-team");
  cert.profile = "client";
  EXPECT_FALSE(allows(policy, cert));

  Request ssh = request("spiffe://example.org/users/alice", "ssh.sign", "ssh-ca:users");
  ssh.principals = {"alice", "deploy-web"};
  ssh.profile = "user";
  EXPECT_EQ(policy.check(ssh).rule, "ssh-users");
  ssh.principals = {"bob"};
  EXPECT_FALSE(allows(policy, ssh));
}

TEST(PolicyParse, AnEmptyFileHasNoRulesAndDeniesEverything) {
  Policy policy = parse("# nothing allowed yet\n");
  EXPECT_EQ(policy.rules(), 0u);
  EXPECT_FALSE(allows(policy, "admin", "kek.read", "kek:payments"));
  EXPECT_EQ(Policy().rules(), 0u);
  EXPECT_FALSE(allows(Policy(), "admin", "kek.read", "kek:payments"));
}

TEST(PolicyParse, ArraysMaySpanLinesAndTheBadEntryIsNamedByItsLine) {
  std::string text =
      "[[rule]]\n"
      "name = \"multi\"\n"
      "identities = [\"admin\"]\n"
      "operations = [\n"
      "  \"kek.read\",\n"
      "  \"kek.rotate\",\n"
      "  \"kek.decypt\",\n"  // line 7
      "]\n"
      "resources = [\"kek:*\"]\n";
  EXPECT_THAT(error_of(text), StartsWith("policy.toml:7: rule 'multi': unknown operation 'kek.decypt' (did you mean "
                                         "'kek.decrypt'?)"));
}

struct LoadErrorCase {
  const char* what;
  std::string text;
  std::string prefix;    // "policy.toml:LINE: ..."
  std::string contains;  // the rest that must be said
};

std::string bad_rule(const std::string& key_and_value) {
  // Lines: 1 [[rule]], 2 name, 3 the key under test, 4.. the rest.
  return "[[rule]]\nname = \"r\"\n" + key_and_value + "\n";
}

std::vector<LoadErrorCase> load_error_cases() {
  const std::string ids = "identities = [\"admin\"]";
  const std::string ops = "operations = [\"kek.decrypt\"]";
  const std::string res = "resources = [\"kek:payments\"]";
  return {
      {"syntax", "[[rule]\nname = \"r\"\n", "policy.toml:1:", ""},
      {"unknown top-level key", "rules = []\n", "policy.toml:1: ", "unknown key 'rules' (did you mean [[rule]]?)"},
      {"other top-level key", "version = 1\n", "policy.toml:1: ", "holds [[rule]] tables and nothing else"},
      {"single brackets", "[rule]\nname = \"r\"\n", "policy.toml:1: ", "must be written as [[rule]] tables"},
      {"missing name", "[[rule]]\n" + ids + "\n" + ops + "\n" + res + "\n",
       "policy.toml:1: rule #1: ", "missing required key 'name'"},
      {"missing resources", "[[rule]]\nname = \"r\"\n" + ids + "\n" + ops + "\n",
       "policy.toml:1: rule 'r': ", "missing required key 'resources'"},
      {"missing identities in the second rule",
       rule("a", "[\"admin\"]", "[\"kek.read\"]", "[\"kek:*\"]") + "[[rule]]\nname = \"b\"\n" + ops + "\n" + res,
       "policy.toml:6: rule 'b': ", "missing required key 'identities'"},
      {"name not a string", "[[rule]]\nname = 7\n", "policy.toml:2: rule #1: ", "'name' must be a string"},
      {"invalid name", "[[rule]]\nname = \"web server\"\n",
       "policy.toml:2: rule #1: ", "invalid rule name 'web server'"},
      {"duplicate name",
       rule("a", "[\"admin\"]", "[\"kek.read\"]", "[\"kek:*\"]") +
           rule("a", "[\"bob\"]", "[\"kek.read\"]", "[\"kek:*\"]"),
       "policy.toml:7: ", "rule name 'a' is used twice (first on line 2)"},
      {"unknown key in a rule", bad_rule("identity = [\"admin\"]"),
       "policy.toml:3: rule 'r': ", "unknown key 'identity' (did you mean 'identities'?)"},
      {"unknown key with no close spelling", bad_rule("colour = \"blue\""),
       "policy.toml:3: rule 'r': ", "unknown key 'colour' (known: name, identities, operations, resources, when)"},
      {"constraint outside [rule.when]", bad_rule("context = { tenant = \"payments\" }"),
       "policy.toml:3: rule 'r': ", "constraints go in [rule.when]"},
      {"identities not an array", bad_rule("identities = \"admin\""), "policy.toml:3: rule 'r': ",
       "'identities' must be an array of strings, as in [\"spiffe://example.org/payments\"]; not a string"},
      {"identities empty", bad_rule("identities = []"), "policy.toml:3: rule 'r': ", "'identities' must not be empty"},
      {"identity not a string", bad_rule("identities = [\"admin\", 3]"),
       "policy.toml:3: rule 'r': ", "'identities[1]' must be a string, not an integer"},
      {"identity empty", bad_rule("identities = [\"\"]"), "policy.toml:3: rule 'r': ", "identity '' is empty"},
      {"identity listed twice", bad_rule("identities = [\"admin\", \"admin\"]"),
       "policy.toml:3: rule 'r': ", "identity 'admin' is listed twice in 'identities'"},
      {"identity with **", bad_rule("identities = [\"spiffe://example.org/**\"]"),
       "policy.toml:3: rule 'r': ", "holds '**'"},
      {"identity with * in the trust domain", bad_rule("identities = [\"spiffe://*.example.org/payments\"]"),
       "policy.toml:3: rule 'r': ", "has '*' in its scheme or authority"},
      {"identity with * in the scheme", bad_rule("identities = [\"spiff*://example.org/payments\"]"),
       "policy.toml:3: rule 'r': ", "looks like a URI, but 'spiff*' is not a URI scheme"},
      {"identity variable", bad_rule("identities = [\"$identity\"]"), "policy.toml:3: rule 'r': ", "is a variable"},
      {"identity with ?", bad_rule("identities = [\"web-0?\"]"),
       "policy.toml:3: rule 'r': ", "contains '?', which is not a wildcard here"},
      {"identity with a control character", bad_rule("identities = [\"ad\\u0001min\"]"),
       "policy.toml:3: rule 'r': ", "identity 'ad\\x01min' contains a control character"},
      {"URI identity with a query", bad_rule("identities = [\"spiffe://example.org/a?b=c\"]"),
       "policy.toml:3: rule 'r': ", "query or fragment"},
      {"unknown operation", bad_rule("operations = [\"kek.decypt\"]"),
       "policy.toml:3: rule 'r': ", "unknown operation 'kek.decypt' (did you mean 'kek.decrypt'?)"},
      {"unknown operation, no close spelling", bad_rule("operations = [\"launch.missiles\"]"),
       "policy.toml:3: rule 'r': ", "unknown operation 'launch.missiles' (known: pki.issue, pki.renew, pki.revoke"},
      {"operation in the wrong case", bad_rule("operations = [\"KEK.DECRYPT\"]"),
       "policy.toml:3: rule 'r': ", "(did you mean 'kek.decrypt'?)"},
      {"operation wildcard", bad_rule("operations = [\"kek.*\"]"),
       "policy.toml:3: rule 'r': ", "operation 'kek.*' is a pattern: operations are listed one by one"},
      {"operation star", bad_rule("operations = [\"*\"]"), "policy.toml:3: rule 'r': ", "operation '*' is a pattern"},
      {"operations empty", bad_rule("operations = []"), "policy.toml:3: rule 'r': ", "'operations' must not be empty"},
      {"operation listed twice", bad_rule("operations = [\"kek.read\", \"kek.read\"]"),
       "policy.toml:3: rule 'r': ", "operation 'kek.read' is listed twice"},
      {"resource without kind", bad_rule("resources = [\"payments\"]"), "policy.toml:3: rule 'r': ",
       "resource 'payments' has no kind: write KIND:NAME with KIND one of ca, ssh-ca, kek, key, audit"},
      {"resource of unknown kind", bad_rule("resources = [\"kms:payments\"]"),
       "policy.toml:3: rule 'r': ", "resource 'kms:payments': unknown kind 'kms'"},
      {"resource kind misspelt", bad_rule("resources = [\"ssh_ca:users\"]"),
       "policy.toml:3: rule 'r': ", "unknown kind 'ssh_ca' (did you mean 'ssh-ca'?)"},
      {"resource name with /", bad_rule("resources = [\"kek:pay/ments\"]"),
       "policy.toml:3: rule 'r': ", "resource 'kek:pay/ments': the name holds '/', which cannot be in a name"},
      {"resource name empty", bad_rule("resources = [\"kek:\"]"),
       "policy.toml:3: rule 'r': ", "resource 'kek:': the name is empty"},
      {"resource name with **", bad_rule("resources = [\"kek:**\"]"), "policy.toml:3: rule 'r': ", "holds '**'"},
      {"resource name that cannot match", bad_rule("resources = [\"kek:-x\"]"),
       "policy.toml:3: rule 'r': ", "can never match"},
      {"operation without a resource of its kind",
       "[[rule]]\nname = \"r\"\n" + ids + "\noperations = [\"kek.decrypt\",\n  \"pki.issue\"]\n" + res + "\n",
       "policy.toml:5: rule 'r': ", "operation 'pki.issue' acts on ca:NAME resources, and 'resources' names none"},
      {"resource of a kind no operation acts on",
       "[[rule]]\nname = \"r\"\n" + ids + "\n" + ops + "\nresources = [\"kek:a\",\n  \"ca:issuing\"]\n",
       "policy.toml:6: rule 'r': ",
       "resource 'ca:issuing' is not of a kind any operation of the rule acts on (kek.decrypt on kek:NAME)"},
      {"when not a table", rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]") + "when = \"always\"\n",
       "policy.toml:6: rule 'r': ", "'when' must be a table"},
      {"unknown constraint", rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "contxt = { a = \"b\" }\n"),
       "policy.toml:7: rule 'r': ", "unknown key 'when.contxt' (did you mean 'when.context'?)"},
      {"dns_suffixes on kek.decrypt",
       rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "dns_suffixes = [\".example.org\"]\n"),
       "policy.toml:7: rule 'r': ",
       "'when.dns_suffixes' constrains pki.issue, pki.renew only, and the rule also allows kek.decrypt: give kek.decrypt a rule "
       "of its own"},
      {"context on pki.issue", rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "context = { a = \"b\" }\n"),
       "policy.toml:7: rule 'r': ", "'when.context' constrains kek.datakey, kek.encrypt, kek.decrypt, kek.rewrap only"},
      {"context on kek.rotate",
       rule("r", "[\"admin\"]", "[\"kek.decrypt\", \"kek.rotate\"]", "[\"kek:a\"]", "context = { a = \"b\" }\n"),
       "policy.toml:7: rule 'r': ", "and the rule also allows kek.rotate"},
      {"principals on pki.issue",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "principals = [\"$identity\"]\n"),
       "policy.toml:7: rule 'r': ", "'when.principals' constrains ssh.sign, ssh.renew only"},
      {"profiles on pki.revoke",
       rule("r", "[\"admin\"]", "[\"pki.issue\", \"pki.revoke\"]", "[\"ca:a\"]", "profiles = [\"server\"]\n"),
       "policy.toml:7: rule 'r': ",
       "'when.profiles' constrains pki.issue, pki.renew, ssh.sign, ssh.renew only, and the rule also allows "
       "pki.revoke"},
      {"context not a table", rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "context = [\"a\"]\n"),
       "policy.toml:7: rule 'r': ", "'when.context' must be a table, as in { tenant = \"payments\" }"},
      {"context empty", rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "context = {}\n"),
       "policy.toml:7: rule 'r': ", "'when.context' must not be empty"},
      {"context value not a string",
       rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "context = { tenant = 42 }\n"),
       "policy.toml:7: rule 'r': ", "'when.context.tenant' must be a string, not an integer"},
      {"context value empty",
       rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "context = { tenant = \"\" }\n"),
       "policy.toml:7: rule 'r': ", "'when.context.tenant' must not be empty"},
      {"context unknown variable",
       rule("r", "[\"admin\"]", "[\"kek.decrypt\"]", "[\"kek:a\"]", "context = { tenant = \"$tenant\" }\n"),
       "policy.toml:7: rule 'r': ", "unknown variable '$tenant' (the only one is $identity)"},
      {"dns_suffixes empty", rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = []\n"),
       "policy.toml:7: rule 'r': ", "'when.dns_suffixes' must not be empty (leave it out for no constraint)"},
      {"dns suffix with a trailing dot",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = [\".example.org.\"]\n"),
       "policy.toml:7: rule 'r': ", "DNS suffix '.example.org.' ends with a dot"},
      {"dns suffix not ASCII",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = [\".b\\u00fccher.example\"]\n"),
       "policy.toml:7: rule 'r': ", "write IDNs as xn-- A-labels"},
      {"dns suffix with a wildcard",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = [\"*.example.org\"]\n"),
       "policy.toml:7: rule 'r': ", "DNS suffix '*.example.org' holds '*'"},
      {"dns suffix only a dot", rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = [\".\"]\n"),
       "policy.toml:7: rule 'r': ", "is only a dot"},
      {"dns suffix with an empty label",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]", "dns_suffixes = [\".a..example.org\"]\n"),
       "policy.toml:7: rule 'r': ", "is not a DNS domain"},
      {"dns suffix listed twice in another case",
       rule("r", "[\"admin\"]", "[\"pki.issue\"]", "[\"ca:a\"]",
            "dns_suffixes = [\".Example.org\", \".example.ORG\"]\n"),
       "policy.toml:7: rule 'r': ", "DNS suffix '.example.ORG' is listed twice"},
      {"principals empty", rule("r", "[\"admin\"]", "[\"ssh.sign\"]", "[\"ssh-ca:a\"]", "principals = []\n"),
       "policy.toml:7: rule 'r': ", "'when.principals' must not be empty"},
      {"principal unknown variable",
       rule("r", "[\"admin\"]", "[\"ssh.sign\"]", "[\"ssh-ca:a\"]", "principals = [\"$user\"]\n"),
       "policy.toml:7: rule 'r': ", "principal '$user' is an unknown variable"},
      {"principal with a comma",
       rule("r", "[\"admin\"]", "[\"ssh.sign\"]", "[\"ssh-ca:a\"]", "principals = [\"alice,root\"]\n"),
       "policy.toml:7: rule 'r': ", "contains a comma"},
      {"profile that is not a name",
       rule("r", "[\"admin\"]", "[\"ssh.sign\"]", "[\"ssh-ca:a\"]", "profiles = [\"web server\"]\n"),
       "policy.toml:7: rule 'r': ", "profile 'web server' holds ' '"},
  };
}

TEST(PolicyParse, EveryLoadErrorNamesTheFileLineAndProblem) {
  for (const LoadErrorCase& c : load_error_cases()) {
    SCOPED_TRACE(c.what);
    std::string message = error_of(c.text);
    EXPECT_THAT(message, StartsWith(c.prefix));
    EXPECT_THAT(message, HasSubstr(c.contains));
    EXPECT_EQ(message.find('\n'), std::string::npos) << "messages are one line";
  }
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "keyhold-policy-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = fs::canonical(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string load_error(const fs::path& file) {
  try {
    Policy::load(file);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no keyhold::Error was thrown for " << file;
  return "<no error>";
}

TEST(PolicyLoad, ReadsAFile) {
  TempDir dir;
  write_file(dir.path() / "policy.toml", rule("admin", "[\"admin\"]", "[\"kek.read\"]", "[\"kek:*\"]"));
  Policy policy = Policy::load(dir.path() / "policy.toml");
  EXPECT_EQ(policy.rules(), 1u);
  EXPECT_TRUE(allows(policy, "admin", "kek.read", "kek:payments"));
}

TEST(PolicyLoad, ErrorsNameTheFileByItsFullPathAndLine) {
  TempDir dir;
  fs::path file = dir.path() / "policy.toml";
  write_file(file, rule("admin", "[\"admin\"]", "[\"kek.raed\"]", "[\"kek:*\"]"));
  EXPECT_THAT(load_error(file), StartsWith(file.string() + ":4: rule 'admin': unknown operation 'kek.raed'"));
}

TEST(PolicyLoad, RefusesAMissingFileAndADirectory) {
  TempDir dir;
  EXPECT_EQ(load_error(dir.path() / "absent.toml"), (dir.path() / "absent.toml").string() + ": does not exist");
  EXPECT_EQ(load_error(dir.path()), dir.path().string() + ": is a directory, not a policy file");
}

// ---- Identities, operations, resources ----------------------------------------

TEST(PolicyCheck, ExactIdentitiesMatchByteForByte) {
  Policy policy = parse(rule("r", "[\"spiffe://example.org/payments\", \"alice\"]", "[\"kek.read\"]", "[\"kek:k\"]"));
  EXPECT_TRUE(allows(policy, "spiffe://example.org/payments", "kek.read", "kek:k"));
  EXPECT_TRUE(allows(policy, "alice", "kek.read", "kek:k"));
  for (const char* other :
       {"spiffe://example.org/payments/", "spiffe://example.org/payments/api", "spiffe://example.org/Payments",
        "SPIFFE://example.org/payments", "spiffe://example.org.evil.net/payments", "Alice", "alice ",
        "alice.example.org", "alic", ""}) {
    EXPECT_FALSE(allows(policy, other, "kek.read", "kek:k")) << other;
  }
}

TEST(PolicyCheck, AStarInAUriPatternStaysWithinOnePathSegment) {
  Policy policy = parse(rule("r", "[\"spiffe://example.org/payments/*\", \"spiffe://example.org/ns/*/sa/web\"]",
                             "[\"kek.read\"]", "[\"kek:k\"]"));
  EXPECT_TRUE(allows(policy, "spiffe://example.org/payments/api", "kek.read", "kek:k"));
  EXPECT_TRUE(allows(policy, "spiffe://example.org/ns/prod/sa/web", "kek.read", "kek:k"));
  for (const char* other : {"spiffe://example.org/payments/api/v2", "spiffe://example.org/payments/",
                            "spiffe://example.org/payments", "spiffe://example.org.evil.net/payments/api",
                            "spiffe://example.org/ns/prod/dev/sa/web", "spiffe://example.org/ns//sa/web"}) {
    EXPECT_FALSE(allows(policy, other, "kek.read", "kek:k")) << other;
  }
}

TEST(PolicyCheck, AStarInANamePatternStaysWithinOneLabel) {
  Policy policy = parse(rule("r", "[\"*.payments.example.org\", \"web-*\"]", "[\"kek.read\"]", "[\"kek:k\"]"));
  EXPECT_TRUE(allows(policy, "api.payments.example.org", "kek.read", "kek:k"));
  EXPECT_TRUE(allows(policy, "web-01", "kek.read", "kek:k"));
  for (const char* other : {"a.b.payments.example.org", "payments.example.org", ".payments.example.org",
                            "web-01.example.org", "web-", "web"}) {
    EXPECT_FALSE(allows(policy, other, "kek.read", "kek:k")) << other;
  }
}

TEST(PolicyCheck, NamePatternsNeverMatchUriIdentities) {
  // '*' may not cross '.', but '/' and ':' are nothing to a name pattern: without
  // this rule "*.example.org" would let spiffe://evil.net/x.example.org in.
  Policy policy = parse(rule("r", "[\"*.example.org\", \"*\"]", "[\"kek.read\"]", "[\"kek:k\"]"));
  Policy names_only = parse(rule("r", "[\"*.example.org\"]", "[\"kek.read\"]", "[\"kek:k\"]"));
  EXPECT_FALSE(allows(names_only, "spiffe://evil/x.example.org", "kek.read", "kek:k"));
  EXPECT_TRUE(allows(names_only, "www.example.org", "kek.read", "kek:k"));
  EXPECT_TRUE(allows(policy, "spiffe://evil/x.example.org", "kek.read", "kek:k")) << "but \"*\" is every caller";
}

TEST(PolicyCheck, AStarAloneMatchesEveryCallerButNoOne) {
  Policy policy = parse(rule("chain-readers", "[\"*\"]", "[\"pki.read\"]", "[\"ca:*\"]"));
  for (const char* caller : {"admin", "a.b.example.org", "spiffe://example.org/a/b/c", "Alice Smith"}) {
    EXPECT_TRUE(allows(policy, caller, "pki.read", "ca:issuing")) << caller;
  }
  EXPECT_FALSE(allows(policy, "", "pki.read", "ca:issuing"));
  EXPECT_FALSE(allows(policy, "admin", "pki.issue", "ca:issuing"));
}

TEST(PolicyCheck, OperationsAreExact) {
  Policy policy = parse(rule("r", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:k\"]"));
  EXPECT_TRUE(allows(policy, "svc", "kek.decrypt", "kek:k"));
  for (const char* other : {"kek.encrypt", "kek.rotate", "KEK.DECRYPT", "kek.decrypt ", "kek.*", "*", ""}) {
    EXPECT_FALSE(allows(policy, "svc", other, "kek:k")) << other;
  }
}

TEST(PolicyCheck, ResourcePatternsMatchWholeNames) {
  Policy policy = parse(rule("r", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:payments-*\", \"kek:shared\"]"));
  for (const char* allowed : {"kek:payments-eu", "kek:payments-eu.v2", "kek:shared"}) {
    EXPECT_TRUE(allows(policy, "svc", "kek.decrypt", allowed)) << allowed;
  }
  for (const char* other :
       {"kek:payments-", "kek:payments", "kek:billing", "kek:shared2", "kek:Shared", "kek:xpayments-eu",
        "ca:payments-eu", "key:shared", "shared", "kek:", "kek:a/b", "kek:payments-eu/x"}) {
    EXPECT_FALSE(allows(policy, "svc", "kek.decrypt", other)) << other;
  }
}

TEST(PolicyCheck, AStarMatchesOneOrMoreCharacters) {
  Policy policy = parse(rule("r", "[\"web-*.example.org\", \"spiffe://example.org/*-*/api\"]", "[\"kek.read\"]",
                             "[\"kek:*-*\", \"kek:a*b\"]"));
  EXPECT_TRUE(allows(policy, "web-1.example.org", "kek.read", "kek:ab-cd"));
  EXPECT_TRUE(allows(policy, "spiffe://example.org/eu-west/api", "kek.read", "kek:a-b-c"));
  EXPECT_TRUE(allows(policy, "web-1.example.org", "kek.read", "kek:abb"));
  EXPECT_TRUE(allows(policy, "web-1.example.org", "kek.read", "kek:aaab"));
  EXPECT_FALSE(allows(policy, "web-.example.org", "kek.read", "kek:a-b"));
  EXPECT_FALSE(allows(policy, "spiffe://example.org/eu-/api", "kek.read", "kek:a-b"));
  EXPECT_FALSE(allows(policy, "web-1.example.org", "kek.read", "kek:ab"));
  EXPECT_FALSE(allows(policy, "web-1.example.org", "kek.read", "kek:a-"));
  EXPECT_FALSE(allows(policy, "web-1.example.org", "kek.read", "kek:abc"));
}

TEST(PolicyCheck, AResourceMustBeOfTheKindItsOperationActsOn) {
  // One rule for two families: kek.read may not reach a CA through ca:*.
  Policy policy = parse(rule("r", "[\"ops\"]", "[\"pki.read\", \"kek.read\"]", "[\"ca:*\", \"kek:*\"]"));
  EXPECT_TRUE(allows(policy, "ops", "pki.read", "ca:issuing"));
  EXPECT_TRUE(allows(policy, "ops", "kek.read", "kek:payments"));
  EXPECT_FALSE(allows(policy, "ops", "kek.read", "ca:issuing"));
  EXPECT_FALSE(allows(policy, "ops", "pki.read", "kek:payments"));
}

TEST(PolicyCheck, AnyRuleThatAllowsDecidesAndNamesItself) {
  Policy policy =
      parse(rule("payments-prod", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:k\"]", "context = { env = \"prod\" }\n") +
            rule("payments-any", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:*\"]") +
            rule("payments-again", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:k\"]"));
  Request r = request("svc", "kek.decrypt", "kek:k");
  EXPECT_EQ(policy.check(r).rule, "payments-any") << "the first rule's constraint does not hold";
  r.context = {{"env", "prod"}};
  EXPECT_EQ(policy.check(r).rule, "payments-prod") << "the first allowing rule in file order";
}

TEST(PolicyCheck, DeniesByDefault) {
  Policy policy = parse(rule("r", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:k\"]"));
  Decision decision = policy.check(request("other", "kek.decrypt", "kek:k"));
  EXPECT_FALSE(decision.allowed);
  EXPECT_THAT(decision.rule, IsEmpty());
  EXPECT_EQ(decision.reason, "kek.decrypt on kek:k denied");
  EXPECT_EQ(decision.detail, "no rule names the caller");
  EXPECT_EQ(policy.check(request("svc", "kek.encrypt", "kek:k")).detail,
            "no rule allows the caller this operation on this resource");
  EXPECT_EQ(policy.check(request("svc", "launch.missiles", "kek:k")).reason, "launch.missiles on kek:k denied");
}

// ---- Constraints -----------------------------------------------------------------

class ContextConstraint : public ::testing::Test {
 protected:
  Policy policy_ = parse(rule("payments", "[\"spiffe://example.org/payments\"]", "[\"kek.decrypt\", \"kek.datakey\"]",
                              "[\"kek:payments\"]", "context = { tenant = \"payments\", region = \"eu\" }\n") +
                         rule("per-tenant", "[\"spiffe://example.org/tenants/*\"]", "[\"kek.encrypt\"]",
                              "[\"kek:tenants\"]", "context = { tenant = \"$identity\" }\n"));
  Request decrypt(std::map<std::string, std::string> context) {
    Request r = request("spiffe://example.org/payments", "kek.decrypt", "kek:payments");
    r.context = std::move(context);
    return r;
  }
};

TEST_F(ContextConstraint, EveryKeyMustBePresentWithExactlyThatValue) {
  EXPECT_TRUE(allows(policy_, decrypt({{"tenant", "payments"}, {"region", "eu"}})));
  EXPECT_FALSE(allows(policy_, decrypt({{"tenant", "payments"}})));
  EXPECT_FALSE(allows(policy_, decrypt({})));
  EXPECT_FALSE(allows(policy_, decrypt({{"tenant", "billing"}, {"region", "eu"}})));
  EXPECT_FALSE(allows(policy_, decrypt({{"tenant", "Payments"}, {"region", "eu"}})));
  EXPECT_FALSE(allows(policy_, decrypt({{"tenant", "payments "}, {"region", "eu"}})));
  EXPECT_FALSE(allows(policy_, decrypt({{"Tenant", "payments"}, {"region", "eu"}})));
}

TEST_F(ContextConstraint, ExtraKeysAreAllowed) {
  EXPECT_TRUE(allows(policy_, decrypt({{"tenant", "payments"}, {"region", "eu"}, {"order", "1234"}})));
}

TEST_F(ContextConstraint, IdentityStandsForTheCallersName) {
  Request r = request("spiffe://example.org/tenants/acme", "kek.encrypt", "kek:tenants");
  r.context = {{"tenant", "acme"}};
  EXPECT_TRUE(allows(policy_, r));
  r.context = {{"tenant", "globex"}};
  EXPECT_FALSE(allows(policy_, r));
}

TEST_F(ContextConstraint, TheDenialDetailNamesTheKeyButNoValue) {
  Decision decision = policy_.check(decrypt({{"tenant", "billing-secret-tenant"}, {"region", "eu"}}));
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.reason, "kek.decrypt on kek:payments denied");
  EXPECT_THAT(decision.detail, HasSubstr("rule 'payments': when.context 'tenant' not met"));
  EXPECT_THAT(decision.detail, Not(HasSubstr("billing-secret-tenant")));
  EXPECT_THAT(decision.detail, Not(HasSubstr("payments\"")));
}

class DnsConstraint : public ::testing::Test {
 protected:
  Policy policy_ = parse(rule("web", "[\"spiffe://example.org/web\"]", "[\"pki.issue\"]", "[\"ca:issuing\"]",
                              "dns_suffixes = [\".payments.example.org\", \"Web.Example.NET\"]\n"));
  bool issue(std::vector<std::string> dns_names) {
    Request r = request("spiffe://example.org/web", "pki.issue", "ca:issuing");
    r.dns_names = std::move(dns_names);
    return allows(policy_, r);
  }
};

TEST_F(DnsConstraint, ADotSuffixAllowsNamesBelowItButNotItself) {
  EXPECT_TRUE(issue({"api.payments.example.org"}));
  EXPECT_TRUE(issue({"a.b.payments.example.org"}));
  EXPECT_FALSE(issue({"payments.example.org"})) << "the suffix without its dot";
  EXPECT_FALSE(issue({"evilpayments.example.org"}));
  EXPECT_FALSE(issue({"payments.example.org.evil.net"}));
  EXPECT_FALSE(issue({"example.org"}));
}

TEST_F(DnsConstraint, ASuffixWithoutADotAllowsTheNameAndNamesBelowIt) {
  EXPECT_TRUE(issue({"web.example.net"}));
  EXPECT_TRUE(issue({"www.web.example.net"}));
  EXPECT_FALSE(issue({"badweb.example.net"}));
  EXPECT_FALSE(issue({"example.net"}));
}

TEST_F(DnsConstraint, ComparesWithoutRegardToCase) {
  EXPECT_TRUE(issue({"API.Payments.Example.ORG"}));
  EXPECT_TRUE(issue({"WEB.EXAMPLE.NET"}));
}

TEST_F(DnsConstraint, EveryNameMustBeUnderASuffix) {
  EXPECT_TRUE(issue({"api.payments.example.org", "www.web.example.net"}));
  EXPECT_FALSE(issue({"api.payments.example.org", "www.example.com"}));
  EXPECT_FALSE(issue({})) << "a certificate without DNS names is not what the rule allows";
}

TEST_F(DnsConstraint, NamesMustBeAsCertificatesHoldThem) {
  EXPECT_FALSE(issue({"api.payments.example.org."})) << "trailing dot";
  EXPECT_FALSE(
      issue({"b\xc3\xbc"
             "cher.payments.example.org"}))
      << "IDN as a U-label";
  EXPECT_TRUE(issue({"xn--bcher-kva.payments.example.org"})) << "IDN as an A-label";
  EXPECT_FALSE(issue({"a..payments.example.org"}));
  EXPECT_FALSE(issue({"a_b.payments.example.org"}));
  EXPECT_FALSE(issue({"-a.payments.example.org"}));
  EXPECT_FALSE(issue({""}));
}

TEST_F(DnsConstraint, AWildcardNameIsAllowedOnlyBelowASuffix) {
  EXPECT_TRUE(issue({"*.payments.example.org"}));
  EXPECT_TRUE(issue({"*.web.example.net"}));
  EXPECT_FALSE(issue({"*.example.org"}));
  EXPECT_FALSE(issue({"a*.payments.example.org"}));
  EXPECT_FALSE(issue({"*"}));
}

TEST_F(DnsConstraint, OtherNamesInTheCertificateAreRefused) {
  // A rule for DNS names under a suffix must not issue a certificate that could
  // authenticate as someone else: a URI SAN or a CN is an identity to keyhold itself.
  Request r = request("spiffe://example.org/web", "pki.issue", "ca:issuing");
  r.dns_names = {"api.payments.example.org"};
  EXPECT_TRUE(allows(policy_, r));
  r.common_name = "api.payments.example.org";
  EXPECT_TRUE(allows(policy_, r));
  r.common_name = "admin";
  EXPECT_FALSE(allows(policy_, r));
  r.common_name.reset();
  r.uris = {"spiffe://example.org/admin"};
  EXPECT_FALSE(allows(policy_, r));
  r.uris.clear();
  r.ip_addresses = {"10.0.0.1"};
  EXPECT_FALSE(allows(policy_, r));
  r.ip_addresses.clear();
  r.emails = {"a@payments.example.org"};
  EXPECT_FALSE(allows(policy_, r));
}

class PrincipalConstraint : public ::testing::Test {
 protected:
  Policy policy_ = parse(rule("own-name", "[\"spiffe://example.org/users/*\", \"*.people.example.org\", \"carol\"]",
                              "[\"ssh.sign\"]", "[\"ssh-ca:users\"]", "principals = [\"$identity\"]\n") +
                         rule("deployers", "[\"spiffe://example.org/ci\"]", "[\"ssh.sign\"]", "[\"ssh-ca:users\"]",
                              "principals = [\"deploy-*\"]\n"));
  bool sign(std::string identity, std::vector<std::string> principals) {
    Request r = request(std::move(identity), "ssh.sign", "ssh-ca:users");
    r.principals = std::move(principals);
    return allows(policy_, r);
  }
};

TEST_F(PrincipalConstraint, IdentityIsTheLastPathSegmentOfAUri) {
  EXPECT_TRUE(sign("spiffe://example.org/users/alice", {"alice"}));
  EXPECT_FALSE(sign("spiffe://example.org/users/alice", {"bob"}));
  EXPECT_FALSE(sign("spiffe://example.org/users/alice", {"alice", "root"})) << "every principal";
  EXPECT_FALSE(sign("spiffe://example.org/users/alice", {"users"}));
  EXPECT_FALSE(sign("spiffe://example.org/users/alice", {"Alice"}));
}

TEST_F(PrincipalConstraint, IdentityIsTheWholeCommonName) {
  EXPECT_TRUE(sign("carol", {"carol"}));
  EXPECT_TRUE(sign("dave.people.example.org", {"dave.people.example.org"}));
  EXPECT_FALSE(sign("dave.people.example.org", {"dave"}));
  EXPECT_FALSE(sign("carol", {"carol2"}));
}

TEST(PolicyPrincipals, AUriWithoutALastSegmentHasNoName) {
  Policy policy = parse(rule("r", "[\"spiffe://example.org\", \"spiffe://example.org/users/\"]", "[\"ssh.sign\"]",
                             "[\"ssh-ca:users\"]", "principals = [\"$identity\"]\n"));
  for (const char* caller : {"spiffe://example.org", "spiffe://example.org/users/"}) {
    Request r = request(caller, "ssh.sign", "ssh-ca:users");
    for (const char* principal : {"example.org", "users", "", "spiffe:"}) {
      r.principals = {principal};
      EXPECT_FALSE(allows(policy, r)) << caller << " as " << principal;
    }
  }
}

TEST_F(PrincipalConstraint, PatternsAndAtLeastOnePrincipal) {
  EXPECT_TRUE(sign("spiffe://example.org/ci", {"deploy-web", "deploy-db"}));
  EXPECT_FALSE(sign("spiffe://example.org/ci", {"deploy-"}));
  EXPECT_FALSE(sign("spiffe://example.org/ci", {"root"}));
  EXPECT_FALSE(sign("spiffe://example.org/ci", {"ci"})) << "$identity is not in this rule";
  EXPECT_FALSE(sign("spiffe://example.org/ci", {})) << "a certificate without principals is valid for everyone";
  EXPECT_FALSE(sign("spiffe://example.org/users/alice", {}));
}

TEST(PolicyProfiles, TheRequestsProfileMustBeListed) {
  Policy policy =
      parse(rule("r", "[\"web\"]", "[\"pki.issue\"]", "[\"ca:issuing\"]", "profiles = [\"server\", \"tls-*\"]\n"));
  Request r = request("web", "pki.issue", "ca:issuing");
  r.profile = "server";
  EXPECT_TRUE(allows(policy, r));
  r.profile = "tls-internal";
  EXPECT_TRUE(allows(policy, r));
  r.profile = "client";
  EXPECT_FALSE(allows(policy, r));
  r.profile.reset();
  EXPECT_FALSE(allows(policy, r)) << "the service names the profile it will use";
}

// ---- What a refusal says ------------------------------------------------------------

TEST(PolicyRefusal, SaysTheOperationAndResourceAndNothingMore) {
  Policy policy = parse(rule("secret-rule-name", "[\"svc\"]", "[\"kek.decrypt\"]", "[\"kek:payments\"]",
                             "context = { tenant = \"payments\" }\n"));
  Request r = request("svc", "kek.decrypt", "kek:payments");
  r.context = {{"tenant", "billing"}, {"note", "top-secret"}};
  Decision decision = policy.check(r);
  ASSERT_FALSE(decision.allowed);
  EXPECT_EQ(decision.reason, "kek.decrypt on kek:payments denied");
  for (const char* hidden : {"billing", "top-secret", "tenant", "secret-rule-name", "svc", "when"}) {
    EXPECT_THAT(decision.reason, Not(HasSubstr(hidden)));
  }
  EXPECT_THAT(decision.detail, Not(HasSubstr("billing")));
  EXPECT_THAT(decision.detail, Not(HasSubstr("top-secret")));
}

TEST(PolicyRefusal, EscapesWhatTheCallerSent) {
  Decision decision = Policy().check(request("svc", "kek.decrypt\nforged: line", "kek:a\x01"));
  EXPECT_EQ(decision.reason, "kek.decrypt\\x0aforged: line on kek:a\\x01 denied");
  std::string long_resource = "kek:" + std::string(1000, 'a');
  EXPECT_LT(Policy().check(request("svc", "kek.decrypt", long_resource)).reason.size(), 300u);
}

// ---- Operations, kinds, the dev policy ------------------------------------------------

TEST(PolicyOperations, EveryKnownOperationHasAResourceKind) {
  EXPECT_EQ(known_operations().size(), 17u);
  for (std::string_view operation : known_operations()) EXPECT_TRUE(resource_kind(operation)) << operation;
  EXPECT_EQ(resource_kind("pki.issue"), "ca");
  EXPECT_EQ(resource_kind("ssh.read"), "ssh-ca");
  EXPECT_EQ(resource_kind("kek.rewrap"), "kek");
  EXPECT_EQ(resource_kind("keys.create"), "key");
  EXPECT_EQ(resource_kind("audit.read"), "audit");
  EXPECT_FALSE(resource_kind("kek.destroy"));
  EXPECT_FALSE(resource_kind("pki."));
}

TEST(DevPolicy, AdminMayDoEverything) {
  Policy policy = parse(dev_policy_toml());
  EXPECT_EQ(policy.rules(), 1u);
  for (std::string_view operation : known_operations()) {
    std::string resource = std::string(*resource_kind(operation)) + ":anything";
    Decision decision = policy.check(request("admin", std::string(operation), resource));
    EXPECT_TRUE(decision.allowed) << operation;
    EXPECT_EQ(decision.rule, "dev-admin");
  }
  Request decrypt = request("admin", "kek.decrypt", "kek:payments");
  decrypt.context = {{"tenant", "payments"}};
  EXPECT_TRUE(allows(policy, decrypt));
  Request sign = request("admin", "ssh.sign", "ssh-ca:users");
  sign.principals = {"root"};
  EXPECT_TRUE(allows(policy, sign));
}

TEST(DevPolicy, NobodyElseMayDoAnything) {
  Policy policy = parse(dev_policy_toml());
  for (const char* caller :
       {"Admin", "admin2", "admin.example.org", "spiffe://example.org/admin", "root", " admin", ""}) {
    for (std::string_view operation : known_operations()) {
      std::string resource = std::string(*resource_kind(operation)) + ":anything";
      EXPECT_FALSE(allows(policy, caller, std::string(operation), resource)) << caller << " " << operation;
    }
  }
}

}  // namespace
}  // namespace keyhold::authz
