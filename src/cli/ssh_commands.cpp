// keyhold ssh init-ca|ca-key|list-cas|sign|certs|revoke|krl|keygen|rotate-key|retire-key|keys

#include <ctime>
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

using service::ssh_time_text;

constexpr std::size_t kMaxPublicKeyBytes = 16 * 1024;

nlohmann::json ca_json(const ssh::CaDetails& d) {
  return {{"name", d.ca.name},
          {"key_type", d.ca.key_type},
          {"public_key", d.public_key_line},
          {"fingerprint", d.fingerprint},
          {"krl_version", d.ca.krl_version},
          {"created_at", d.ca.created_at}};
}

nlohmann::json key_json(const ssh::SshKeyDetails& d) {
  nlohmann::json versions = nlohmann::json::array();
  for (const auto& v : d.versions) {
    versions.push_back({{"version", v.version},
                        {"state", v.state},
                        {"key_type", v.key_type},
                        {"key_id", to_hex(v.key_object_id)},
                        {"created_at", v.created_at},
                        {"retired_at", v.retired_at ? nlohmann::json(*v.retired_at) : nullptr}});
  }
  return {{"name", d.name}, {"versions", versions}, {"authorized_keys", d.authorized_keys}, {"warnings", d.warnings}};
}

void print_key(std::ostream& out, const ssh::SshKeyDetails& d, bool lines_only) {
  if (lines_only) {
    for (const std::string& line : d.authorized_keys) out << line << "\n";
    return;
  }
  out << "SSH key '" << d.name << "'\n";
  for (const auto& v : d.versions) {
    out << "  version " << v.version << "  " << std::left << std::setw(8) << v.state << " " << v.key_type << "  created "
        << v.created_at << (v.retired_at ? ", retired " + *v.retired_at : "") << "\n";
  }
  out << "authorized_keys lines (install every one during a rotation's overlap):\n";
  for (const std::string& line : d.authorized_keys) out << line << "\n";
}

std::uint64_t parse_time(const std::string& text, const char* option) {
  std::optional<std::chrono::system_clock::time_point> t = parse_utc(text);
  if (!t || *t < std::chrono::system_clock::time_point()) {
    throw Error(ErrorCode::InvalidArgument, std::string(option) + " takes a UTC time like 2026-11-28T15:00:00Z, not '" + text + "'");
  }
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(t->time_since_epoch()).count());
}

ssh::CertificateKind kind_option(const std::string& text) {
  if (text == "user") return ssh::CertificateKind::User;
  if (text == "host") return ssh::CertificateKind::Host;
  throw Error(ErrorCode::InvalidArgument, "--type is user or host, not '" + text + "'");
}

