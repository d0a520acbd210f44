// keyhold renew end to end: the keyhold binary against the test binary's
// development set-up (keyhold init --dev: CA "dev", profiles server/client,
// SSH profiles user/host), checked by openssl and ssh-keygen. Time moves with
// --now, never by sleeping; crashes are made with KEYHOLD_RENEW_CRASH_AT.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "keyhold/core/error.hpp"
#include "keyhold/renew/https_client.hpp"
#include "support/dev_setup.hpp"
#include "support/process.hpp"
#include "support/serve_fixture.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using testing::expect_one_error_line;
using testing::keyhold;
using testing::path_in_setup;
using testing::ProcessOptions;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;
using testing::write_file;

// A directory of its own per test, in the set-up (removed with it).
fs::path fresh_dir(const std::string& name) {
  fs::path dir = path_in_setup("renew-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// "2026-05-01T12:00:00Z", `days` from now.
std::string days_from_now(int days) {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + std::chrono::hours(24 * days));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

// The CA warns on stderr about every certificate issued under the set-up's
// development-only profiles; those lines are dropped so that tests see renew's own.
ProcessResult without_development_warnings(ProcessResult r) {
  static const std::regex warning("keyhold: warning: profile '[a-z]+' is for development only[^\n]*\n");
  r.err = std::regex_replace(r.err, warning, "");
  return r;
}

ProcessResult renew(const fs::path& dir, std::vector<std::string> extra = {}, ProcessOptions options = {}) {
  std::vector<std::string> args = {"renew", "--renew-config", (dir / "renew.toml").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return without_development_warnings(keyhold(args, options));
}

std::string openssl_out(std::vector<std::string> argv) {
  ProcessResult r = run_process(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

std::string serial_of(const fs::path& cert) { return openssl_out({"openssl", "x509", "-noout", "-serial", "-in", cert.string()}); }
std::string certificate_key(const fs::path& cert) {
  return openssl_out({"openssl", "x509", "-noout", "-pubkey", "-in", cert.string()});
}
std::string private_key_public_part(const fs::path& key) {
  return openssl_out({"openssl", "pkey", "-pubout", "-in", key.string()});
}

// openssl's verdict on cert + chain, trusting only the dev CA.
void expect_verifies(const fs::path& cert, const fs::path& chain) {
  ProcessResult r = run_process({"openssl", "verify", "-x509_strict", "-CAfile", path_in_setup("ca.pem"), "-untrusted",
                                 chain.string(), cert.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

// The set is whole: the certificate parses, verifies with its chain, and is for the key.
void expect_consistent_set(const fs::path& dir) {
  expect_verifies(dir / "web.pem", dir / "web-chain.pem");
  EXPECT_EQ(certificate_key(dir / "web.pem"), private_key_public_part(dir / "web-key.pem"))
      << "the certificate is not for the key";
}

unsigned mode_of(const fs::path& p) {
  struct stat st{};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

int lines_of(const fs::path& p) {
  if (!fs::exists(p)) return 0;
  std::string text = read_file(p.string());
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// Files a crash or a run must not leave behind.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.find(".keyhold-") != std::string::npos) found.push_back(name);
  }
  return found;
}

std::string local_web_entry(const fs::path& dir, const std::string& extra = "") {
  return "[[certificate]]\n"
         "name = \"web\"\n"
         "kind = \"x509\"\n"
         "ca = \"dev\"\n"
         "profile = \"server\"\n"
         "names = [\"web.example.test\", \"10.0.0.5\"]\n"
         "cert = \"web.pem\"\n"
         "chain = \"web-chain.pem\"\n"
         "key = \"web-key.pem\"\n"
         "days = 100\n"
         "deploy_hook = \"echo \\\"$KEYHOLD_RENEW_NAME $KEYHOLD_RENEW_CERT $KEYHOLD_RENEW_CHAIN $KEYHOLD_RENEW_KEY\\\" >> " +
         (dir / "hook.log").string() + "\"\n" + extra;
}

TEST(RenewLocal, AHundredDayCertificateIsNotDueAtDay50IsDueAtDay70AndIsRenewed) {
  fs::path dir = fresh_dir("basic");
  write_file((dir / "renew.toml").string(), local_web_entry(dir));

  ProcessResult first = renew(dir);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("web: renewed: serial "));
  EXPECT_THAT(first.err, HasSubstr("new key (due: no certificate yet)"));
  expect_consistent_set(dir);
  EXPECT_EQ(mode_of(dir / "web-key.pem"), 0600u);
  EXPECT_EQ(mode_of(dir / "web.pem"), 0644u);
  ProcessResult dates = run_process({"openssl", "x509", "-noout", "-startdate", "-enddate", "-in", (dir / "web.pem").string()});
  ASSERT_EQ(dates.exit_code, 0);
  EXPECT_EQ(lines_of(dir / "hook.log"), 1);
  EXPECT_EQ(read_file((dir / "hook.log").string()),
            "web " + (dir / "web.pem").string() + " " + (dir / "web-chain.pem").string() + " " +
                (dir / "web-key.pem").string() + "\n");
  const std::string serial = serial_of(dir / "web.pem");
  const std::string key = private_key_public_part(dir / "web-key.pem");
  const std::string cert_text = read_file((dir / "web.pem").string());

  ProcessResult day50 = renew(dir, {"--now", days_from_now(50)});
  EXPECT_EQ(day50.exit_code, 0) << day50.err;
  EXPECT_THAT(day50.err, ::testing::ContainsRegex("^web: not due \\(expires in (50d|49d 23h)"));
  EXPECT_EQ(serial_of(dir / "web.pem"), serial);

  ProcessResult dry = renew(dir, {"--now", days_from_now(70), "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.err, ::testing::ContainsRegex(
                           "^web: due: less than a third of its lifetime \\(100d\\) is left \\(expires in (30d|29d 23h)\\)"));
  EXPECT_THAT(dry.err, HasSubstr("--dry-run: nothing changed"));
  EXPECT_EQ(serial_of(dir / "web.pem"), serial);
  EXPECT_FALSE(fs::exists(dir / "web.pem.prev"));

  ProcessResult day70 = renew(dir, {"--now", days_from_now(70)});
  ASSERT_EQ(day70.exit_code, 0) << day70.err;
  EXPECT_THAT(day70.err, StartsWith("web: renewed: serial "));
  EXPECT_THAT(day70.err, HasSubstr("(due: less than a third of its lifetime (100d) is left"));
  EXPECT_EQ(std::count(day70.err.begin(), day70.err.end(), '\n'), 1) << "one line per entry: " << day70.err;
  expect_consistent_set(dir);
  EXPECT_NE(serial_of(dir / "web.pem"), serial) << "a new serial";
  EXPECT_NE(private_key_public_part(dir / "web-key.pem"), key) << "a new key (rekey is the default)";
  EXPECT_EQ(read_file((dir / "web.pem.prev").string()), cert_text) << "the previous version is kept";
  EXPECT_EQ(private_key_public_part(dir / "web-key.pem.prev"), key);
  EXPECT_EQ(mode_of(dir / "web-key.pem"), 0600u);
  EXPECT_EQ(lines_of(dir / "hook.log"), 2) << "the hook ran once for this renewal";
  EXPECT_THAT(leftovers(dir), ::testing::IsEmpty());

  // Renewed means fresh again: the real clock finds nothing to do.
  ProcessResult after = renew(dir, {"--quiet"});
  EXPECT_EQ(after.exit_code, 0);
  EXPECT_EQ(after.err, "") << "--quiet prints failures only";
  EXPECT_EQ(lines_of(dir / "hook.log"), 2) << "no change, no hook";
}

TEST(RenewLocal, RekeyFalseKeepsTheKeyAndModesAndOwnersAreKept) {
  fs::path dir = fresh_dir("keep-key");
  write_file((dir / "renew.toml").string(), local_web_entry(dir, "rekey = false\nkey_type = \"ec-p384\"\n"));
  ASSERT_EQ(renew(dir).exit_code, 0);
  const std::string key = private_key_public_part(dir / "web-key.pem");
  EXPECT_THAT(openssl_out({"openssl", "pkey", "-noout", "-text", "-in", (dir / "web-key.pem").string()}), HasSubstr("P-384"));
  ::chmod((dir / "web.pem").c_str(), 0640);
  ::chmod((dir / "web-key.pem").c_str(), 0400);
  const bool root = ::geteuid() == 0;  // only root can give a file away
  if (root) {
    ASSERT_EQ(::chown((dir / "web.pem").c_str(), 4321, 8765), 0);
  }
  ProcessResult forced = renew(dir, {"--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_THAT(forced.err, HasSubstr("(due: forced (--force)"));
  EXPECT_THAT(forced.err, Not(HasSubstr("new key")));
  EXPECT_EQ(private_key_public_part(dir / "web-key.pem"), key);
  EXPECT_FALSE(fs::exists(dir / "web-key.pem.prev")) << "the key was not replaced";
  EXPECT_EQ(mode_of(dir / "web.pem"), 0640u) << "the mode of the file it replaced";
  if (root) {
    struct stat st{};
    ASSERT_EQ(::stat((dir / "web.pem").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 4321u) << "the owner of the file it replaced";
    EXPECT_EQ(st.st_gid, 8765u);
  }
  expect_consistent_set(dir);
}

TEST(RenewLocal, AKeyInTheTokenGetsACertificateAndItsUriInTheHook) {
  fs::path dir = fresh_dir("token-key");
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"api\"\nkind = \"x509\"\nca = \"dev\"\nprofile = \"server\"\n"
             "names = [\"api.example.test\"]\ncert = \"api.pem\"\nchain = \"api-chain.pem\"\nkey = \"token\"\n"
             "deploy_hook = \"echo \\\"$KEYHOLD_RENEW_KEY\\\" > " + (dir / "hook.log").string() + "\"\n");
  ProcessResult r = renew(dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("api: renewed: serial "));
  EXPECT_THAT(r.err, HasSubstr("its key in the token: pkcs11:"));
  expect_verifies(dir / "api.pem", dir / "api-chain.pem");
  EXPECT_THAT(read_file((dir / "hook.log").string()), StartsWith("pkcs11:"));
  EXPECT_FALSE(fs::exists(dir / "token"));
}

class RenewCrash : public ::testing::TestWithParam<std::string> {};

TEST_P(RenewCrash, AKilledRenewalLeavesAWholeSetAndTheNextRunCompletesIt) {
  const std::string step = GetParam();
  fs::path dir = fresh_dir("crash-" + step);
  write_file((dir / "renew.toml").string(), local_web_entry(dir));
  ASSERT_EQ(renew(dir).exit_code, 0);
  const std::string old_serial = serial_of(dir / "web.pem");
  ASSERT_EQ(lines_of(dir / "hook.log"), 1);

  ProcessOptions crash;
  crash.env["KEYHOLD_RENEW_CRASH_AT"] = step;
  ProcessResult killed = renew(dir, {"--force"}, crash);
  ASSERT_EQ(killed.signal, SIGKILL) << "exit " << killed.exit_code << ": " << killed.err;
  EXPECT_EQ(lines_of(dir / "hook.log"), 1) << "no hook for an unfinished renewal";

  if (step == "between-renames") {
    // The certificate is new, the chain and key not yet: the journal says how to finish.
    EXPECT_TRUE(fs::exists(dir / ".web.pem.keyhold-journal"));
    EXPECT_NE(serial_of(dir / "web.pem"), old_serial);
    ProcessResult dry = renew(dir, {"--dry-run"});
    EXPECT_EQ(dry.exit_code, 0) << dry.err;
    EXPECT_THAT(dry.err, HasSubstr("web: an interrupted renewal is pending"));
    EXPECT_TRUE(fs::exists(dir / ".web.pem.keyhold-journal")) << "--dry-run changes nothing";
  } else {
    // Nothing was renamed: the old set is in place, whole.
    expect_consistent_set(dir);
    EXPECT_EQ(serial_of(dir / "web.pem"), old_serial);
    EXPECT_FALSE(fs::exists(dir / ".web.pem.keyhold-journal"));
  }
  // Whatever the crash left, each file is complete where it is.
  for (const char* file : {"web.pem", "web-chain.pem"}) {
    EXPECT_EQ(run_process({"openssl", "x509", "-noout", "-in", (dir / file).string()}).exit_code, 0) << file;
  }
  EXPECT_EQ(run_process({"openssl", "pkey", "-noout", "-in", (dir / "web-key.pem").string()}).exit_code, 0);

  // The next ordinary run rolls forward (or cleans up) before anything else.
  ProcessResult next = renew(dir);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  expect_consistent_set(dir);
  EXPECT_THAT(leftovers(dir), ::testing::IsEmpty());
  if (step == "between-renames") {
    EXPECT_THAT(next.err, StartsWith("web: completed an interrupted renewal; not due"));
    EXPECT_NE(serial_of(dir / "web.pem"), old_serial);
    EXPECT_EQ(lines_of(dir / "hook.log"), 2) << "the hook runs once the set is complete";
  } else {
    EXPECT_THAT(next.err, StartsWith("web: not due"));
    EXPECT_EQ(serial_of(dir / "web.pem"), old_serial);
    EXPECT_EQ(lines_of(dir / "hook.log"), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(EachStep, RenewCrash, ::testing::Values("before-temp-write", "after-temp-write", "between-renames"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(RenewLock, ASecondConcurrentRunExitsAtOnceAndNothingIsRenewedTwice) {
  fs::path dir = fresh_dir("lock");
  // The first run's hook holds it inside the lock until the test lets it go.
  std::string hook = "echo ran >> " + (dir / "hook.log").string() + "; touch " + (dir / "started").string() +
                     "; i=0; while [ ! -e " + (dir / "release").string() +
                     " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"web\"\nkind = \"x509\"\nca = \"dev\"\nprofile = \"server\"\n"
             "names = [\"web.example.test\"]\ncert = \"web.pem\"\nchain = \"web-chain.pem\"\nkey = \"web-key.pem\"\n"
             "deploy_hook = \"" + hook + "\"\n");
  ProcessResult first;
  std::thread runner([&] { first = renew(dir); });
  for (int i = 0; i < 600 && !fs::exists(dir / "started"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(dir / "started"));
  const std::string serial = serial_of(dir / "web.pem");

  ProcessResult second = renew(dir, {"--force"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_EQ(second.err, "keyhold: renew: another keyhold renew is running (it holds " + (dir / "renew.toml.lock").string() +
                            "); this run renewed nothing\n");
  EXPECT_EQ(serial_of(dir / "web.pem"), serial);

  write_file((dir / "release").string(), "");
  runner.join();
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.err, StartsWith("web: renewed: "));
  EXPECT_EQ(lines_of(dir / "hook.log"), 1);
  EXPECT_EQ(serial_of(dir / "web.pem"), serial);
  EXPECT_FALSE(fs::exists(dir / "web.pem.prev")) << "renewed once";

  ProcessResult third = renew(dir);
  EXPECT_EQ(third.exit_code, 0);
  EXPECT_THAT(third.err, StartsWith("web: not due"));
}

TEST(RenewFailures, OneUnreachableServerDoesNotStopTheOthersAndExitsOne) {
  fs::path dir = fresh_dir("unreachable");
  // A current certificate and key to present (the set-up's admin identity), and a server that is not there.
  fs::copy_file(path_in_setup("admin.pem"), dir / "remote.pem");
  fs::copy_file(path_in_setup("admin-key.pem"), dir / "remote-key.pem");
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"remote\"\nkind = \"x509\"\nserver = \"https://127.0.0.1:1\"\n"
             "trust = \"" + path_in_setup("ca.pem") + "\"\nca = \"dev\"\ncert = \"remote.pem\"\nkey = \"remote-key.pem\"\n"
             "deploy_hook = \"echo remote >> " + (dir / "hook.log").string() + "\"\n\n" + local_web_entry(dir));
  const std::string remote_cert = read_file((dir / "remote.pem").string());
  ProcessResult r = renew(dir, {"--force"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("remote: failed: cannot connect to 127.0.0.1:1: Connection refused\n"));
  EXPECT_THAT(r.err, HasSubstr("web: renewed: "));
  EXPECT_EQ(read_file((dir / "remote.pem").string()), remote_cert);
  EXPECT_EQ(lines_of(dir / "hook.log"), 1) << "only the entry that changed ran its hook";
  expect_consistent_set(dir);

  ProcessResult quiet = renew(dir, {"--force", "--quiet"});
  EXPECT_EQ(quiet.exit_code, 1);
  EXPECT_EQ(quiet.err, "remote: failed: cannot connect to 127.0.0.1:1: Connection refused\n");
}

TEST(RenewFailures, AFailingHookIsReportedAndTheRenewalStays) {
  fs::path dir = fresh_dir("bad-hook");
  std::string text = local_web_entry(dir);
  text = std::regex_replace(text, std::regex("deploy_hook = .*\n"), "deploy_hook = \"exit 3\"\n");
  write_file((dir / "renew.toml").string(), text);
  ProcessResult r = renew(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("web: renewed, but the deploy hook failed (exit 3): serial "));
  expect_consistent_set(dir);
  EXPECT_THAT(renew(dir).err, StartsWith("web: not due")) << "the renewal was not undone";
}

TEST(RenewRemote, AnExpiredCertificateCannotRenewItselfAndSaysHowToReEnrol) {
  fs::path dir = fresh_dir("expired");
  fs::copy_file(path_in_setup("admin.pem"), dir / "client.pem");
  fs::copy_file(path_in_setup("admin-key.pem"), dir / "client-key.pem");
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"client\"\nkind = \"x509\"\nserver = \"https://127.0.0.1:1\"\n"
             "trust = \"" + path_in_setup("ca.pem") + "\"\nca = \"dev\"\ncert = \"client.pem\"\nkey = \"client-key.pem\"\n");
  ProcessResult r = renew(dir, {"--now", days_from_now(400)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::MatchesRegex(
                         "client: failed: the certificate .*/client.pem expired at [-0-9T:]+Z: it cannot renew itself; "
                         "enrol again with `keyhold ca issue` on the CA host or get a new certificate from your CA "
                         "operator\n"));
}

// ---- SSH -----------------------------------------------------------------------

std::string ssh_entries(const fs::path& dir, const std::string& user_extra = "") {
  return "[[certificate]]\nname = \"alice\"\nkind = \"ssh-user\"\nca = \"renew-users\"\nprincipals = [\"alice\", \"deploy\"]\n"
         "key_id = \"alice@example.test\"\nkey = \"id_alice\"\nvalidity = \"24h\"\n" + user_extra +
         "deploy_hook = \"echo alice >> " + (dir / "hook.log").string() + "\"\n\n"
         "[[certificate]]\nname = \"host\"\nkind = \"ssh-host\"\nca = \"renew-hosts\"\n"
         "principals = [\"host.example.test\"]\nkey = \"ssh_host_key\"\ncert = \"ssh_host_key-cert.pub\"\n"
         "key_type = \"ecdsa-p256\"\ndeploy_hook = \"echo host >> " + (dir / "hook.log").string() + "\"\n";
}

void make_ssh_cas() {
  static bool made = false;
  if (made) return;
  ASSERT_EQ(keyhold({"ssh", "init-ca", "renew-users", "--key-type", "ed25519"}).exit_code, 0);
  ASSERT_EQ(keyhold({"ssh", "init-ca", "renew-hosts", "--key-type", "ec-p256"}).exit_code, 0);
  made = true;
}

std::string ssh_keygen_l(const fs::path& cert) {
  ProcessResult r = run_process({"ssh-keygen", "-L", "-f", cert.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

std::string fingerprint(const fs::path& pub) {
  ProcessResult r = run_process({"ssh-keygen", "-l", "-f", pub.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(r.out.find(' ') + 1, r.out.find(' ', r.out.find(' ') + 1) - r.out.find(' ') - 1);
}

TEST(RenewSsh, UserAndHostCertificatesAreRenewedTheSameWayAndAcceptedBySshKeygen) {
  make_ssh_cas();
  fs::path dir = fresh_dir("ssh");
  write_file((dir / "renew.toml").string(), ssh_entries(dir));
  ProcessResult first = renew(dir);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("alice: renewed: serial "));
  EXPECT_THAT(first.err, HasSubstr("host: renewed: serial "));

  std::string user = ssh_keygen_l(dir / "id_alice-cert.pub");
  EXPECT_THAT(user, HasSubstr("Type: ssh-ed25519-cert-v01@openssh.com user certificate"));
  EXPECT_THAT(user, HasSubstr("Key ID: \"alice@example.test\""));
  EXPECT_THAT(user, ::testing::ContainsRegex("Principals: \n +alice\n +deploy\n"));
  EXPECT_THAT(user, HasSubstr(fingerprint(dir / "id_alice.pub"))) << "certifies the new key";
  EXPECT_EQ(mode_of(dir / "id_alice"), 0600u);
  std::string host = ssh_keygen_l(dir / "ssh_host_key-cert.pub");
  EXPECT_THAT(host, HasSubstr("Type: ecdsa-sha2-nistp256-cert-v01@openssh.com host certificate"));
  EXPECT_THAT(host, HasSubstr("host.example.test"));
  EXPECT_THAT(host, HasSubstr(fingerprint(dir / "ssh_host_key.pub")));
  EXPECT_EQ(lines_of(dir / "hook.log"), 2);

  const std::string alice_key = fingerprint(dir / "id_alice.pub");
  const std::string host_key = fingerprint(dir / "ssh_host_key.pub");
  const std::string host_cert = read_file((dir / "ssh_host_key-cert.pub").string());

  // 24 hours for the user (expired a day later), the host profile's 30 days (due after 20).
  ProcessResult day1 = renew(dir, {"--now", days_from_now(1)});
  ASSERT_EQ(day1.exit_code, 0) << day1.err;
  EXPECT_THAT(day1.err, HasSubstr("alice: renewed: "));
  EXPECT_THAT(day1.err, ::testing::ContainsRegex("host: not due \\(expires in (29d|28d 23h)"));
  EXPECT_NE(fingerprint(dir / "id_alice.pub"), alice_key) << "a new key";
  EXPECT_THAT(ssh_keygen_l(dir / "id_alice-cert.pub"), HasSubstr(fingerprint(dir / "id_alice.pub")));
  EXPECT_EQ(read_file((dir / "ssh_host_key-cert.pub").string()), host_cert);

  ProcessResult day25 = renew(dir, {"--now", days_from_now(25), "--quiet"});
  EXPECT_EQ(day25.exit_code, 0) << day25.err;
  EXPECT_NE(read_file((dir / "ssh_host_key-cert.pub").string()), host_cert);
  EXPECT_EQ(read_file((dir / "ssh_host_key-cert.pub.prev").string()), host_cert);
  EXPECT_NE(fingerprint(dir / "ssh_host_key.pub"), host_key);
  EXPECT_THAT(ssh_keygen_l(dir / "ssh_host_key-cert.pub"), HasSubstr(fingerprint(dir / "ssh_host_key.pub")));
  EXPECT_THAT(leftovers(dir), ::testing::IsEmpty());
}

TEST(RenewSsh, RekeyFalseKeepsTheUsersOwnKey) {
  make_ssh_cas();
  fs::path dir = fresh_dir("ssh-keep");
  ASSERT_EQ(run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir / "id_alice").string()}).exit_code, 0);
  const std::string key = fingerprint(dir / "id_alice.pub");
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"alice\"\nkind = \"ssh-user\"\nca = \"renew-users\"\nprincipals = [\"alice\"]\n"
             "key = \"id_alice\"\nrekey = false\n");
  ProcessResult r = renew(dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(ssh_keygen_l(dir / "id_alice-cert.pub"), HasSubstr(key));
  EXPECT_EQ(fingerprint(dir / "id_alice.pub"), key);
  EXPECT_THAT(ssh_keygen_l(dir / "id_alice-cert.pub"), HasSubstr("Key ID: \"alice\"")) << "the entry name by default";
}

// ---- The renewal file and the command line ---------------------------------------

TEST(RenewConfiguration, BadFilesAndArgumentsGetOneLineAndExitTwo) {
  fs::path dir = fresh_dir("bad");
  struct Case {
    std::string text;
    std::vector<std::string> extra;
    std::string message;
  };
  const std::string file = (dir / "renew.toml").string();
  const std::vector<Case> cases = {
      {"[[certificate]]\nname = \"web\"\nkind = \"x509\"\ncolour = \"blue\"\n", {}, file + ":4: unknown key 'colour'"},
      {local_web_entry(dir) + "\n" + local_web_entry(dir), {}, file + ":13: duplicate entry name 'web' (first at line 1)"},
      {local_web_entry(dir) + "renew_before = 10\n", {}, file + ":12: 'renew_before' must be a string, not an integer"},
      {"not toml at all\n", {}, file + ":1: "},
      {local_web_entry(dir), {"--now", "tomorrow"}, "--now takes an RFC 3339 time"},
      {local_web_entry(dir), {"mail"}, "no entry 'mail' in " + file},
      {local_web_entry(dir), {"--frobnicate"}, "unrecognised option '--frobnicate'"},
  };
  for (const Case& c : cases) {
    write_file(file, c.text);
    ProcessResult r = renew(dir, c.extra);
    EXPECT_EQ(r.exit_code, 2) << c.text << r.err;
    expect_one_error_line(r);
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.text;
    EXPECT_FALSE(fs::exists(dir / "web.pem")) << "nothing was renewed";
  }
  ProcessResult missing = keyhold({"renew", "--renew-config", (dir / "absent.toml").string()});
  EXPECT_EQ(missing.exit_code, 2);
  expect_one_error_line(missing);
  EXPECT_THAT(missing.err, HasSubstr("no renewal file " + (dir / "absent.toml").string()));
}

TEST(RenewConfiguration, NamedEntriesOnlyAndJsonOutput) {
  fs::path dir = fresh_dir("named");
  write_file((dir / "renew.toml").string(),
             local_web_entry(dir) + "\n[[certificate]]\nname = \"other\"\nkind = \"x509\"\nca = \"dev\"\nprofile = \"server\"\n"
                                    "names = [\"other.example.test\"]\ncert = \"other.pem\"\nkey = \"other-key.pem\"\n");
  ProcessResult r =
      without_development_warnings(keyhold({"--json", "renew", "--renew-config", (dir / "renew.toml").string(), "other"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, StartsWith("other: renewed: "));
  EXPECT_FALSE(fs::exists(dir / "web.pem"));
  nlohmann::json out = nlohmann::json::parse(r.out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["name"], "other");
  EXPECT_EQ(out[0]["status"], "renewed");
  EXPECT_EQ(out[0]["changed"], true);
}

// ---- Remote renewal against a stand-in server ----------------------------------------
// Until keyhold serve has the renewal routes, the client side is checked
// against a small TLS server of this test that requires a client
// certificate and answers as the contract says (docs/renewal.md), issuing
// through the keyhold command on the CA host.

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

// A server certificate for 127.0.0.1 whose key is a file (made once).
void make_stand_in_identity() {
  static bool made = false;
  if (made) return;
  std::string key = path_in_setup("stand-in-key.pem"), csr = path_in_setup("stand-in.csr");
  ASSERT_EQ(run_process({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                         key, "-subj", "/CN=localhost", "-out", csr})
                .exit_code,
            0);
  ProcessResult r = keyhold({"ca", "issue", "--ca", "dev", "--profile", "server", "--csr", csr, "--san", "dns:localhost,ip:127.0.0.1",
                             "--out", path_in_setup("stand-in.pem")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  made = true;
}

struct StandInRequest {
  std::string method, path, content_type, body;
  std::string client_subject;  // of the certificate the client presented
};
struct StandInReply {
  int status = 200;
  nlohmann::json body;
};

class StandInServer {
 public:
  using Handler = std::function<StandInReply(const StandInRequest&)>;

  explicit StandInServer(Handler handler) : handler_(std::move(handler)), ctx_(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free) {
    make_stand_in_identity();
    SSL_CTX_use_certificate_chain_file(ctx_.get(), path_in_setup("stand-in.pem").c_str());
    SSL_CTX_use_PrivateKey_file(ctx_.get(), path_in_setup("stand-in-key.pem").c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_load_verify_locations(ctx_.get(), path_in_setup("ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // As the issue asks of keyhold serve for renewal: a current certificate whose
    // extended key usage is serverAuth only is accepted as a client certificate.
    SSL_CTX_set_purpose(ctx_.get(), X509_PURPOSE_ANY);
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::listen(listener_, 8);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    url_ = "https://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
    thread_ = std::thread([this] { serve(); });
  }
  ~StandInServer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  const std::string& url() const { return url_; }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_.get());
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) answer(ssl);
      SSL_shutdown(ssl);
      SSL_free(ssl);
      ::close(fd);
    }
  }

  void answer(SSL* ssl) {
    std::string data;
    char buffer[16384];
    std::size_t header_end = std::string::npos, length = 0;
    while (true) {
      if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
        std::smatch m;
        std::string head = data.substr(0, header_end);
        if (std::regex_search(head, m, std::regex("Content-Length: ([0-9]+)", std::regex::icase))) length = std::stoul(m[1]);
        header_end += 4;
      }
      if (header_end != std::string::npos && data.size() >= header_end + length) break;
      int n = SSL_read(ssl, buffer, sizeof buffer);
      if (n <= 0) return;
      data.append(buffer, static_cast<std::size_t>(n));
    }
    ++requests_;
    StandInRequest request;
    std::string head = data.substr(0, header_end);
    request.method = head.substr(0, head.find(' '));
    request.path = head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1);
    std::smatch m;
    if (std::regex_search(head, m, std::regex("Content-Type: ([^\r]+)", std::regex::icase))) request.content_type = m[1];
    request.body = data.substr(header_end, length);
    if (X509* peer = SSL_get1_peer_certificate(ssl)) {
      char name[256];
      X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
      request.client_subject = name;
      X509_free(peer);
    }
    StandInReply reply = handler_(request);
    std::string body = reply.body.dump();
    std::string response = "HTTP/1.1 " + std::to_string(reply.status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    SSL_write(ssl, response.data(), static_cast<int>(response.size()));
  }

  Handler handler_;
  SslCtxPtr ctx_;
  int listener_ = -1;
  std::string url_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

// What the contract's X.509 renewal answers: the CSR issued on the CA host for `names`.
StandInReply issue_x509(const StandInRequest& request, const std::string& san, const fs::path& work) {
  nlohmann::json body = nlohmann::json::parse(request.body);
  write_file((work / "request.csr").string(), body["csr"].get<std::string>());
  ProcessResult r = without_development_warnings(keyhold({"--json", "ca", "issue", "--ca", "dev", "--profile", "server", "--csr",
                                                          (work / "request.csr").string(), "--san", san, "--days", "30"}));
  if (r.exit_code != 0) return {400, {{"error", {{"code", "invalid_argument"}, {"message", r.err}}}}};
  nlohmann::json issued = nlohmann::json::parse(r.out);
  return {200, {{"certificate", issued["certificate"]}, {"chain", issued["chain"]}, {"serial", issued["serial"]},
                {"not_after", issued["not_after"]}}};
}

// A machine enrolled by the operator: web.example.test, 30 days, its key a file.
void enrol_web(const fs::path& dir) {
  ASSERT_EQ(run_process({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                         (dir / "web-key.pem").string(), "-subj", "/CN=web.example.test", "-out", (dir / "web.csr").string()})
                .exit_code,
            0);
  ProcessResult enrol = keyhold({"ca", "issue", "--ca", "dev", "--profile", "server", "--csr", (dir / "web.csr").string(), "--san",
                                 "dns:web.example.test,ip:10.0.0.5", "--days", "30", "--out", (dir / "web.pem").string(),
                                 "--chain-out", (dir / "web-chain.pem").string()});
  ASSERT_EQ(enrol.exit_code, 0) << enrol.err;
  ::chmod((dir / "web-key.pem").c_str(), 0600);
}

std::string remote_web_entry(const fs::path& dir, const std::string& url, const std::string& extra = "") {
  return "[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"" + url + "\"\ntrust = \"" + path_in_setup("ca.pem") +
         "\"\nca = \"dev\"\nprofile = \"server\"\ncert = \"web.pem\"\nchain = \"web-chain.pem\"\nkey = \"web-key.pem\"\n"
         "deploy_hook = \"echo ran >> " + (dir / "hook.log").string() + "\"\n" + extra;
}

TEST(RenewRemoteClient, RenewsTheSameIdentityWithANewKeyOverMutualTls) {
  fs::path dir = fresh_dir("stand-in");
  enrol_web(dir);
  StandInRequest seen;
  StandInServer server([&](const StandInRequest& request) {
    seen = request;
    return issue_x509(request, "dns:web.example.test,ip:10.0.0.5", dir);
  });
  write_file((dir / "renew.toml").string(), remote_web_entry(dir, server.url(), "names = [\"10.0.0.5\", \"web.example.test\"]\n"));
  const std::string serial = serial_of(dir / "web.pem");
  const std::string key = private_key_public_part(dir / "web-key.pem");

  ProcessResult early = renew(dir, {"--now", days_from_now(15)});
  EXPECT_EQ(early.exit_code, 0);
  EXPECT_THAT(early.err, ::testing::ContainsRegex("^web: not due \\(expires in 1[45]d"));
  EXPECT_EQ(server.requests(), 0);

  ProcessResult r = renew(dir, {"--now", days_from_now(25)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, StartsWith("web: renewed: serial "));
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.path, "/v1/pki/dev/renew");
  EXPECT_EQ(seen.content_type, "application/json");
  EXPECT_EQ(seen.client_subject, "/CN=web.example.test") << "authenticated with the current certificate";
  nlohmann::json request = nlohmann::json::parse(seen.body);
  EXPECT_EQ(request.size(), 1u) << "only the CSR: the key never leaves the machine";
  write_file((dir / "sent.csr").string(), request["csr"].get<std::string>());
  std::string csr = openssl_out({"openssl", "req", "-noout", "-text", "-verify", "-in", (dir / "sent.csr").string()});
  EXPECT_THAT(csr, HasSubstr("Subject: CN = web.example.test"));
  EXPECT_THAT(csr, HasSubstr("DNS:web.example.test, IP Address:10.0.0.5"));
  EXPECT_EQ(openssl_out({"openssl", "req", "-noout", "-pubkey", "-in", (dir / "sent.csr").string()}),
            private_key_public_part(dir / "web-key.pem"))
      << "the CSR is for the new key, now in place";

  expect_consistent_set(dir);
  EXPECT_NE(serial_of(dir / "web.pem"), serial);
  EXPECT_NE(private_key_public_part(dir / "web-key.pem"), key);
  EXPECT_EQ(private_key_public_part(dir / "web-key.pem.prev"), key);
  EXPECT_EQ(mode_of(dir / "web-key.pem"), 0600u);
  EXPECT_EQ(lines_of(dir / "hook.log"), 1);
}

TEST(RenewRemoteClient, TheServersRefusalIsTheEntrysFailureAndNothingChanges) {
  fs::path dir = fresh_dir("stand-in-refusal");
  enrol_web(dir);
  StandInServer server([](const StandInRequest&) {
    return StandInReply{403, {{"error", {{"code", "permission_denied"}, {"message", "the policy does not allow this renewal"}}}}};
  });
  write_file((dir / "renew.toml").string(), remote_web_entry(dir, server.url()));
  const std::string before = read_file((dir / "web.pem").string()) + read_file((dir / "web-key.pem").string());
  ProcessResult r = renew(dir, {"--force"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "web: failed: the policy does not allow this renewal (HTTP 403 permission_denied)\n");
  EXPECT_EQ(read_file((dir / "web.pem").string()) + read_file((dir / "web-key.pem").string()), before);
  EXPECT_THAT(leftovers(dir), ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(dir / "hook.log"));
}

TEST(RenewRemoteClient, ACertificateForAnotherIdentityIsNotInstalled) {
  fs::path dir = fresh_dir("stand-in-other");
  enrol_web(dir);
  StandInServer server([&](const StandInRequest& request) { return issue_x509(request, "dns:other.example.test", dir); });
  write_file((dir / "renew.toml").string(), remote_web_entry(dir, server.url()));
  const std::string before = read_file((dir / "web.pem").string());
  ProcessResult r = renew(dir, {"--force"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("web: failed: the server returned a certificate for CN=web.example.test [10.0.0.5, "
                                "other.example.test, web.example.test], not for CN=web.example.test [10.0.0.5, "
                                "web.example.test]; nothing was installed"));
  EXPECT_EQ(read_file((dir / "web.pem").string()), before);
}

TEST(RenewRemoteClient, AnSshCertificateIsRenewedWithTheTlsIdentityOfTheMachine) {
  make_ssh_cas();
  fs::path dir = fresh_dir("stand-in-ssh");
  ASSERT_EQ(run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir / "host_key").string()}).exit_code, 0);
  ASSERT_EQ(keyhold({"ssh", "sign", "--ca", "renew-hosts", "--public-key", (dir / "host_key.pub").string(), "--type", "host",
                     "--key-id", "host.example.test", "--principals", "host.example.test", "--out",
                     (dir / "host_key-cert.pub").string()})
                .exit_code,
            0);
  StandInRequest seen;
  StandInServer server([&](const StandInRequest& request) {
    seen = request;
    nlohmann::json body = nlohmann::json::parse(request.body);
    write_file((dir / "sent.pub").string(), body["public_key"].get<std::string>() + "\n");
    ProcessResult r = keyhold({"--json", "ssh", "sign", "--ca", "renew-hosts", "--public-key", (dir / "sent.pub").string(),
                               "--type", "host", "--key-id", "host.example.test", "--principals", "host.example.test"});
    nlohmann::json signed_certificate = nlohmann::json::parse(r.out);
    return StandInReply{200, {{"certificate", signed_certificate["certificate"]}, {"serial", signed_certificate["serial"]}}};
  });
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"host\"\nkind = \"ssh-host\"\nserver = \"" + server.url() + "\"\ntrust = \"" +
                 path_in_setup("ca.pem") + "\"\nca = \"renew-hosts\"\nkey = \"host_key\"\ntls_cert = \"" +
                 path_in_setup("admin.pem") + "\"\ntls_key = \"" + path_in_setup("admin-key.pem") + "\"\n");
  const std::string old_key = fingerprint(dir / "host_key.pub");
  const std::string old_cert = read_file((dir / "host_key-cert.pub").string());
  ProcessResult r = renew(dir, {"--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(seen.path, "/v1/ssh/renew-hosts/renew");
  EXPECT_EQ(seen.client_subject, "/CN=admin");
  nlohmann::json request = nlohmann::json::parse(seen.body);
  EXPECT_EQ(request["certificate"].get<std::string>() + "\n", old_cert);
  EXPECT_EQ(request["public_key"].get<std::string>() + "\n", read_file((dir / "host_key.pub").string()));
  std::string listing = ssh_keygen_l(dir / "host_key-cert.pub");
  EXPECT_THAT(listing, HasSubstr("host certificate"));
  EXPECT_THAT(listing, HasSubstr(fingerprint(dir / "host_key.pub")));
  EXPECT_NE(fingerprint(dir / "host_key.pub"), old_key);
}

// ---- Remote renewal against keyhold serve -------------------------------------------

// The HTTPS client of remote renewal against the real server: mTLS both
// ways, JSON in and out, the server's certificate checked against trust.
TEST(RenewHttpsClient, TalksMutualTlsToKeyholdServe) {
  auto server = testing::ServeProcess::start(testing::DevSetup::get().config);
  renew::HttpsUrl url = *renew::parse_https_url(server->url());
  renew::ClientTls tls{path_in_setup("ca.pem"), path_in_setup("admin.pem"), std::nullopt, path_in_setup("admin-key.pem")};

  fs::path dir = fresh_dir("client");
  ASSERT_EQ(run_process({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                         (dir / "k.pem").string(), "-subj", "/CN=client.example.test", "-addext",
                         "subjectAltName=DNS:client.example.test", "-out", (dir / "r.csr").string()})
                .exit_code,
            0);
  nlohmann::json body = {{"profile", "server"}, {"csr", read_file((dir / "r.csr").string())}};
  renew::HttpsResponse issued = renew::post_json(url, "/v1/pki/dev/issue", body.dump(), tls);
  EXPECT_EQ(issued.status, 200) << issued.body;
  EXPECT_THAT(nlohmann::json::parse(issued.body)["certificate"].get<std::string>(), StartsWith("-----BEGIN CERTIFICATE-----"));

  renew::HttpsResponse refused = renew::post_json(url, "/v1/pki/no-such-ca/issue", body.dump(), tls);
  EXPECT_GE(refused.status, 400);
  EXPECT_TRUE(nlohmann::json::parse(refused.body)["error"]["message"].is_string()) << refused.body;

  // A server whose certificate does not chain to `trust` is refused in the handshake.
  renew::ClientTls wrong = tls;
  wrong.trust = path_in_setup("admin-key.pem");
  EXPECT_THROW(renew::post_json(url, "/v1/health", "", wrong), Error);
  ASSERT_EQ(run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", (dir / "other-ca-key.pem").string(), "-subj", "/CN=Other CA", "-out",
                         (dir / "other-ca.pem").string()})
                .exit_code,
            0);
  wrong.trust = dir / "other-ca.pem";
  try {
    renew::post_json(url, "/v1/health", "", wrong);
    ADD_FAILURE() << "a server that does not chain to the trust file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
    EXPECT_THAT(e.what(), HasSubstr("does not verify against the trust file"));
  }
}

// Whether the server has the renewal routes yet (they are built separately).
bool has_renewal_route(const testing::ServeProcess& server) {
  testing::HttpReply reply = testing::reply_of(testing::curl(testing::admin_identity(), server.url() + "/v1/pki/dev/renew",
                                                             {"-X", "POST", "-H", "Content-Type: application/json", "--data", "{}"}));
  return reply.status != 404;
}

// The set-up's configuration with a policy that also lets the machine
// web.example.test renew itself (the development policy allows only admin).
fs::path renewal_policy_config() {
  std::string policy = read_file(path_in_setup("policy.toml")) +
                       "\n[[rule]]\nname = \"machines-renew-themselves\"\nidentities = [\"web.example.test\"]\n"
                       "operations = [\"pki.renew\"]\nresources = [\"ca:dev\"]\n";
  write_file(path_in_setup("renew-policy.toml"), policy);
  return testing::config_variant("renew-serve", "policy_file = \"policy.toml\"", "policy_file = \"renew-policy.toml\"");
}

TEST(RenewRemote, ACurrentCertificateRenewsItselfThroughKeyholdServe) {
  auto server = testing::ServeProcess::start(renewal_policy_config());
  if (!has_renewal_route(*server)) GTEST_SKIP() << "keyhold serve has no POST /v1/pki/{ca}/renew yet";
  fs::path dir = fresh_dir("remote");
  // Enrolment: a certificate issued on the CA host, as an operator would.
  ASSERT_EQ(run_process({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                         (dir / "web-key.pem").string(), "-subj", "/CN=web.example.test", "-out", (dir / "web.csr").string()})
                .exit_code,
            0);
  ProcessResult enrol = keyhold({"ca", "issue", "--ca", "dev", "--profile", "server", "--csr", (dir / "web.csr").string(),
                                 "--san", "dns:web.example.test", "--days", "30", "--out", (dir / "web.pem").string(),
                                 "--chain-out", (dir / "web-chain.pem").string()});
  ASSERT_EQ(enrol.exit_code, 0) << enrol.err;
  ::chmod((dir / "web-key.pem").c_str(), 0600);
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"web\"\nkind = \"x509\"\nserver = \"" + server->url() + "\"\ntrust = \"" +
                 path_in_setup("ca.pem") + "\"\nca = \"dev\"\nprofile = \"server\"\nnames = [\"web.example.test\"]\n"
                 "cert = \"web.pem\"\nchain = \"web-chain.pem\"\nkey = \"web-key.pem\"\n"
                 "deploy_hook = \"echo ran >> " + (dir / "hook.log").string() + "\"\n");
  const std::string serial = serial_of(dir / "web.pem");
  const std::string key = private_key_public_part(dir / "web-key.pem");
  ProcessResult r = renew(dir, {"--now", days_from_now(25)});
  ASSERT_EQ(r.exit_code, 0) << r.err << server->err();
  EXPECT_THAT(r.err, StartsWith("web: renewed: serial "));
  expect_consistent_set(dir);
  EXPECT_NE(serial_of(dir / "web.pem"), serial);
  EXPECT_NE(private_key_public_part(dir / "web-key.pem"), key);
  EXPECT_EQ(lines_of(dir / "hook.log"), 1);
  EXPECT_THAT(openssl_out({"openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", (dir / "web.pem").string()}),
              HasSubstr("DNS:web.example.test"));
}

TEST(RenewRemote, AnSshHostCertificateRenewsThroughKeyholdServe) {
  make_ssh_cas();
  auto server = testing::ServeProcess::start(testing::DevSetup::get().config);
  testing::HttpReply probe = testing::reply_of(testing::curl(
      testing::admin_identity(), server->url() + "/v1/ssh/renew-hosts/renew",
      {"-X", "POST", "-H", "Content-Type: application/json", "--data", "{}"}));
  if (probe.status == 404) GTEST_SKIP() << "keyhold serve has no POST /v1/ssh/{ca}/renew yet";
  fs::path dir = fresh_dir("remote-ssh");
  ASSERT_EQ(run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir / "host_key").string()}).exit_code, 0);
  ASSERT_EQ(keyhold({"ssh", "sign", "--ca", "renew-hosts", "--public-key", (dir / "host_key.pub").string(), "--type", "host",
                     "--key-id", "host.example.test", "--principals", "host.example.test", "--out",
                     (dir / "host_key-cert.pub").string()})
                .exit_code,
            0);
  write_file((dir / "renew.toml").string(),
             "[[certificate]]\nname = \"host\"\nkind = \"ssh-host\"\nserver = \"" + server->url() + "\"\ntrust = \"" +
                 path_in_setup("ca.pem") + "\"\nca = \"renew-hosts\"\nkey = \"host_key\"\ntls_cert = \"" +
                 path_in_setup("admin.pem") + "\"\ntls_key = \"" + path_in_setup("admin-key.pem") + "\"\n");
  const std::string old_cert = read_file((dir / "host_key-cert.pub").string());
  ProcessResult r = renew(dir, {"--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err << server->err();
  EXPECT_NE(read_file((dir / "host_key-cert.pub").string()), old_cert);
  std::string listing = ssh_keygen_l(dir / "host_key-cert.pub");
  EXPECT_THAT(listing, HasSubstr("host certificate"));
  EXPECT_THAT(listing, HasSubstr(fingerprint(dir / "host_key.pub")));
}

}  // namespace
}  // namespace keyhold
