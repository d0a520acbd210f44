// keyhold key create|list|show|public|destroy

#include <iomanip>
#include <iostream>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/service/json_views.hpp"
#include "keyhold/ssh/public_key.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

using service::attributes_json;
using service::key_json;
using service::token_key_json;

const char* yes_no(bool b) { return b ? "yes" : "no"; }

std::string join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

void print_details(std::ostream& out, const service::KeyDetails& d) {
  auto row = [&out](const std::string& name, const std::string& value) {
    out << "  " << std::left << std::setw(22) << (name + ":") << value << "\n";
  };
  std::string size;
  if (auto type = crypto::parse_key_type(d.record.key_type)) size = " (" + std::string(crypto::size_or_curve(*type)) + ")";
  row("name", d.record.name);
  row("type", d.record.key_type + size);
  row("purpose", d.record.purpose);
  row("state", d.record.state);
  row("created", d.record.created_at);
  if (d.record.used_by) row("used by", *d.record.used_by);
  if (d.record.destroyed_at) row("destroyed", *d.record.destroyed_at);
  row("id (CKA_ID)", to_hex(d.record.token_object_id));
  if (!d.token) {
    if (d.record.state == "active") {
      row("token object", "MISSING: the token has no private or secret key with this CKA_ID (drift)");
    }
    return;
  }
  const crypto::SecurityAttributes& a = d.token->attributes;
  row("uri", d.token->uri);
  if (d.record.purpose == "sign") row("public object", yes_no(d.token->has_public_object));
  row("usage", join(a.usages()));
  out << "  security attributes (read from the token):\n";
  row("  private", yes_no(a.private_object));
  row("  sensitive", yes_no(a.sensitive));
  row("  extractable", yes_no(a.extractable));
  row("  always-sensitive", yes_no(a.always_sensitive));
  row("  never-extractable", yes_no(a.never_extractable));
  row("  local", yes_no(a.local));
  row("  modifiable", yes_no(a.modifiable));
  std::vector<std::string> exposure = a.exposure_reasons();
  if (!exposure.empty()) row("WARNING", "this key could have left the token: " + join(exposure));
}

int key_create(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")(
      "type", po::value<std::string>()->required(), "")("purpose", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::string type_text = vm["type"].as<std::string>();
  auto type = crypto::parse_key_type(type_text);
  if (!type) {
    throw Error(ErrorCode::InvalidArgument,
                "unknown key type '" + type_text + "' (one of: " + crypto::key_type_list() + ")");
  }
  std::optional<crypto::KeyPurpose> purpose;
  if (vm.count("purpose")) {
    purpose = crypto::parse_key_purpose(vm["purpose"].as<std::string>());
    if (!purpose) {
      throw Error(ErrorCode::InvalidArgument, "unknown purpose '" + vm["purpose"].as<std::string>() +
                                                  "' (sign or encrypt)");
    }
  }
  service::KeyDetails details = c.app().keys().create(vm["name"].as<std::string>(), *type, purpose);
  if (c.json()) {
    print_json(c, key_json(details));
  } else {
    c.out() << "created key '" << details.record.name << "' in the token\n";
    print_details(c.out(), details);
  }
  return kExitOk;
}

