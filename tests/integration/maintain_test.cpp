// keyhold maintain end to end: each test on a development set-up of its own
// (keyhold init --dev), checked with openssl crl, ssh-keygen -Q and
// pkcs11-tool as independent peers. Time moves with --now, never by sleeping.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "keyhold/core/encoding.hpp"
#include "support/process.hpp"
#include "support/store_testing.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;
using testing::ProcessOptions;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// keyhold init --dev in a directory of its own, and keyhold run against it.
class CaHost {
 public:
  explicit CaHost(const std::string& name) : root_(testing::make_temp_directory("keyhold-maintain-" + name)) {
    dir_ = root_ / "dev";
    ProcessResult r = run_process({testing::keyhold_binary(), "init", "--dev", "--dir", dir_.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    published_ = root_ / "published";
    fs::create_directories(published_);
  }
  ~CaHost() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  CaHost(const CaHost&) = delete;
  CaHost& operator=(const CaHost&) = delete;

  ProcessResult run(std::vector<std::string> args) const {
    args.insert(args.begin(), {testing::keyhold_binary(), "--config", config().string()});
    ProcessOptions options;
    options.env.emplace("KEYHOLD_CONFIG", std::nullopt);
    options.env.emplace("KEYHOLD_PIN", std::nullopt);
    options.env.emplace("KEYHOLD_LOG", std::nullopt);
    return run_process(args, options);
  }
  // keyhold --json ARGS, expected to end with status; its output parsed.
  nlohmann::json json(std::vector<std::string> args, int status = 0) const {
    args.insert(args.begin(), "--json");
    ProcessResult r = run(args);
    EXPECT_EQ(r.exit_code, status) << r.err;
    return nlohmann::json::parse(r.out.empty() ? "null" : r.out);
  }
  // pkcs11-tool on the set-up's token (a throwaway PIN: fine on a test command line).
  ProcessResult pkcs11_tool(std::vector<std::string> args) const {
    std::string pin = read_file((dir_ / "pin").string());
    while (!pin.empty() && pin.back() == '\n') pin.pop_back();
    std::vector<std::string> argv = {"pkcs11-tool", "--module", testing::ThrowawayToken::module_path(), "--token-label",
                                     "keyhold-dev", "--login", "--pin", pin};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOptions options;
    options.env["SOFTHSM2_CONF"] = (dir_ / "softhsm2.conf").string();
    return run_process(argv, options);
  }

  fs::path config() const { return dir_ / "keyhold.toml"; }
  fs::path dir() const { return dir_; }
  fs::path published() const { return published_; }
  std::string published_file(const std::string& name) const { return (published_ / name).string(); }

 private:
  fs::path root_, dir_, published_;
};

// What openssl crl says about a DER CRL file, verified against the CA certificate.
struct OpensslCrl {
  long number = -1;
  std::string this_update, next_update;  // RFC 3339, as keyhold writes them
};

std::string rfc3339_of_openssl(const std::string& text) {
  // "Nov 28 23:09:09 2026 GMT"
  std::tm tm{};
  if (::strptime(text.c_str(), "%b %d %H:%M:%S %Y GMT", &tm) == nullptr) return "unparsed: " + text;
  return format_utc(Clock::from_time_t(::timegm(&tm)));
}

OpensslCrl openssl_crl(const std::string& file, const std::string& ca_pem) {
  ProcessResult r = run_process({"openssl", "crl", "-inform", "DER", "-in", file, "-CAfile", ca_pem, "-noout",
                                 "-crlnumber", "-lastupdate", "-nextupdate"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err + r.out, "verify OK")) << r.err << r.out;
  OpensslCrl out;
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex("crlNumber=(?:0x)?([0-9A-Fa-f]+)"))) out.number = std::stol(m[1], nullptr, 16);
  if (std::regex_search(r.out, m, std::regex("lastUpdate=([^\n]+)"))) out.this_update = rfc3339_of_openssl(m[1]);
  if (std::regex_search(r.out, m, std::regex("nextUpdate=([^\n]+)"))) out.next_update = rfc3339_of_openssl(m[1]);
  return out;
}

