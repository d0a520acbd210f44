// keyhold ca init-root|init-intermediate|import|list|show|chain|rotate|issue|revoke|crl|certs

#include <iomanip>
#include <iostream>

#include "arguments.hpp"
#include "cli.hpp"
#include "files.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/service/json_views.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

constexpr std::size_t kMaxInputBytes = 64 * 1024;

crypto::KeyType key_type_option(const po::variables_map& vm) {
  std::string text = vm["key-type"].as<std::string>();
  auto type = crypto::parse_key_type(text);
  if (!type || !crypto::is_key_pair(*type)) {
    throw Error(ErrorCode::InvalidArgument, "unknown signing key type '" + text +
                                                "' (rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519)");
  }
  return *type;
}

nlohmann::json ca_json(const pki::CaDetails& d) {
  nlohmann::json versions = nlohmann::json::array();
  for (const store::CaVersionRecord& v : d.versions) {
    versions.push_back({{"version", v.version},
                        {"state", v.state},
                        {"key_type", v.key_type},
                        {"key_id", to_hex(v.key_object_id)},
                        {"subject", v.subject},
                        {"subject_key_id", to_hex(v.subject_key_id)},
                        {"not_before", v.not_before},
                        {"not_after", v.not_after},
                        {"crl_number", v.crl_number}});
  }
  return {{"name", d.ca.name},
          {"kind", d.ca.kind},
          {"parent", d.parent_name ? nlohmann::json(*d.parent_name) : nullptr},
          {"created_at", d.ca.created_at},
          {"name_constraints", d.ca.name_constraints ? nlohmann::json::parse(*d.ca.name_constraints) : nlohmann::json(nullptr)},
          {"versions", versions}};
}

void print_ca(std::ostream& out, const pki::CaDetails& d) {
  out << "CA '" << d.ca.name << "' (" << d.ca.kind << (d.parent_name ? ", issued by '" + *d.parent_name + "'" : "")
      << ")\n";
  if (d.ca.name_constraints) out << "  permitted DNS names: " << *d.ca.name_constraints << "\n";
  for (const store::CaVersionRecord& v : d.versions) {
    out << "  version " << v.version << "  " << std::left << std::setw(8) << v.state << " " << v.key_type << "  "
        << v.subject << "\n"
        << "             valid " << v.not_before << " to " << v.not_after << ", SKI " << to_hex(v.subject_key_id)
        << ", last CRL number " << v.crl_number << "\n";
  }
}

int show_result(Context& c, const pki::CaDetails& d, const char* verb) {
  if (c.json()) {
    print_json(c, ca_json(d));
  } else {
    c.out() << verb << " ";
    print_ca(c.out(), d);
  }
  return kExitOk;
}

int ca_init(Context& c, bool intermediate) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")(
      "key-type", po::value<std::string>()->required(), "")("subject", po::value<std::string>()->required(), "")(
      "days", po::value<int>(), "");
  if (intermediate) {
    options.add_options()("parent", po::value<std::string>()->required(), "")("path-len", po::value<int>(), "")(
        "permitted-dns", po::value<std::vector<std::string>>()->multitoken(), "");
  }
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  pki::NewCa request;
  request.name = vm["name"].as<std::string>();
  request.key_type = key_type_option(vm);
  request.subject = vm["subject"].as<std::string>();
  if (vm.count("days")) request.days = vm["days"].as<int>();
  if (intermediate) {
    request.parent = vm["parent"].as<std::string>();
    if (vm.count("path-len")) request.path_length = vm["path-len"].as<int>();
    if (vm.count("permitted-dns")) request.permitted_dns = vm["permitted-dns"].as<std::vector<std::string>>();
  }
  return show_result(c, c.app().authority().create_ca(request), "created");
}

int ca_init_root(Context& c) { return ca_init(c, false); }
int ca_init_intermediate(Context& c) { return ca_init(c, true); }