int key_list(Context& c) {
  po::options_description options;
  options.add_options()("all", po::bool_switch(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  service::KeyInventory inventory = c.app().keys().list(vm["all"].as<bool>());
  if (c.json()) {
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& d : inventory.keys) keys.push_back(key_json(d));
    nlohmann::json missing = nlohmann::json::array();
    for (const auto& d : inventory.keys) {
      if (d.record.state == "active" && !d.token) missing.push_back(d.record.name);
    }
    nlohmann::json unmanaged = nlohmann::json::array();
    for (const auto& k : inventory.unmanaged) unmanaged.push_back(token_key_json(k));
    print_json(c, {{"keys", keys}, {"drift", {{"missing_from_token", missing}, {"unmanaged_in_token", unmanaged}}}});
    return kExitOk;
  }
  std::ostream& out = c.out();
  if (inventory.keys.empty()) {
    out << "no keys yet (create one with: keyhold key create NAME --type ec-p256)\n";
  } else {
    out << std::left << std::setw(24) << "NAME" << std::setw(10) << "TYPE" << std::setw(9) << "PURPOSE"
        << std::setw(11) << "STATE" << std::setw(10) << "SENSITIVE" << std::setw(12) << "EXTRACTABLE"
        << std::setw(11) << "ALWAYS-SEN" << std::setw(11) << "NEVER-EXTR" << std::setw(7) << "LOCAL"
        << std::setw(22) << "CREATED" << "USED BY\n";
    for (const auto& d : inventory.keys) {
      out << std::setw(24) << d.record.name << std::setw(10) << d.record.key_type << std::setw(9) << d.record.purpose
          << std::setw(11) << (d.record.state == "active" && !d.token ? "MISSING" : d.record.state);
      if (d.token) {
        const auto& a = d.token->attributes;
        out << std::setw(10) << yes_no(a.sensitive) << std::setw(12) << yes_no(a.extractable) << std::setw(11)
            << yes_no(a.always_sensitive) << std::setw(11) << yes_no(a.never_extractable) << std::setw(7)
            << yes_no(a.local);
      } else {
        out << std::setw(10) << "-" << std::setw(12) << "-" << std::setw(11) << "-" << std::setw(11) << "-"
            << std::setw(7) << "-";
      }
      out << std::setw(22) << d.record.created_at << d.record.used_by.value_or("-") << "\n";
    }
  }
  bool missing_header = false;
  for (const auto& d : inventory.keys) {
    if (d.record.state != "active" || d.token) continue;
    if (!missing_header) out << "\ndrift: in the store but missing from the token:\n";
    missing_header = true;
    out << "  " << d.record.name << " (CKA_ID " << to_hex(d.record.token_object_id) << ")\n";
  }
  if (!inventory.unmanaged.empty()) {
    out << "\ndrift: keys in the token that keyhold does not manage:\n";
    for (const auto& k : inventory.unmanaged) {
      out << "  " << (k.label.empty() ? "(no label)" : k.label) << "  " << k.token_type << "  CKA_ID "
          << (k.id.empty() ? "(none)" : to_hex(k.id));
      std::vector<std::string> exposure = k.attributes.exposure_reasons();
      if (!exposure.empty()) out << "  UNSAFE: " << join(exposure);
      out << "\n";
    }
  }
  return kExitOk;
}

int key_show(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  service::KeyDetails details = c.app().keys().show(vm["name"].as<std::string>());
  if (c.json()) {
    print_json(c, key_json(details));
  } else {
    print_details(c.out(), details);
  }
  return kExitOk;
}

int key_public(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")(
      "format", po::value<std::string>()->default_value("pem"), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::string format = vm["format"].as<std::string>();
  if (format != "pem" && format != "openssh") {
    throw Error(ErrorCode::InvalidArgument, "unknown format '" + format + "' (pem or openssh)");
  }
  std::string name = vm["name"].as<std::string>();
  crypto::PublicKey key = c.app().keys().public_key(name);
  if (format == "pem") {
    c.out() << key.pem();
  } else {
    c.out() << ssh::authorized_keys_line(key, name) << "\n";
  }
  return kExitOk;
}

int key_destroy(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("yes", po::bool_switch(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::string name = vm["name"].as<std::string>();
  if (!vm["yes"].as<bool>()) {
    throw Error(ErrorCode::InvalidArgument,
                "destroying key '" + name + "' cannot be undone: add --yes to confirm");
  }
  store::KeyRecord record = c.app().keys().destroy(name);
  if (c.json()) {
    print_json(c, key_json(service::KeyDetails{record, std::nullopt}));
  } else {
    c.out() << "destroyed key '" << record.name << "': its token objects are gone; the store keeps its record\n";
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> key_commands() {
  return {
      {{"key", "create"}, "key create NAME --type T [--purpose P]", "create a key in the token", key_create},
      {{"key", "list"}, "key list [--all]", "list keys, their attributes and drift", key_list},
      {{"key", "show"}, "key show NAME", "show a key and its token attributes", key_show},
      {{"key", "public"}, "key public NAME [--format pem|openssh]", "print a public key", key_public},
      {{"key", "destroy"}, "key destroy NAME --yes", "destroy a key in the token", key_destroy},
  };
}

}  // namespace keyhold::cli