const nlohmann::json* entry_of(const nlohmann::json& report, const std::string& list, const std::string& key,
                               const std::string& value) {
  for (const nlohmann::json& e : report[list]) {
    if (e.value(key, "") == value) return &e;
  }
  return nullptr;
}

// The report's entry for the CRL of the dev CA's version 1.
nlohmann::json dev_crl(const nlohmann::json& report) {
  const nlohmann::json* e = entry_of(report, "crls", "ca", "dev");
  EXPECT_NE(e, nullptr) << report.dump();
  return e != nullptr ? *e : nlohmann::json::object();
}

std::string iso(Clock::time_point t) { return format_utc(t); }
Clock::time_point at(const nlohmann::json& text) { return *parse_utc(text.get<std::string>()); }

TEST(Maintain, RepublishesACrlPastItsThresholdBeforeNextUpdateAndIsIdempotent) {
  CaHost s("crl");
  std::string ca = (s.dir() / "ca.pem").string();
  std::string file = s.published_file("dev.crl");

  nlohmann::json first = s.json({"maintain", "--publish-dir", s.published().string()});
  nlohmann::json crl = dev_crl(first);
  ASSERT_EQ(crl["outcome"], "published") << first.dump();
  EXPECT_EQ(crl["reason"], "none published yet");
  EXPECT_EQ(crl["file"], file);
  OpensslCrl seen = openssl_crl(file, ca);
  EXPECT_EQ(seen.number, crl["number"].get<long>());
  EXPECT_EQ(seen.this_update, crl["this_update"]);
  EXPECT_EQ(seen.next_update, crl["next_update"]);
  EXPECT_EQ(at(crl["next_update"]) - at(crl["this_update"]), std::chrono::days(7));  // [pki] crl_next_update
  // Due with half of crl_next_update (3.5 days) left.
  EXPECT_EQ(at(crl["due_at"]), at(crl["next_update"]) - std::chrono::hours(84));

  // Run again: nothing is due, nothing is published or written.
  struct stat before {};
  ASSERT_EQ(::stat(file.c_str(), &before), 0);
  ProcessResult again = s.run({"maintain", "--publish-dir", s.published().string()});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(has(again.err, "CRL of CA 'dev' v1: not due (CRL " + std::to_string(seen.number) + ", next update " +
                                 crl["next_update"].get<std::string>() + ", due at " + crl["due_at"].get<std::string>() +
                                 ")\n"))
      << again.err;
  EXPECT_FALSE(has(again.err, "wrote")) << again.err;
  struct stat after {};
  ASSERT_EQ(::stat(file.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);  // not replaced
  EXPECT_EQ(openssl_crl(file, ca).number, seen.number);

  // Just before the threshold: still not due.
  Clock::time_point due_at = at(crl["due_at"]);
  nlohmann::json early = s.json({"maintain", "--now", iso(due_at - std::chrono::minutes(1))});
  EXPECT_EQ(dev_crl(early)["outcome"], "not due");

  // Past the threshold, still well before nextUpdate: a fresh CRL with the next number.
  ProcessResult late = s.run({"maintain", "--now", iso(due_at + std::chrono::minutes(1)), "--publish-dir",
                              s.published().string()});
  EXPECT_EQ(late.exit_code, 0) << late.err;
  long next = seen.number + 1;
  EXPECT_TRUE(has(late.err, "CRL of CA 'dev' v1: published CRL " + std::to_string(next) + ", next update ")) << late.err;
  EXPECT_TRUE(has(late.err, "0 revoked certificates (CRL " + std::to_string(seen.number) + " was due at " +
                                crl["due_at"].get<std::string>() + "); wrote " + file + "\n"))
      << late.err;
  OpensslCrl fresh = openssl_crl(file, ca);
  EXPECT_EQ(fresh.number, next);
  // What is signed takes the clock, not --now.
  EXPECT_LT(std::chrono::abs(*parse_utc(fresh.this_update) - Clock::now()), std::chrono::minutes(5));
  EXPECT_EQ(*parse_utc(fresh.next_update) - *parse_utc(fresh.this_update), std::chrono::days(7));
  EXPECT_GE(*parse_utc(fresh.this_update), *parse_utc(seen.this_update));

  // Idempotent: twice more at the clock, the same CRL number and file.
  for (int i = 0; i < 2; ++i) {
    nlohmann::json report = s.json({"maintain", "--publish-dir", s.published().string()});
    EXPECT_EQ(dev_crl(report)["outcome"], "not due") << report.dump();
    EXPECT_EQ(dev_crl(report)["number"], next);
  }
  EXPECT_EQ(openssl_crl(file, ca).number, next);

  // A revocation makes the next run publish at once, listing it.
  nlohmann::json issued = s.json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                                  "ec-p256", "--cn", "revoked.example.test"});
  std::string serial = issued["serial"];
  ASSERT_EQ(s.run({"ca", "revoke", "--ca", "dev", "--serial", serial}).exit_code, 0);
  nlohmann::json revoked = s.json({"maintain", "--publish-dir", s.published().string()});
  EXPECT_EQ(dev_crl(revoked)["outcome"], "published");
  EXPECT_EQ(dev_crl(revoked)["reason"], "certificates revoked since CRL " + std::to_string(next));
  EXPECT_EQ(dev_crl(revoked)["revoked"], 1);
  ProcessResult listed = run_process({"openssl", "crl", "-inform", "DER", "-in", file, "-noout", "-text"});
  std::string upper = serial;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_TRUE(has(listed.out, "Serial Number: " + upper)) << listed.out;
}

