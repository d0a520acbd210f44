// keyhold renew: keeps the certificates of a renewal file fresh (docs/renewal.md).

#include <arpa/inet.h>

#include <algorithm>
#include <iostream>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/file_lock.hpp"
#include "keyhold/renew/renewal.hpp"
#include "keyhold/renew/runner.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

// Local mode: the CA host's own CAs, through the application (keyhold.toml
// found as for every command: --config, KEYHOLD_CONFIG, ...). Built only when
// a local entry is due.
class ApplicationAuthority : public renew::LocalAuthority {
 public:
  explicit ApplicationAuthority(Context& context) : context_(context) {}

  renew::X509Issued issue(const renew::Entry& entry, const std::optional<std::string>& csr) override {
    pki::IssueRequest request;
    request.ca = entry.ca;
    request.profile = entry.profile.value_or("");
    request.csr = csr;
    if (!csr) {
      // key = "token": the CA makes the subject key in the token.
      auto type = crypto::parse_key_type(entry.key_type.value_or("ec-p256"));
      if (!type) throw Error(ErrorCode::InvalidArgument, "unknown key type " + entry.key_type.value_or(""));
      request.generate_key = *type;
      request.common_name = entry.names.front();
    }
    for (const std::string& name : entry.names) {
      unsigned char address[16];
      bool ip = ::inet_pton(AF_INET, name.c_str(), address) == 1 || ::inet_pton(AF_INET6, name.c_str(), address) == 1;
      (ip ? request.sans.ip : request.sans.dns).push_back(name);
    }
    request.days = entry.days;
    request.requester = "renew";
    pki::IssuedCertificate issued = context_.app().authority().issue(request);
    renew::X509Issued out;
    out.certificate_pem = issued.pem;
    for (const std::string& pem : issued.chain_pem) out.chain_pem += pem;
    out.key_uri = issued.key_uri;
    return out;
  }

  std::string sign(const renew::Entry& entry, const std::string& public_key_line) override {
    ssh::SignInput input;
    input.ca = entry.ca;
    input.profile = entry.profile;
    input.public_key = public_key_line;
    input.kind = entry.kind == renew::Kind::SshHost ? ssh::CertificateKind::Host : ssh::CertificateKind::User;
    input.key_id = entry.key_id.value_or(entry.name);
    input.principals = entry.names;
    if (entry.validity) input.validity = *entry.validity;
    input.requester = "renew";
    return context_.app().ssh_authority().sign(input).certificate_line;
  }

 private:
  Context& context_;
};

std::string_view status_name(renew::Status status) {
  switch (status) {
    case renew::Status::NotDue: return "not-due";
    case renew::Status::Due: return "due";
    case renew::Status::Renewed: return "renewed";
    case renew::Status::Failed: return "failed";
  }
  return "failed";
}

int renew(Context& c) {
  po::options_description options;
  options.add_options()("entry", po::value<std::vector<std::string>>(), "")("renew-config", po::value<std::string>(), "")(
      "lock-file", po::value<std::string>(), "")("now", po::value<std::string>(), "")("dry-run", po::bool_switch(), "")(
      "force", po::bool_switch(), "")("quiet", po::bool_switch(), "");
  po::positional_options_description positional;
  positional.add("entry", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(c.args()).options(options).positional(positional).run(), vm);
  po::notify(vm);

  renew::RunOptions run;
  run.dry_run = vm["dry-run"].as<bool>();
  run.force = vm["force"].as<bool>();
  const bool quiet = vm["quiet"].as<bool>();
  if (vm.count("now")) {
    std::string text = vm["now"].as<std::string>();
    auto now = renew::parse_rfc3339(text);
    if (!now) throw Error(ErrorCode::InvalidArgument, "--now takes an RFC 3339 time such as 2026-05-01T12:00:00Z, not '" + text + "'");
    run.now = *now;
  }
  std::filesystem::path file = vm.count("renew-config") ? vm["renew-config"].as<std::string>() : renew::kDefaultRenewalFile;
  renew::RenewalFile renewal = renew::load_renewal_file(file);

  std::vector<const renew::Entry*> entries;
  if (vm.count("entry")) {
    for (const std::string& name : vm["entry"].as<std::vector<std::string>>()) {
      auto it = std::find_if(renewal.entries.begin(), renewal.entries.end(),
                             [&](const renew::Entry& e) { return e.name == name; });
      if (it == renewal.entries.end()) {
        throw Error(ErrorCode::InvalidArgument, "no entry '" + name + "' in " + renewal.path.string());
      }
      if (std::find(entries.begin(), entries.end(), &*it) == entries.end()) entries.push_back(&*it);
    }
  } else {
    for (const renew::Entry& e : renewal.entries) entries.push_back(&e);
  }

  // One pass at a time; --dry-run changes nothing and takes no lock.
  std::optional<FileLock> lock;
  std::filesystem::path lock_file = vm.count("lock-file") ? std::filesystem::path(vm["lock-file"].as<std::string>())
                                                          : std::filesystem::path(renewal.path.string() + ".lock");
  if (!run.dry_run) {
    lock = FileLock::try_acquire(lock_file);
    if (!lock) {
      std::cerr << "keyhold: renew: another keyhold renew is running (it holds " << lock_file.string()
                << "); this run renewed nothing\n";
      return kExitFailed;
    }
  }

  ApplicationAuthority local(c);
  run.local = [&local]() -> renew::LocalAuthority& { return local; };
  run.machine = renew::machine_identity();

  bool failed = false;
  nlohmann::json results = nlohmann::json::array();
  for (const renew::Entry* entry : entries) {
    renew::EntryResult result = renew::renew_entry(*entry, run);
    failed = failed || result.failure();
    if (!quiet || result.failure()) std::cerr << result.line << "\n";
    results.push_back({{"name", result.name},
                       {"status", status_name(result.status)},
                       {"changed", result.changed},
                       {"hook_failed", result.hook_failed},
                       {"message", result.line}});
  }
  std::cerr.flush();
  if (c.json()) print_json(c, results);
  return failed ? kExitFailed : kExitOk;
}

}  // namespace

std::vector<Command> renew_commands() {
  return {{{"renew"},
           "renew [NAME...] [--renew-config FILE] [--lock-file FILE] [--dry-run] [--force] [--now TIME] [--quiet]",
           "renew the certificates of the renewal file that are due (docs/renewal.md)",
           renew}};
}

}  // namespace keyhold::cli
