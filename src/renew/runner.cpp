#include "keyhold/renew/runner.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "keyhold/core/error.hpp"
#include "keyhold/core/text.hpp"
#include "keyhold/renew/file_set.hpp"
#include "keyhold/renew/https_client.hpp"
#include "keyhold/renew/material.hpp"
#include "spawn.hpp"

namespace keyhold::renew {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr std::size_t kMaxFileBytes = 256 * 1024;

std::string format_time(TimePoint t) {
  std::time_t time = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&time, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

SecretBytes secret(std::string_view text) {
  return SecretBytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

SecretBytes read_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) throw Error(ErrorCode::FailedPrecondition, "cannot read the " + std::string(what) + " " + path.string() + ": " + ec.message());
  if (size > kMaxFileBytes) throw Error(ErrorCode::FailedPrecondition, "the " + std::string(what) + " " + path.string() + " is larger than 256 KiB");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::FailedPrecondition, "cannot read the " + std::string(what) + " " + path.string() + ": " + std::strerror(errno));
  SecretBytes content(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::read(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  content.truncate(done);
  return content;
}

std::string read_text(const fs::path& path, std::string_view what) { return std::string(read_file(path, what).as_string()); }

bool file_exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// The files an entry's run may replace.
std::vector<fs::path> targets_of(const Entry& entry) {
  std::vector<fs::path> targets = {entry.cert};
  if (entry.chain) targets.push_back(*entry.chain);
  if (entry.key) {
    targets.push_back(*entry.key);
    if (entry.ssh()) targets.push_back(entry.key->string() + ".pub");
  }
  return targets;
}

std::string key_type_of(const Entry& entry) { return entry.key_type ? *entry.key_type : key_types_for(entry.kind).front(); }

std::string names_text(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return "[" + out + "]";
}

bool same_names(std::vector<std::string> a, std::vector<std::string> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

// ---- Remote ------------------------------------------------------------------

[[noreturn]] void expired(const std::string& what, TimePoint not_after, const std::string& how) {
  throw Error(ErrorCode::FailedPrecondition, what + " expired at " + format_time(not_after) +
                                                 ": it cannot renew itself; " + how);
}

const std::string kReenrolX509 =
    "enrol again with `keyhold ca issue` on the CA host or get a new certificate from your CA operator";
const std::string kReenrolSsh =
    "have a new one signed with `keyhold ssh sign` on the CA host or by your CA operator";

// POSTs to the entry's server and returns the JSON object of a 200 answer;
// any other answer becomes an error with the server's message.
Json call(const Entry& entry, const std::string& path, const Json& body, const ClientTls& tls) {
  std::optional<HttpsUrl> url = parse_https_url(*entry.server);
  if (!url) throw Error(ErrorCode::InvalidArgument, "bad server URL " + *entry.server);
  HttpsResponse response = post_json(*url, path, body.dump(), tls);
  Json answer = Json::parse(response.body, nullptr, false);
  if (response.status != 200) {
    std::string message, code;
    if (answer.is_object() && answer.contains("error") && answer["error"].is_object()) {
      const Json& error = answer["error"];
      if (error.contains("message") && error["message"].is_string()) message = error["message"].get<std::string>();
      if (error.contains("code") && error["code"].is_string()) code = error["code"].get<std::string>();
    }
    if (message.empty()) message = "the server answered HTTP " + std::to_string(response.status);
    if (response.status == 404 && message == "no such API path") {
      message = "the server has no renewal endpoint (" + path + "): it is a keyhold serve without remote renewal";
    }
    ErrorCode error_code = response.status == 403 ? ErrorCode::PermissionDenied
                           : response.status >= 500 ? ErrorCode::Unavailable
                                                   : ErrorCode::FailedPrecondition;
    throw Error(error_code, shown(message) + " (HTTP " + std::to_string(response.status) +
                                (code.empty() ? "" : " " + shown(code)) + ")");
  }
  if (!answer.is_object()) throw Error(ErrorCode::Unavailable, "the server's answer is not a JSON object");
  return answer;
}

std::string string_field(const Json& answer, const char* name, bool required = true) {
  if (answer.contains(name) && answer[name].is_string()) return answer[name].get<std::string>();
  if (required) throw Error(ErrorCode::Unavailable, std::string("the server's answer has no '") + name + "'");
  return {};
}

// ---- Keys ----------------------------------------------------------------------

struct SshKeyPair {
  SecretBytes private_key;
  std::string public_line;
};

// A new OpenSSH key pair made by ssh-keygen, in a private directory beside the key (removed again).
SshKeyPair ssh_keygen(const Entry& entry) {
  fs::path directory = entry.key->parent_path() / ("." + entry.key->filename().string() + ".keyhold-keygen");
  std::error_code ec;
  fs::remove_all(directory, ec);
  if (::mkdir(directory.c_str(), 0700) != 0) {
    throw Error(ErrorCode::FailedPrecondition, "cannot make " + directory.string() + ": " + std::strerror(errno));
  }
  struct Remove {
    fs::path path;
    ~Remove() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } remove{directory};
  std::string type = key_type_of(entry);
  std::vector<std::string> argv = {"ssh-keygen", "-q", "-N", "", "-C", entry.name, "-f", (directory / "key").string()};
  if (type == "ed25519") {
    argv.insert(argv.end(), {"-t", "ed25519"});
  } else if (type.rfind("ecdsa-p", 0) == 0) {
    argv.insert(argv.end(), {"-t", "ecdsa", "-b", type.substr(7)});
  } else {
    argv.insert(argv.end(), {"-t", "rsa", "-b", type.substr(4)});
  }
  SpawnResult r = spawn(argv, {}, true);
  if (r.exit_code != 0) {
    std::string why = r.err;
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
    throw Error(ErrorCode::FailedPrecondition, "ssh-keygen could not make a " + type + " key (" + describe(r) +
                                                   (why.empty() ? "" : ": " + shown(why)) + ")");
  }
  SshKeyPair pair{read_file(directory / "key", "new SSH key"), read_text(directory / "key.pub", "new SSH public key")};
  return pair;
}

// ---- Entries -------------------------------------------------------------------

struct Plan {
  std::vector<NewFile> files;
  std::string detail;  // "serial 3f2a, valid until ..., new key"
  std::optional<std::string> key_uri;  // key = "token": the new key's URI
};

class EntryRun {
 public:
  EntryRun(const Entry& entry, const RunOptions& options) : entry_(entry), options_(options) {}

  // The current certificate's lifetime, nullopt when there is none.
  std::optional<CurrentValidity> current() {
    try {
      if (entry_.ssh()) {
        ssh_current_ = read_ssh_certificate_file(entry_.cert);
        if (ssh_current_) return ssh_current_->validity;
      } else {
        x509_current_ = read_x509_file(entry_.cert);
        if (x509_current_) return x509_current_->validity;
      }
    } catch (const Error& e) {
      // Local mode can start afresh; remote renewal needs the current certificate to authenticate.
      if (entry_.remote()) throw Error(ErrorCode::FailedPrecondition, e.what());
      unreadable_ = e.what();
    }
    return std::nullopt;
  }
  const std::optional<std::string>& unreadable() const { return unreadable_; }

  Plan plan() {
    if (entry_.remote()) return entry_.ssh() ? remote_ssh() : remote_x509();
    return entry_.ssh() ? local_ssh() : local_x509();
  }

 private:
  // The X.509 key for the new certificate: new (rekey, or none yet) or the current one.
  SecretBytes x509_key(bool& fresh) {
    fresh = entry_.rekey || !file_exists(*entry_.key);
    return fresh ? generate_x509_key(key_type_of(entry_)) : read_file(*entry_.key, "key file");
  }

  SshKeyPair ssh_key(bool& fresh) {
    fresh = entry_.rekey || !file_exists(*entry_.key);
    if (fresh) return ssh_keygen(entry_);
    fs::path pub = entry_.key->string() + ".pub";
    if (!file_exists(pub)) {
      throw Error(ErrorCode::FailedPrecondition, pub.string() + " is missing (rekey = false uses the current key: make "
                                                                "it with ssh-keygen -y -f " + entry_.key->string() + " > " +
                                                                pub.string() + ")");
    }
    return {read_file(*entry_.key, "SSH key"), read_text(pub, "SSH public key")};
  }

  Plan x509_plan(const std::string& certificate, const std::string& chain, std::optional<SecretBytes> key, bool fresh,
                 const std::optional<std::string>& key_uri) {
    X509Details details = read_x509(certificate);
    if (entry_.chain && chain.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      throw Error(ErrorCode::FailedPrecondition, "no chain came with the new certificate, and the entry has 'chain'; nothing was installed");
    }
    Plan plan;
    plan.detail = "serial " + details.validity.serial + ", valid until " + format_time(details.validity.not_after);
    if (key_uri) plan.detail += ", its key in the token: " + *key_uri;
    if (fresh && key) plan.detail += ", new key";
    plan.files.push_back({entry_.cert, secret(certificate), 0644});
    if (entry_.chain) plan.files.push_back({*entry_.chain, secret(chain), 0644});
    if (key && fresh) plan.files.push_back({*entry_.key, std::move(*key), 0600});
    plan.key_uri = key_uri;
    return plan;
  }

  Plan local_x509() {
    LocalAuthority& local = options_.local();
    if (entry_.key_in_token) {
      X509Issued issued = local.issue(entry_, std::nullopt);
      return x509_plan(issued.certificate_pem, issued.chain_pem, std::nullopt, true, issued.key_uri);
    }
    bool fresh = false;
    SecretBytes key = x509_key(fresh);
    X509Issued issued = local.issue(entry_, make_csr(key, entry_.names, std::nullopt));
    return x509_plan(issued.certificate_pem, issued.chain_pem, std::move(key), fresh, std::nullopt);
  }

  Plan remote_x509() {
    if (!x509_current_) {
      throw Error(ErrorCode::FailedPrecondition, "no certificate at " + entry_.cert.string() +
                                                     ": remote renewal needs a current certificate to authenticate; "
                                                     "enrol first with `keyhold ca issue` on the CA host or through your "
                                                     "CA operator");
    }
    if (options_.now >= x509_current_->validity.not_after) {
      expired("the certificate " + entry_.cert.string(), x509_current_->validity.not_after, kReenrolX509);
    }
    std::string current_pem = read_text(entry_.cert, "certificate file");
    bool fresh = false;
    SecretBytes key = x509_key(fresh);
    ClientTls tls{*entry_.trust, entry_.cert, entry_.chain && file_exists(*entry_.chain) ? entry_.chain : std::nullopt,
                  *entry_.key};
    Json answer = call(entry_, "/v1/pki/" + entry_.ca + "/renew", {{"csr", make_csr(key, {}, current_pem)}}, tls);
    std::string certificate = string_field(answer, "certificate");
    std::string chain = string_field(answer, "chain", false);
    X509Details renewed;
    try {
      renewed = read_x509(certificate);
    } catch (const Error&) {
      throw Error(ErrorCode::Unavailable, "the server's 'certificate' is not a PEM certificate");
    }
    // The same identity, or nothing is installed.
    if (renewed.subject != x509_current_->subject || !same_names(renewed.names, x509_current_->names)) {
      throw Error(ErrorCode::FailedPrecondition, "the server returned a certificate for " + renewed.subject + " " +
                                                     names_text(renewed.names) + ", not for " + x509_current_->subject +
                                                     " " + names_text(x509_current_->names) + "; nothing was installed");
    }
    if (!entry_.names.empty() && !same_names(renewed.names, entry_.names)) {
      throw Error(ErrorCode::FailedPrecondition, "the renewed certificate names " + names_text(renewed.names) +
                                                     ", the renewal file " + names_text(entry_.names) +
                                                     " (a remote renewal keeps the names; new names need a new "
                                                     "certificate); nothing was installed");
    }
    return x509_plan(certificate, chain, std::move(key), fresh, std::nullopt);
  }

  Plan ssh_plan(const std::string& certificate_line, SshKeyPair key, bool fresh) {
    SshDetails details;
    try {
      details = read_ssh_certificate(certificate_line);
    } catch (const Error& e) {
      throw Error(ErrorCode::FailedPrecondition, std::string("the new SSH certificate cannot be read: ") + e.what());
    }
    if (details.host != (entry_.kind == Kind::SshHost)) {
      throw Error(ErrorCode::FailedPrecondition, std::string("the new SSH certificate is a ") +
                                                     (details.host ? "host" : "user") + " certificate; nothing was installed");
    }
    Plan plan;
    plan.detail = "serial " + details.validity.serial + ", valid until " + format_time(details.validity.not_after);
    if (fresh) plan.detail += ", new key";
    std::string line = certificate_line;
    if (line.empty() || line.back() != '\n') line += '\n';
    plan.files.push_back({entry_.cert, secret(line), 0644});
    if (fresh) {
      plan.files.push_back({*entry_.key, std::move(key.private_key), 0600});
      plan.files.push_back({entry_.key->string() + ".pub", secret(key.public_line), 0644});
    }
    return plan;
  }

  Plan local_ssh() {
    LocalAuthority& local = options_.local();
    bool fresh = false;
    SshKeyPair key = ssh_key(fresh);
    std::string line = key.public_line;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    std::string certificate = local.sign(entry_, line);
    return ssh_plan(certificate, std::move(key), fresh);
  }

  Plan remote_ssh() {
    if (!ssh_current_) {
      throw Error(ErrorCode::FailedPrecondition, "no SSH certificate at " + entry_.cert.string() +
                                                     ": remote renewal renews a current certificate; " + kReenrolSsh);
    }
    if (options_.now >= ssh_current_->validity.not_after) {
      expired("the SSH certificate " + entry_.cert.string(), ssh_current_->validity.not_after, kReenrolSsh);
    }
    std::optional<X509Details> tls_certificate = read_x509_file(*entry_.tls_cert);
    if (!tls_certificate) throw Error(ErrorCode::FailedPrecondition, "no TLS certificate at " + entry_.tls_cert->string());
    if (options_.now >= tls_certificate->validity.not_after) {
      expired("the TLS certificate " + entry_.tls_cert->string() + " (tls_cert)", tls_certificate->validity.not_after,
              kReenrolX509 + " (or renew it with its own entry, listed before this one)");
    }
    std::string current_line = read_text(entry_.cert, "SSH certificate");
    while (!current_line.empty() && (current_line.back() == '\n' || current_line.back() == '\r')) current_line.pop_back();
    bool fresh = false;
    SshKeyPair key = ssh_key(fresh);
    std::string public_line = key.public_line;
    while (!public_line.empty() && (public_line.back() == '\n' || public_line.back() == '\r')) public_line.pop_back();
    ClientTls tls{*entry_.trust, *entry_.tls_cert, std::nullopt, *entry_.tls_key};
    Json answer = call(entry_, "/v1/ssh/" + entry_.ca + "/renew", {{"certificate", current_line}, {"public_key", public_line}}, tls);
    std::string certificate = string_field(answer, "certificate");
    SshDetails renewed;
    try {
      renewed = read_ssh_certificate(certificate);
    } catch (const Error& e) {
      throw Error(ErrorCode::Unavailable, std::string("the server's 'certificate' is not an SSH certificate: ") + e.what());
    }
    if (renewed.key_id != ssh_current_->key_id || !same_names(renewed.principals, ssh_current_->principals)) {
      throw Error(ErrorCode::FailedPrecondition, "the server returned a certificate for key id '" + shown(renewed.key_id) +
                                                     "' " + names_text(renewed.principals) + ", not '" +
                                                     shown(ssh_current_->key_id) + "' " + names_text(ssh_current_->principals) +
                                                     "; nothing was installed");
    }
    if ((entry_.key_id && *entry_.key_id != renewed.key_id) ||
        (!entry_.names.empty() && !same_names(entry_.names, renewed.principals))) {
      throw Error(ErrorCode::FailedPrecondition, "the renewed certificate is for key id '" + shown(renewed.key_id) + "' " +
                                                     names_text(renewed.principals) +
                                                     ", which the renewal file's key_id or principals contradict; "
                                                     "nothing was installed");
    }
    return ssh_plan(certificate, std::move(key), fresh);
  }

  const Entry& entry_;
  const RunOptions& options_;
  std::optional<X509Details> x509_current_;
  std::optional<SshDetails> ssh_current_;
  std::optional<std::string> unreadable_;
};

// Checks the temporary files of a plan as they are on disk: the certificate
// against its key (the new one, or the current one it keeps) and chain.
void check_set(const Entry& entry, const std::vector<fs::path>& planned, const std::vector<fs::path>& temporaries) {
  auto on_disk = [&](const fs::path& target) -> fs::path {
    for (std::size_t i = 0; i < planned.size(); ++i) {
      if (planned[i] == target) return temporaries[i];
    }
    return target;  // kept as it is (rekey = false)
  };
  std::string certificate = read_text(on_disk(entry.cert), "new certificate");
  if (entry.ssh()) {
    fs::path pub = entry.key->string() + ".pub";
    check_ssh_set(certificate, read_file(on_disk(*entry.key), "SSH key").as_string(), read_text(on_disk(pub), "SSH public key"));
    return;
  }
  if (entry.key_in_token) {
    // The CA made the certificate for a key it made in the token: there is no key file to compare.
    read_x509(certificate);
    return;
  }
  std::string chain;
  if (entry.chain) chain = read_text(on_disk(*entry.chain), "new chain");
  check_x509_set(certificate, read_file(on_disk(*entry.key), "key file"), chain);
}

// Runs the deploy hook; "" when it succeeded, else why not ("exit 3").
std::string run_hook(const Entry& entry, const std::optional<std::string>& key_uri) {
  std::vector<std::pair<std::string, std::string>> environment = {
      {"KEYHOLD_RENEW_NAME", entry.name},
      {"KEYHOLD_RENEW_KIND", std::string(to_string(entry.kind))},
      {"KEYHOLD_RENEW_CERT", entry.cert.string()},
      {"KEYHOLD_RENEW_CHAIN", entry.chain ? entry.chain->string() : ""},
      {"KEYHOLD_RENEW_KEY", entry.key ? entry.key->string() : key_uri.value_or("token")},
  };
  try {
    SpawnResult r = spawn({"/bin/sh", "-c", *entry.deploy_hook}, environment, false);
    return r.exit_code == 0 ? "" : describe(r);
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

EntryResult renew_entry(const Entry& entry, const RunOptions& options) {
  EntryResult result;
  result.name = entry.name;
  std::string before;  // what happened before the main outcome: "completed an interrupted renewal"
  std::string outcome;
  std::optional<std::string> key_uri;
  try {
    Recovery recovery = recover(journal_path(entry.cert), targets_of(entry), options.dry_run);
    if (recovery.pending && !recovery.completed) {
      result.status = Status::Due;
      result.line = entry.name + ": an interrupted renewal is pending (journal " + journal_path(entry.cert).string() +
                    "); the next keyhold renew completes it before anything else; --dry-run: nothing changed";
      return result;
    }
    if (recovery.completed) {
      result.changed = true;
      before = "completed an interrupted renewal";
    }
    EntryRun run(entry, options);
    std::optional<CurrentValidity> current = run.current();
    double fraction = current ? jitter_fraction(options.machine, entry.name, current->serial) : 0;
    DueDecision decision = decide(entry.policy, current, options.now, options.force, fraction);
    if (!current && run.unreadable()) decision.reason = *run.unreadable();
    if (!decision.due) {
      result.status = Status::NotDue;
      outcome = decision.reason;
    } else if (options.dry_run) {
      result.status = Status::Due;
      outcome = "due: " + decision.reason + "; --dry-run: nothing changed";
    } else {
      Plan plan = run.plan();
      key_uri = plan.key_uri;
      std::vector<fs::path> planned;
      for (const NewFile& file : plan.files) planned.push_back(file.target);
      install(journal_path(entry.cert), std::move(plan.files),
              [&](const std::vector<fs::path>& temporaries) { check_set(entry, planned, temporaries); });
      result.status = Status::Renewed;
      result.changed = true;
      outcome = plan.detail + " (due: " + decision.reason + ")";
    }
  } catch (const std::exception& e) {
    // keyhold::Error above all; anything else still fails this entry only.
    result.status = Status::Failed;
    outcome = std::string("failed: ") + e.what();
  }
  std::string hook_failure;
  if (result.changed && entry.deploy_hook) {
    hook_failure = run_hook(entry, key_uri);
    result.hook_failed = !hook_failure.empty();
  }
  std::string line = entry.name + ": ";
  if (result.status == Status::Renewed) {
    line += (result.hook_failed ? "renewed, but the deploy hook failed (" + hook_failure + "): " : "renewed: ") + outcome;
  } else {
    if (!before.empty()) line += before + (result.hook_failed ? ", but the deploy hook failed (" + hook_failure + ")" : "") + "; ";
    line += outcome;
  }
  result.line = line;
  return result;
}

}  // namespace keyhold::renew