TEST(Maintain, RotatesTheKeksThatAreDueByCountAndByAgeAtNow) {
  CaHost s("kek");
  ASSERT_EQ(s.run({"kek", "create", "count", "--max-encryptions", "1"}).exit_code, 0);
  ASSERT_EQ(s.run({"kek", "create", "aged", "--rotation-period", "1d"}).exit_code, 0);
  ASSERT_EQ(s.run({"kek", "create", "young", "--rotation-period", "30d"}).exit_code, 0);
  std::string plaintext = (s.dir() / "plaintext").string();
  testing::write_file(plaintext, "secret");
  ProcessResult enc = s.run({"encrypt", "--kek", "count", "--in", plaintext});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;

  ProcessResult r = s.run({"maintain"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "rotated KEK 'count' to version 2: version 1 has done 1 encryptions (max-encryptions 1)\n"))
      << r.err;
  EXPECT_TRUE(has(r.err, "KEK 'aged': not due (next rotation ")) << r.err;
  EXPECT_EQ(r.out, "");

  // Two days on, the one-day KEK is due by age; the others are not.
  nlohmann::json later = s.json({"maintain", "--now", iso(Clock::now() + std::chrono::days(2))});
  ASSERT_EQ(later["rotated_keks"].size(), 1u) << later.dump();
  EXPECT_EQ(later["rotated_keks"][0]["kek"], "aged");
  EXPECT_EQ(later["rotated_keks"][0]["new_version"], 2);
  EXPECT_EQ(later["rotated_keks"][0]["reason"], "version 1 is older than the rotation period (1d)");
  EXPECT_EQ(entry_of(later, "keks", "kek", "young")->at("outcome"), "not due");
  EXPECT_EQ(entry_of(later, "keks", "kek", "count")->at("outcome"), "not due");

  // Idempotent: nothing more to rotate.
  nlohmann::json again = s.json({"maintain"});
  EXPECT_TRUE(again["rotated_keks"].empty()) << again.dump();
  EXPECT_EQ(s.json({"kek", "show", "count"})["primary_version"], 2);
  EXPECT_EQ(s.json({"kek", "show", "aged"})["primary_version"], 2);
  EXPECT_EQ(s.json({"kek", "show", "young"})["primary_version"], 1);
}