int ca_import(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("cert", po::value<std::string>()->required(), "")(
      "key", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::string certificate = read_input_file(vm["cert"].as<std::string>(), kMaxInputBytes, "certificate");
  return show_result(c, c.app().authority().import_ca(vm["name"].as<std::string>(), certificate, vm["key"].as<std::string>()),
                     "imported");
}

int ca_list(Context& c) {
  parse_arguments(c.args(), po::options_description(), {});
  std::vector<pki::CaDetails> cas = c.app().authority().list();
  if (c.json()) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& d : cas) list.push_back(ca_json(d));
    print_json(c, list);
    return kExitOk;
  }
  if (cas.empty()) c.out() << "no CAs yet (create one with: keyhold ca init-root NAME --key-type ec-p256 --subject CN=...)\n";
  for (const auto& d : cas) print_ca(c.out(), d);
  return kExitOk;
}

int ca_show(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  pki::CaDetails d = c.app().authority().show(vm["name"].as<std::string>());
  if (c.json()) {
    print_json(c, ca_json(d));
  } else {
    print_ca(c.out(), d);
  }
  return kExitOk;
}

int ca_chain(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("out", po::value<std::string>(), "")(
      "version", po::value<int>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::optional<int> version;
  if (vm.count("version")) version = vm["version"].as<int>();
  std::string pem;
  for (const std::string& certificate : c.app().authority().chain(vm["name"].as<std::string>(), version)) pem += certificate;
  if (vm.count("out")) {
    write_file_atomically(vm["out"].as<std::string>(), pem);
  } else {
    c.out() << pem;
  }
  return kExitOk;
}

int ca_rotate(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  return show_result(c, c.app().authority().rotate(vm["name"].as<std::string>()), "rotated");
}

// --san dns:a.example,ip:10.0.0.1,uri:spiffe://x/y,email:a@b (repeatable).
pki::SubjectAltNames parse_sans(const std::vector<std::string>& values) {
  pki::SubjectAltNames sans;
  for (const std::string& value : values) {
    std::size_t start = 0;
    while (start <= value.size()) {
      std::size_t comma = value.find(',', start);
      std::string item = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? value.size() + 1 : comma + 1;
      if (item.empty()) continue;
      auto colon = item.find(':');
      std::string kind = colon == std::string::npos ? "" : item.substr(0, colon);
      std::string name = colon == std::string::npos ? "" : item.substr(colon + 1);
      if (kind == "dns") {
        sans.dns.push_back(name);
      } else if (kind == "ip") {
        sans.ip.push_back(name);
      } else if (kind == "uri") {
        sans.uri.push_back(name);
      } else if (kind == "email") {
        sans.email.push_back(name);
      } else {
        throw Error(ErrorCode::InvalidArgument, "--san '" + item + "': write dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS");
      }
    }
  }
  return sans;
}

int ca_issue(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("profile", po::value<std::string>()->required(), "")(
      "csr", po::value<std::string>(), "")("generate-key", po::bool_switch(), "")("key-type", po::value<std::string>(), "")(
      "cn", po::value<std::string>(), "")("san", po::value<std::vector<std::string>>()->multitoken(), "")(
      "days", po::value<int>(), "")("out", po::value<std::string>(), "")("chain-out", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  pki::IssueRequest request;
  request.ca = vm["ca"].as<std::string>();
  request.profile = vm["profile"].as<std::string>();
  if (vm.count("csr")) request.csr = read_input_file(vm["csr"].as<std::string>(), kMaxInputBytes, "CSR");
  if (vm["generate-key"].as<bool>()) {
    if (!vm.count("key-type")) throw Error(ErrorCode::InvalidArgument, "--generate-key needs --key-type T");
    request.generate_key = key_type_option(vm);
  } else if (vm.count("key-type")) {
    throw Error(ErrorCode::InvalidArgument, "--key-type goes with --generate-key");
  }
  if (vm.count("cn")) request.common_name = vm["cn"].as<std::string>();
  if (vm.count("san")) request.sans = parse_sans(vm["san"].as<std::vector<std::string>>());
  if (vm.count("days")) request.days = vm["days"].as<int>();

  // Output files are made ready first: a path that cannot be written fails
  // before anything is signed. They are filled once the certificate is recorded.
  std::optional<PendingFile> out, chain_out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  if (vm.count("chain-out")) chain_out.emplace(vm["chain-out"].as<std::string>());
  pki::IssuedCertificate issued = c.app().authority().issue(request);
  std::string chain;
  for (const std::string& pem : issued.chain_pem) chain += pem;
  try {
    if (out) out->commit(issued.pem);
    if (chain_out) chain_out->commit(chain);
  } catch (const Error& e) {
    // Issued and recorded, but not delivered: say how to get it again.
    throw Error(ErrorCode::FailedPrecondition, std::string(e.what()) + "; certificate " + issued.record.serial +
                                                   " was issued and recorded: keyhold ca cert --ca " + request.ca +
                                                   " --serial " + issued.record.serial + " prints it");
  }
  if (c.json()) {
    print_json(c, service::issued_certificate_json(issued));
  } else if (vm.count("out")) {
    c.out() << "issued certificate " << issued.record.serial << " (" << issued.record.subject << "), valid until "
            << issued.record.not_after << ", written to " << vm["out"].as<std::string>() << "\n";
    if (issued.key_uri) c.out() << "its key stays in the token: " << *issued.key_uri << "\n";
  } else {
    c.out() << issued.pem;
    if (issued.key_uri) std::cerr << "keyhold: the certificate's key stays in the token: " << *issued.key_uri << "\n";
  }
  return kExitOk;
}

int ca_revoke(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("serial", po::value<std::string>()->required(), "")(
      "reason", po::value<std::string>()->default_value("unspecified"), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  auto reason = pki::parse_revocation_reason(vm["reason"].as<std::string>());
  if (!reason) {
    throw Error(ErrorCode::InvalidArgument, "unknown reason '" + vm["reason"].as<std::string>() +
                                                "' (keyCompromise, cACompromise, affiliationChanged, superseded, "
                                                "cessationOfOperation, unspecified)");
  }
  std::string ca = vm["ca"].as<std::string>();
  store::CertificateRecord record = c.app().authority().revoke(ca, vm["serial"].as<std::string>(), *reason);
  // The CRL of the version that issued it lists it; after a rotation that is an older version.
  int version = c.app().authority().issuing_version(ca, record);
  bool current = c.app().authority().show(ca).versions.back().version == version;
  std::string crl_command = "keyhold ca crl --ca " + ca + (current ? "" : " --version " + std::to_string(version));
  if (c.json()) {
    print_json(c, {{"serial", record.serial},
                   {"revoked_at", *record.revoked_at},
                   {"reason", *record.revocation_reason},
                   {"ca_version", version}});
  } else {
    c.out() << "revoked certificate " << record.serial << " (" << record.subject << ") at " << *record.revoked_at << ", reason "
            << *record.revocation_reason << "; it appears in the next CRL of version " << version << " (" << crl_command << ")\n";
  }
  return kExitOk;
}

int ca_crl(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("out", po::value<std::string>(), "")(
      "der", po::bool_switch(), "")("version", po::value<int>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  std::optional<int> version;
  if (vm.count("version")) version = vm["version"].as<int>();
  std::optional<PendingFile> out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  pki::CrlResult crl = c.app().authority().crl(vm["ca"].as<std::string>(), version);
  std::string pem = to_pem("X509 CRL", crl.der);
  std::string content = vm["der"].as<bool>() ? std::string(crl.der.begin(), crl.der.end()) : pem;
  if (out) out->commit(content);
  if (c.json()) {
    nlohmann::json j = {{"number", crl.number}, {"ca_version", crl.version}, {"revoked", crl.revoked}};
    if (out) {
      j["file"] = out->path().string();
    } else {
      j["crl"] = pem;
    }
    print_json(c, j);
  } else if (out) {
    c.out() << "CRL number " << crl.number << " of CA version " << crl.version << " listing " << crl.revoked << " revoked certificate"
            << (crl.revoked == 1 ? "" : "s") << ", written to " << out->path().string() << "\n";
  } else {
    c.out() << content;
  }
  return kExitOk;
}

int ca_cert(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("serial", po::value<std::string>()->required(), "")(
      "out", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  store::CertificateRecord record = c.app().authority().certificate(vm["ca"].as<std::string>(), vm["serial"].as<std::string>());
  std::string pem = to_pem("CERTIFICATE", record.certificate_der);
  if (vm.count("out")) write_file_atomically(vm["out"].as<std::string>(), pem);
  if (c.json()) {
    nlohmann::json j = {{"serial", record.serial}, {"status", record.status}};
    if (vm.count("out")) {
      j["file"] = vm["out"].as<std::string>();
    } else {
      j["certificate"] = pem;
    }
    print_json(c, j);
  } else if (vm.count("out")) {
    c.out() << "certificate " << record.serial << " (" << record.status << ") written to " << vm["out"].as<std::string>() << "\n";
  } else {
    c.out() << pem;
  }
  return kExitOk;
}

int ca_certs(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("expiring-within", po::value<std::string>(), "")(
      "status", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  store::CertificateFilter filter;
  if (vm.count("status")) {
    std::string status = vm["status"].as<std::string>();
    if (status != "valid" && status != "revoked" && status != "expired") {
      throw Error(ErrorCode::InvalidArgument, "unknown status '" + status + "' (valid, revoked or expired)");
    }
    filter.status = status;
  }
  if (vm.count("expiring-within")) {
    auto within = parse_duration(vm["expiring-within"].as<std::string>());
    if (!within) throw Error(ErrorCode::InvalidArgument, "--expiring-within takes a duration such as 30d or 12h");
    filter.not_after_before = format_utc(std::chrono::system_clock::now() + *within);
  }
  std::vector<store::CertificateRecord> certificates = c.app().authority().certificates(vm["ca"].as<std::string>(), filter);
  if (c.json()) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : certificates) {
      list.push_back(service::certificate_json(r));
    }
    print_json(c, list);
    return kExitOk;
  }
  if (certificates.empty()) {
    c.out() << "no certificates match\n";
    return kExitOk;
  }
  c.out() << std::left << std::setw(34) << "SERIAL" << std::setw(9) << "STATUS" << std::setw(22) << "NOT AFTER" << "SUBJECT / NAMES\n";
  for (const auto& r : certificates) {
    std::string names;
    for (const std::string& s : r.sans) names += (names.empty() ? "" : " ") + s;
    c.out() << std::setw(34) << r.serial << std::setw(9) << r.status << std::setw(22) << r.not_after << r.subject
            << (names.empty() ? "" : "  " + names) << "\n";
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> ca_commands() {
  return {
      {{"ca", "init-root"}, "ca init-root NAME --key-type T --subject DN [--days N]", "create a root CA (key in the token)", ca_init_root},
      {{"ca", "init-intermediate"},
       "ca init-intermediate NAME --parent CA --key-type T --subject DN [--days N] [--path-len N] [--permitted-dns D ...]",
       "create an intermediate CA signed by its parent",
       ca_init_intermediate},
      {{"ca", "import"}, "ca import NAME --cert FILE --key URI", "adopt a CA whose key is already in the token", ca_import},
      {{"ca", "list"}, "ca list", "list the CAs and their versions", ca_list},
      {{"ca", "show"}, "ca show NAME", "show a CA and its versions", ca_show},
      {{"ca", "chain"}, "ca chain NAME [--version N] [--out FILE]", "print the CA's chain up to the root (PEM)", ca_chain},
      {{"ca", "rotate"}, "ca rotate NAME", "new key and certificate for a CA; issuance moves to it", ca_rotate},
      {{"ca", "issue"},
       "ca issue --ca CA --profile P (--csr FILE | --generate-key --key-type T) [--cn CN] [--san dns:..,ip:..] [--days N] "
       "[--out FILE] [--chain-out FILE]",
       "issue a certificate",
       ca_issue},
      {{"ca", "revoke"}, "ca revoke --ca CA --serial HEX [--reason R]", "revoke a certificate", ca_revoke},
      {{"ca", "crl"}, "ca crl --ca CA [--out FILE] [--der] [--version N]", "sign and print a complete CRL", ca_crl},
      {{"ca", "certs"}, "ca certs --ca CA [--expiring-within 30d] [--status S]", "list issued certificates", ca_certs},
      {{"ca", "cert"}, "ca cert --ca CA --serial HEX [--out FILE]", "print an issued certificate again", ca_cert},
  };
}

}  // namespace keyhold::cli