int init_ca(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("key-type", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  auto type = ssh::parse_ssh_key_type(vm["key-type"].as<std::string>());
  if (!type) {
    throw Error(ErrorCode::InvalidArgument, "unknown SSH CA key type '" + vm["key-type"].as<std::string>() +
                                                "' (ed25519, ec-p256, ec-p384, rsa-3072, rsa-4096)");
  }
  ssh::CaDetails ca = c.app().ssh_authority().create_ca(vm["name"].as<std::string>(), *type);
  if (c.json()) {
    print_json(c, ca_json(ca));
  } else {
    c.out() << "created SSH CA '" << ca.ca.name << "' (" << ca.ca.key_type << ", " << ca.fingerprint << "), its key in the token\n"
            << ca.public_key_line << "\n";
  }
  return kExitOk;
}

int ca_key(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("known-hosts", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  ssh::CaDetails ca = c.app().ssh_authority().show_ca(vm["name"].as<std::string>());
  if (vm.count("known-hosts")) {
    std::string pattern = vm["known-hosts"].as<std::string>();
    if (pattern.empty() || pattern.find_first_of(" \t\r\n") != std::string::npos) {
      throw Error(ErrorCode::InvalidArgument, "--known-hosts takes one host pattern without spaces (e.g. *.example.org)");
    }
    std::string line = "@cert-authority " + pattern + " " + ca.public_key_line;
    if (c.json()) {
      nlohmann::json out = ca_json(ca);
      out["known_hosts"] = line;
      print_json(c, out);
    } else {
      c.out() << line << "\n";
    }
  } else if (c.json()) {
    print_json(c, ca_json(ca));
  } else {
    c.out() << ca.public_key_line << "\n";
  }
  return kExitOk;
}

int list_cas(Context& c) {
  parse_arguments(c.args(), po::options_description(), {});
  std::vector<ssh::CaDetails> cas = c.app().ssh_authority().list_cas();
  if (c.json()) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& ca : cas) list.push_back(ca_json(ca));
    print_json(c, list);
    return kExitOk;
  }
  if (cas.empty()) c.out() << "no SSH CAs yet (create one with: keyhold ssh init-ca NAME --key-type ed25519)\n";
  for (const auto& ca : cas) {
    c.out() << std::left << std::setw(20) << ca.ca.name << std::setw(10) << ca.ca.key_type << ca.fingerprint << "  KRL version "
            << ca.ca.krl_version << "\n";
  }
  return kExitOk;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

int sign(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("public-key", po::value<std::string>()->required(), "")(
      "type", po::value<std::string>()->required(), "")("key-id", po::value<std::string>()->required(), "")(
      "principals", po::value<std::string>(), "")("principal", po::value<std::vector<std::string>>(), "")(
      "profile", po::value<std::string>(), "")("validity", po::value<std::string>(), "")("valid-from", po::value<std::string>(), "")(
      "valid-to", po::value<std::string>(), "")("option", po::value<std::vector<std::string>>(), "")(
      "extension", po::value<std::vector<std::string>>(), "")("no-default-extensions", po::bool_switch(), "")(
      "out", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  ssh::SignInput input;
  input.ca = vm["ca"].as<std::string>();
  input.kind = kind_option(vm["type"].as<std::string>());
  input.key_id = vm["key-id"].as<std::string>();
  if (vm.count("profile")) input.profile = vm["profile"].as<std::string>();
  // --principals a,b is a list; --principal NAME (repeatable) is one name each, taken as written.
  if (vm.count("principals")) {
    for (std::string& p : split_commas(vm["principals"].as<std::string>())) input.principals.push_back(std::move(p));
  }
  if (vm.count("principal")) {
    for (const std::string& p : vm["principal"].as<std::vector<std::string>>()) input.principals.push_back(p);
  }
  if (vm.count("validity")) {
    if (vm.count("valid-from") || vm.count("valid-to")) {
      throw Error(ErrorCode::InvalidArgument, "give --validity or --valid-from/--valid-to, not both");
    }
    auto validity = parse_duration(vm["validity"].as<std::string>());
    if (!validity) throw Error(ErrorCode::InvalidArgument, "--validity takes a duration such as 8h or 30d");
    input.validity = *validity;
  }
  // One side alone is allowed: the profile fills in the other (docs/configuration.md).
  if (vm.count("valid-from")) input.valid_from = parse_time(vm["valid-from"].as<std::string>(), "--valid-from");
  if (vm.count("valid-to")) input.valid_to = parse_time(vm["valid-to"].as<std::string>(), "--valid-to");
  if (vm.count("option")) {
    for (const std::string& option : vm["option"].as<std::vector<std::string>>()) {
      auto eq = option.find('=');
      input.options.emplace_back(option.substr(0, eq), eq == std::string::npos ? "" : option.substr(eq + 1));
    }
  }
  if (vm.count("extension")) input.extensions = vm["extension"].as<std::vector<std::string>>();
  input.no_default_extensions = vm["no-default-extensions"].as<bool>();
  input.public_key = read_input_file(vm["public-key"].as<std::string>(), kMaxPublicKeyBytes, "public key");

  std::optional<PendingFile> out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  ssh::SignedCertificate signed_certificate = c.app().ssh_authority().sign(input);
  if (out) out->commit(signed_certificate.certificate_line + "\n");
  const store::SshCertificateRecord& r = signed_certificate.record;
  if (c.json()) {
    print_json(c, service::signed_ssh_certificate_json(signed_certificate));
  } else if (out) {
    c.out() << "signed " << r.type << " certificate " << r.serial << " for '" << r.key_id << "', valid until "
            << ssh_time_text(r.valid_before) << ", written to " << out->path().string() << "\n";
  } else {
    c.out() << signed_certificate.certificate_line << "\n";
  }
  return kExitOk;
}

int certs(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("status", po::value<std::string>(), "")(
      "key-id", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  store::SshCertificateFilter filter;
  if (vm.count("status")) {
    std::string status = vm["status"].as<std::string>();
    if (status != "valid" && status != "revoked" && status != "expired") {
      throw Error(ErrorCode::InvalidArgument, "unknown status '" + status + "' (valid, revoked or expired)");
    }
    filter.status = status;
  }
  if (vm.count("key-id")) filter.key_id = vm["key-id"].as<std::string>();
  std::vector<store::SshCertificateRecord> list = c.app().ssh_authority().certificates(vm["ca"].as<std::string>(), filter);
  // The store keeps valid or revoked; expiry is judged against the clock, as --status expired does.
  const auto now = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  auto status_of = [now](const store::SshCertificateRecord& r) {
    return r.status == "valid" && r.valid_before <= now ? std::string("expired") : r.status;
  };
  if (c.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : list) {
      out.push_back(service::ssh_certificate_json(r, status_of(r)));
    }
    print_json(c, out);
    return kExitOk;
  }
  if (list.empty()) {
    c.out() << "no certificates match\n";
    return kExitOk;
  }
  c.out() << std::left << std::setw(22) << "SERIAL" << std::setw(6) << "TYPE" << std::setw(9) << "STATUS" << std::setw(22)
          << "VALID BEFORE" << "KEY ID / PRINCIPALS\n";
  for (const auto& r : list) {
    std::string principals;
    for (const std::string& p : r.principals) principals += (principals.empty() ? "" : ",") + p;
    c.out() << std::setw(22) << r.serial << std::setw(6) << r.type << std::setw(9) << status_of(r) << std::setw(22)
            << ssh_time_text(r.valid_before) << r.key_id << "  " << principals << "\n";
  }
  return kExitOk;
}

int revoke(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("serial", po::value<std::string>(), "")(
      "key-id", po::value<std::string>(), "")("public-key", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  std::string ca = vm["ca"].as<std::string>();
  if (vm.count("serial") + vm.count("key-id") + vm.count("public-key") != 1) {
    throw Error(ErrorCode::InvalidArgument, "give exactly one of --serial N, --key-id ID or --public-key FILE");
  }
  ssh::Authority& authority = c.app().ssh_authority();
  std::string what;
  nlohmann::json result = {{"ca", ca}};
  if (vm.count("serial")) {
    std::string text = vm["serial"].as<std::string>();
    std::size_t used = 0;
    std::uint64_t serial = 0;
    try {
      serial = std::stoull(text, &used, 10);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty() || text[0] == '-') {
      throw Error(ErrorCode::InvalidArgument, "--serial takes a decimal certificate serial, not '" + text + "'");
    }
    store::SshCertificateRecord r = authority.revoke_serial(ca, serial);
    what = "certificate " + std::to_string(r.serial) + " ('" + r.key_id + "')";
    result.update({{"kind", "serial"}, {"serial", std::to_string(r.serial)}, {"key_id", r.key_id}, {"certificates", 1}});
  } else if (vm.count("key-id")) {
    std::size_t n = authority.revoke_key_id(ca, vm["key-id"].as<std::string>());
    result.update({{"kind", "key_id"}, {"key_id", vm["key-id"].as<std::string>()}, {"certificates", n}});
    what = "key id '" + vm["key-id"].as<std::string>() + "' (" + std::to_string(n) + " certificate" + (n == 1 ? "" : "s") +
           " so far, and any later)";
  } else {
    std::string key = read_input_file(vm["public-key"].as<std::string>(), kMaxPublicKeyBytes, "public key");
    std::size_t n = authority.revoke_key(ca, key);
    result.update({{"kind", "key"}, {"public_key_file", vm["public-key"].as<std::string>()}, {"certificates", n}});
    what = "the public key in " + vm["public-key"].as<std::string>() + " (" + std::to_string(n) + " certificate" +
           (n == 1 ? "" : "s") + " with it)";
  }
  if (c.json()) {
    result["revoked"] = what;
    print_json(c, result);
  } else {
    c.out() << "revoked " << what << "; it is in the next KRL (keyhold ssh krl --ca " << ca << " --out FILE)\n";
  }
  return kExitOk;
}

int krl(Context& c) {
  po::options_description options;
  options.add_options()("ca", po::value<std::string>()->required(), "")("out", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  PendingFile out(vm["out"].as<std::string>());
  ssh::KrlResult result = c.app().ssh_authority().krl(vm["ca"].as<std::string>());
  out.commit(std::string(result.krl.begin(), result.krl.end()));
  if (c.json()) {
    print_json(c, {{"version", result.version}, {"serials", result.serials}, {"key_ids", result.key_ids}, {"keys", result.keys},
                   {"file", out.path().string()}});
  } else {
    auto count = [](std::size_t n, const char* one, const char* many) { return std::to_string(n) + " " + (n == 1 ? one : many); };
    c.out() << "KRL version " << result.version << " revoking " << count(result.serials, "serial", "serials") << ", "
            << count(result.key_ids, "key id", "key ids") << ", " << count(result.keys, "key", "keys") << " written to "
            << out.path().string() << "\n";
  }
  return kExitOk;
}

int show_key_result(Context& c, const ssh::SshKeyDetails& d, bool lines_only) {
  if (c.json()) {
    print_json(c, key_json(d));
  } else {
    print_key(c.out(), d, lines_only);
  }
  return kExitOk;
}

int keygen(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("type", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::string text = vm["type"].as<std::string>();
  auto type = ssh::parse_ssh_key_type(text);
  if (!type || *type == crypto::KeyType::Rsa4096) {
    throw Error(ErrorCode::InvalidArgument, "unknown SSH key type '" + text + "' (ecdsa-p256, ecdsa-p384, rsa-3072, ed25519)");
  }
  ssh::SshKeyDetails d = c.app().ssh_authority().create_key(vm["name"].as<std::string>(), *type);
  return show_key_result(c, d, true);
}

int rotate_key(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("authorized-keys", po::bool_switch(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  return show_key_result(c, c.app().ssh_authority().rotate_key(vm["name"].as<std::string>()), vm["authorized-keys"].as<bool>());
}

int retire_key(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("version", po::value<int>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  return show_key_result(c, c.app().ssh_authority().retire_key(vm["name"].as<std::string>(), vm["version"].as<int>()), false);
}

int keys(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>(), "")("authorized-keys", po::bool_switch(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  bool lines = vm["authorized-keys"].as<bool>();
  if (vm.count("name")) return show_key_result(c, c.app().ssh_authority().show_key(vm["name"].as<std::string>()), lines);
  std::vector<ssh::SshKeyDetails> all = c.app().ssh_authority().list_keys();
  if (c.json()) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& d : all) list.push_back(key_json(d));
    print_json(c, list);
    return kExitOk;
  }
  if (all.empty()) c.out() << "no SSH keys yet (create one with: keyhold ssh keygen NAME --type ecdsa-p256)\n";
  for (const auto& d : all) print_key(c.out(), d, lines);
  return kExitOk;
}

}  // namespace

std::vector<Command> ssh_commands() {
  return {
      {{"ssh", "init-ca"}, "ssh init-ca NAME --key-type ed25519|ec-p256|ec-p384|rsa-3072|rsa-4096", "create an SSH CA (key in the token)", init_ca},
      {{"ssh", "ca-key"}, "ssh ca-key NAME [--known-hosts PATTERN]", "print the SSH CA's public key", ca_key},
      {{"ssh", "list-cas"}, "ssh list-cas", "list the SSH CAs", list_cas},
      {{"ssh", "sign"},
       "ssh sign --ca CA --public-key FILE --type user|host --key-id ID (--principals a,b | --principal P ...) [--profile P] "
       "[--validity 8h | --valid-from T [--valid-to T] | --valid-to T] [--option k=v] [--extension e] [--no-default-extensions] "
       "[--out FILE]",
       "sign an SSH certificate",
       sign},
      {{"ssh", "certs"}, "ssh certs --ca CA [--status S] [--key-id ID]", "list signed SSH certificates", certs},
      {{"ssh", "revoke"}, "ssh revoke --ca CA (--serial N | --key-id ID | --public-key FILE)", "revoke SSH certificates", revoke},
      {{"ssh", "krl"}, "ssh krl --ca CA --out FILE", "write the SSH CA's KRL", krl},
      {{"ssh", "keygen"}, "ssh keygen NAME --type ecdsa-p256|ecdsa-p384|rsa-3072|ed25519", "an SSH key in the token (for ssh -I)", keygen},
      {{"ssh", "rotate-key"}, "ssh rotate-key NAME [--authorized-keys]", "a new version of a token SSH key", rotate_key},
      {{"ssh", "retire-key"}, "ssh retire-key NAME --version V", "destroy an old version of a token SSH key", retire_key},
      {{"ssh", "keys"}, "ssh keys [NAME] [--authorized-keys]", "list the token SSH keys and their versions", keys},
  };
}

}  // namespace keyhold::cli