TEST(Maintain, PublishesTheKrlAgainAfterAnSshRevocationAndSshKeygenSeesIt) {
  CaHost s("krl");
  ASSERT_EQ(s.run({"ssh", "init-ca", "ops", "--key-type", "ed25519"}).exit_code, 0);
  std::string key = (s.dir() / "alice").string();
  ASSERT_EQ(run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key, "-C", "alice"}).exit_code, 0);
  std::string cert = key + "-cert.pub";
  ProcessResult signed_cert = s.run({"ssh", "sign", "--ca", "ops", "--public-key", key + ".pub", "--type", "user",
                                     "--key-id", "alice", "--principals", "alice", "--out", cert});
  ASSERT_EQ(signed_cert.exit_code, 0) << signed_cert.err;
  std::string krl = s.published_file("ops.krl");

  ProcessResult first = s.run({"maintain", "--publish-dir", s.published().string()});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(has(first.err, "KRL of SSH CA 'ops': published KRL 1, 0 serials, 0 key ids, 0 keys (none published yet); wrote " +
                                 krl + "\n"))
      << first.err;
  ProcessResult ok = run_process({"ssh-keygen", "-Q", "-f", krl, cert});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_TRUE(has(ok.out, ": ok")) << ok.out;

  ProcessResult unchanged = s.run({"maintain", "--publish-dir", s.published().string()});
  EXPECT_TRUE(has(unchanged.err, "KRL of SSH CA 'ops': not due (KRL 1 lists every revocation: 0 serials, 0 key ids, 0 keys)\n"))
      << unchanged.err;

  std::string serial = std::regex_replace(run_process({"ssh-keygen", "-L", "-f", cert}).out,
                                          std::regex("(?:.|\\n)*Serial: ([0-9]+)(?:.|\\n)*"), "$1");
  ASSERT_EQ(s.run({"ssh", "revoke", "--ca", "ops", "--serial", serial}).exit_code, 0);
  nlohmann::json report = s.json({"maintain", "--publish-dir", s.published().string()});
  const nlohmann::json* entry = entry_of(report, "krls", "ca", "ops");
  ASSERT_NE(entry, nullptr) << report.dump();
  EXPECT_EQ(entry->at("outcome"), "published");
  EXPECT_EQ(entry->at("version"), 2);
  EXPECT_EQ(entry->at("serials"), 1);
  EXPECT_EQ(entry->at("reason"), "revocations since KRL 1");
  ProcessResult revoked = run_process({"ssh-keygen", "-Q", "-f", krl, cert});
  EXPECT_NE(revoked.exit_code, 0) << revoked.out;
  EXPECT_TRUE(has(revoked.out, "REVOKED")) << revoked.out;

  // Idempotent: the same KRL, the file left alone.
  struct stat before {};
  ASSERT_EQ(::stat(krl.c_str(), &before), 0);
  nlohmann::json again = s.json({"maintain", "--publish-dir", s.published().string()});
  EXPECT_EQ(entry_of(again, "krls", "ca", "ops")->at("outcome"), "not due");
  EXPECT_EQ(entry_of(again, "krls", "ca", "ops")->at("version"), 2);
  struct stat after {};
  ASSERT_EQ(::stat(krl.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
}

TEST(Maintain, MarksAnExpiredCertificateOnceAndReportsThoseThatExpireSoon) {
  CaHost s("expiry");
  nlohmann::json soon = s.json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                                "ec-p256", "--cn", "soon.example.test", "--days", "10"});
  nlohmann::json later = s.json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                                 "ec-p256", "--cn", "later.example.test", "--days", "60"});
  nlohmann::json gone = s.json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                                "ec-p256", "--cn", "gone.example.test", "--days", "5"});
  // A certificate whose lifetime ended last year, as the store records it.
  {
    testing::RawDb raw(s.dir() / "keyhold.db");
    ASSERT_EQ(raw.exec("UPDATE certificates SET not_before = '2025-01-01T00:00:00Z', not_after = '2025-02-01T00:00:00Z' "
                       "WHERE serial = '" + gone["serial"].get<std::string>() + "'"),
              SQLITE_OK);
  }

  ProcessResult r = s.run({"maintain"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "certificate " + gone["serial"].get<std::string>() +
                             " of CA 'dev' (CN=gone.example.test): expired at 2025-02-01T00:00:00Z, marked expired\n"))
      << r.err;
  EXPECT_TRUE(has(r.err, "certificate " + soon["serial"].get<std::string>() +
                             " of CA 'dev' (CN=soon.example.test): expires in 9d (" + soon["not_after"].get<std::string>() +
                             ")\n"))
      << r.err;
  EXPECT_FALSE(has(r.err, later["serial"])) << r.err;
  {
    testing::RawDb raw(s.dir() / "keyhold.db");
    EXPECT_EQ(raw.integer("SELECT count(*) FROM expired_certificates"), 1);
  }
  // `ca certs --status` means what it meant: expiry judged from not_after.
  nlohmann::json expired = s.json({"ca", "certs", "--ca", "dev", "--status", "expired"});
  ASSERT_EQ(expired.size(), 1u) << expired.dump();
  EXPECT_EQ(expired[0]["serial"], gone["serial"]);

  // Marked once: the next run does not report it again; the soon one still is.
  ProcessResult again = s.run({"maintain"});
  EXPECT_FALSE(has(again.err, gone["serial"])) << again.err;
  EXPECT_TRUE(has(again.err, soon["serial"])) << again.err;
  // A narrower window leaves it out; a wider one takes the later one in.
  EXPECT_FALSE(has(s.run({"maintain", "--expiring-within", "5d"}).err, soon["serial"]));
  EXPECT_TRUE(has(s.run({"maintain", "--expiring-within", "61d"}).err, later["serial"]));

  // With --now past its end, the soon one is reported expired but not marked:
  // the clock says it has not expired, and marks are records of the store.
  ProcessResult ahead = s.run({"maintain", "--now", iso(Clock::now() + std::chrono::days(20))});
  EXPECT_EQ(ahead.exit_code, 0) << ahead.err;
  EXPECT_TRUE(has(ahead.err, "certificate " + soon["serial"].get<std::string>() +
                                 " of CA 'dev' (CN=soon.example.test): expired at " + soon["not_after"].get<std::string>() +
                                 " as of --now, not marked (the clock says it has not)\n"))
      << ahead.err;
  testing::RawDb raw(s.dir() / "keyhold.db");
  EXPECT_EQ(raw.integer("SELECT count(*) FROM expired_certificates"), 1);

  // --quiet: nothing at all when nothing failed.
  ProcessResult quiet = s.run({"maintain", "--quiet"});
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.err, "");
  EXPECT_EQ(quiet.out, "");
}

TEST(Maintain, ASecondConcurrentRunExitsAtOnceWithAMessage) {
  CaHost s("lock");
  std::string lock = (s.dir() / "keyhold.db.maintain.lock").string();
  // Held as a running keyhold maintain holds it.
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto started = std::chrono::steady_clock::now();
  ProcessResult busy = s.run({"maintain", "--quiet"});
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_EQ(busy.err, "keyhold: maintain: another keyhold maintain is running (it holds " + lock + "); nothing done\n");
  EXPECT_EQ(busy.out, "");
  // It did nothing: no CRL was published.
  {
    testing::RawDb raw(s.dir() / "keyhold.db");
    EXPECT_EQ(raw.integer("SELECT count(*) FROM published_crls"), 0);
  }
  ::close(fd);
  ProcessResult free_again = s.run({"maintain"});
  EXPECT_EQ(free_again.exit_code, 0) << free_again.err;
  EXPECT_TRUE(has(free_again.err, "published CRL")) << free_again.err;

  // Two real runs started together after a revocation: whether they overlap
  // (one says the other is running) or not (the second finds the new CRL
  // current), the CRL is published once.
  nlohmann::json issued = s.json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                                  "ec-p256", "--cn", "lock.example.test"});
  ASSERT_EQ(s.run({"ca", "revoke", "--ca", "dev", "--serial", issued["serial"].get<std::string>()}).exit_code, 0);
  std::vector<std::string> both = {"sh", "-c", "\"$@\" & \"$@\"; wait", "sh", testing::keyhold_binary(), "--config",
                                   s.config().string(), "maintain"};
  ProcessResult pair = run_process(both);
  int published = 0;
  for (std::size_t at = pair.err.find("published CRL"); at != std::string::npos; at = pair.err.find("published CRL", at + 1)) {
    ++published;
  }
  EXPECT_EQ(published, 1) << pair.err;
}

TEST(Maintain, AFailingCaDoesNotStopTheOthersAndTheStatusIs1) {
  CaHost s("failing");
  ASSERT_EQ(s.run({"ca", "init-root", "doomed", "--key-type", "ec-p256", "--subject", "CN=Doomed"}).exit_code, 0);
  ASSERT_EQ(s.run({"kek", "create", "count", "--max-encryptions", "1"}).exit_code, 0);
  std::string plaintext = (s.dir() / "plaintext").string();
  testing::write_file(plaintext, "secret");
  ASSERT_EQ(s.run({"encrypt", "--kek", "count", "--in", plaintext}).exit_code, 0);
  // Its key leaves the token behind keyhold's back.
  ProcessResult deleted = s.pkcs11_tool({"--delete-object", "--type", "privkey", "--label", "ca.doomed.v1"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.out << deleted.err;

  ProcessResult r = s.run({"maintain", "--publish-dir", s.published().string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "CRL of CA 'doomed' v1: failed: ")) << r.err;
  EXPECT_TRUE(has(r.err, "CRL of CA 'dev' v1: published CRL 1, ")) << r.err;
  EXPECT_TRUE(has(r.err, "rotated KEK 'count' to version 2: ")) << r.err;
  EXPECT_TRUE(has(r.err, "keyhold: maintain: 1 item failed; the others were done\n")) << r.err;
  EXPECT_TRUE(fs::exists(s.published_file("dev.crl")));
  EXPECT_FALSE(fs::exists(s.published_file("doomed.crl")));
  // Each failure is one line.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("CRL of CA 'doomed' v1: failed: [^\n]*\n")));

  // --quiet prints the failures only; --json reports them too.
  ProcessResult quiet = s.run({"maintain", "--quiet"});
  EXPECT_EQ(quiet.exit_code, 1);
  EXPECT_EQ(quiet.err, m.str() + "keyhold: maintain: 1 item failed; the others were done\n");
  nlohmann::json report = s.json({"maintain"}, 1);
  ASSERT_EQ(report["failures"].size(), 1u) << report.dump();
  EXPECT_EQ(report["failures"][0]["item"], "CRL of CA 'doomed' v1");
  EXPECT_EQ(entry_of(report, "crls", "ca", "doomed")->at("outcome"), "failed");
  EXPECT_EQ(dev_crl(report)["outcome"], "not due");
}

TEST(Maintain, ConfigurationAndUsageErrorsExitWith2AndDoNothing) {
  CaHost s("usage");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"maintain", "--now", "yesterday"}, "--now 'yesterday' is not an RFC 3339 time"},
      {{"maintain", "--now", "2026-02-30T00:00:00Z"}, "is not an RFC 3339 time"},
      {{"maintain", "--expiring-within", "a month"}, "--expiring-within 'a month' is not a duration"},
      {{"maintain", "--publish-dir", (s.dir() / "missing").string()}, "is not a directory"},
      {{"maintain", "--frobnicate"}, "frobnicate"},
  };
  for (const Case& c : cases) {
    ProcessResult r = s.run(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args.back() << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.says)) << r.err;
  }
  fs::path broken = s.dir() / "broken.toml";
  testing::write_file(broken.string(), read_file(s.config().string()) + "\n[pki]\nnonsense = 1\n");
  ProcessResult bad = run_process({testing::keyhold_binary(), "--config", broken.string(), "maintain"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  testing::RawDb raw(s.dir() / "keyhold.db");
  EXPECT_EQ(raw.integer("SELECT count(*) FROM published_crls"), 0);

  // --now takes offsets and fractions (RFC 3339 5.6).
  nlohmann::json offset = s.json({"maintain", "--now", "2026-01-01T01:30:00.5+01:30"});
  EXPECT_EQ(offset["now"], "2026-01-01T00:00:00Z");
}

}  // namespace
}  // namespace keyhold
