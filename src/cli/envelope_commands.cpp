// keyhold kek create|rotate|list|show|disable-version|enable-version|destroy-version,
// datakey generate, encrypt, decrypt, rewrap, seal, unseal (keyhold maintain, which
// rotates the KEKs that are due, is in maintain_command.cpp)

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "arguments.hpp"
#include "cli.hpp"
#include "files.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/envelope/seal.hpp"
#include "keyhold/service/json_views.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

using service::kek_json;

// A ciphertext in either form is far below this; more is not a ciphertext.
constexpr std::size_t kMaxCiphertextInput = 64 * 1024;

std::optional<std::string> optional_string(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return std::nullopt;
  return vm[name].as<std::string>();
}

envelope::Context context_option(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return {};
  return envelope::parse_context_arguments(vm[name].as<std::vector<std::string>>());
}

void add_context_options(po::options_description& options) {
  options.add_options()("context", po::value<std::vector<std::string>>()->composing(), "");
}

std::uint32_t version_argument(const po::variables_map& vm) {
  const std::string& text = vm["version"].as<std::string>();
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos || std::stoul(text) == 0) {
    throw Error(ErrorCode::InvalidArgument, "a KEK version is a number from 1, not '" + text + "'");
  }
  return static_cast<std::uint32_t>(std::stoul(text));
}

std::string period_text(std::int64_t seconds) {
  if (seconds == 0) return "none";
  if (seconds % 86400 == 0) return std::to_string(seconds / 86400) + "d";
  if (seconds % 3600 == 0) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds) + "s";
}

void print_kek(std::ostream& out, const envelope::KekInfo& k) {
  out << "KEK '" << k.kek.name << "' (id " << to_hex(k.kek.kek_id) << "), created " << k.kek.created_at << "\n"
      << "  primary version:  " << k.primary_version << "\n"
      << "  rotation period:  " << period_text(k.kek.rotation_period_seconds) << "\n"
      << "  max encryptions:  " << k.kek.max_encryptions << " per version\n"
      << "  next rotation:    "
      << (!k.due_reason.empty() ? "due now: " + k.due_reason : k.next_rotation_due.value_or("by count only")) << "\n"
      << "  versions:\n";
  for (const auto& v : k.versions) {
    out << "    v" << std::left << std::setw(4) << v.record.version << std::setw(10) << v.record.state
        << "encryptions " << std::setw(12) << v.record.encryptions << "created " << v.record.created_at;
    if (v.record.state_changed_at) out << ", " << v.record.state << " " << *v.record.state_changed_at;
    if (v.primary) out << "  (primary)";
    out << "\n";
  }
}

int show_result(Context& c, const envelope::KekInfo& k) {
  if (c.json()) {
    print_json(c, kek_json(k));
  } else {
    print_kek(c.out(), k);
  }
  return kExitOk;
}

int kek_create(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("rotation-period", po::value<std::string>(), "")(
      "max-encryptions", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  std::chrono::seconds period = envelope::kDefaultRotationPeriod;
  if (vm.count("rotation-period")) {
    std::string text = vm["rotation-period"].as<std::string>();
    if (text == "none" || text == "0") {
      period = std::chrono::seconds(0);
    } else {
      std::optional<std::chrono::seconds> parsed = parse_duration(text);
      if (!parsed || parsed->count() <= 0) {
        throw Error(ErrorCode::InvalidArgument, "--rotation-period takes a duration like 90d or 12h (or none), not '" + text + "'");
      }
      period = *parsed;
    }
  }
  std::uint64_t max = envelope::kDefaultMaxEncryptions;
  if (vm.count("max-encryptions")) {
    std::string text = vm["max-encryptions"].as<std::string>();
    if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) {
      throw Error(ErrorCode::InvalidArgument, "--max-encryptions takes a number from 1 to 2^32, not '" + text + "'");
    }
    max = std::stoull(text);
  }
  return show_result(c, c.app().envelope().create_kek(vm["name"].as<std::string>(), period, max));
}

int kek_rotate(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  return show_result(c, c.app().envelope().rotate(vm["name"].as<std::string>()));
}

int kek_show(Context& c) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name"});
  return show_result(c, c.app().envelope().show(vm["name"].as<std::string>()));
}

int kek_list(Context& c) {
  parse_arguments(c.args(), po::options_description(), {});
  std::vector<envelope::KekInfo> keks = c.app().envelope().list();
  if (c.json()) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& k : keks) list.push_back(kek_json(k));
    print_json(c, list);
    return kExitOk;
  }
  if (keks.empty()) {
    c.out() << "no KEKs yet (create one with: keyhold kek create NAME)\n";
    return kExitOk;
  }
  c.out() << std::left << std::setw(24) << "NAME" << std::setw(9) << "PRIMARY" << std::setw(10) << "VERSIONS" << std::setw(10)
          << "ROTATION" << "NEXT ROTATION\n";
  for (const auto& k : keks) {
    c.out() << std::left << std::setw(24) << k.kek.name << std::setw(9) << ("v" + std::to_string(k.primary_version))
            << std::setw(10) << k.versions.size() << std::setw(10) << period_text(k.kek.rotation_period_seconds)
            << (!k.due_reason.empty() ? "due now" : k.next_rotation_due.value_or("by count only")) << "\n";
  }
  return kExitOk;
}

int change_version(Context& c, const char* what) {
  po::options_description options;
  options.add_options()("name", po::value<std::string>()->required(), "")("version", po::value<std::string>()->required(), "")(
      "yes", po::bool_switch(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {"name", "version"});
  std::string name = vm["name"].as<std::string>();
  std::uint32_t version = version_argument(vm);
  envelope::Service& service = c.app().envelope();
  std::string verb = what;
  if (verb == "destroy") {
    if (!vm["yes"].as<bool>()) {
      throw Error(ErrorCode::InvalidArgument, "destroying KEK '" + name + "' version " + std::to_string(version) +
                                                  " makes what it encrypted undecryptable for ever: add --yes");
    }
    return show_result(c, service.destroy_version(name, version));
  }
  if (vm["yes"].as<bool>()) throw Error(ErrorCode::InvalidArgument, "--yes is only for kek destroy-version");
  return show_result(c, verb == "disable" ? service.disable_version(name, version) : service.enable_version(name, version));
}

void print_ciphertext(Context& c, const envelope::Ciphertext& ciphertext, const SecretBytes* plaintext) {
  if (c.json()) {
    nlohmann::json out = {{"ciphertext", envelope::to_text(ciphertext)}, {"kek_version", ciphertext.kek_version}};
    if (plaintext != nullptr) out["plaintext"] = to_base64(plaintext->view());
    print_json(c, out);
    return;
  }
  c.out() << envelope::to_text(ciphertext) << "\n";
  if (plaintext != nullptr) c.out() << to_base64(plaintext->view()) << "\n";
}

int datakey_generate(Context& c) {
  po::options_description options;
  options.add_options()("kek", po::value<std::string>()->required(), "")("bytes", po::value<std::string>(), "")(
      "no-plaintext", po::bool_switch(), "")("plaintext-out", po::value<std::string>(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  std::size_t bytes = 32;
  if (vm.count("bytes")) {
    std::string text = vm["bytes"].as<std::string>();
    if (text != "16" && text != "32") throw Error(ErrorCode::InvalidArgument, "--bytes is 16 or 32, not '" + text + "'");
    bytes = text == "16" ? 16 : 32;
  }
  bool no_plaintext = vm["no-plaintext"].as<bool>();
  std::optional<std::string> plaintext_out = optional_string(vm, "plaintext-out");
  if (no_plaintext && plaintext_out) throw Error(ErrorCode::InvalidArgument, "--no-plaintext and --plaintext-out exclude each other");
  envelope::Context context = context_option(vm, "context");
  // The key file is made ready first, so an unwritable path fails before the token is used.
  std::unique_ptr<PendingFile> key_file;
  if (plaintext_out) key_file = std::make_unique<PendingFile>(*plaintext_out, 0600);
  envelope::DataKey key = c.app().envelope().generate_data_key(vm["kek"].as<std::string>(), context, bytes);
  if (key_file) {
    key_file->commit(std::string_view(reinterpret_cast<const char*>(key.plaintext.data()), key.plaintext.size()));
  }
  print_ciphertext(c, key.ciphertext, no_plaintext || key_file ? nullptr : &key.plaintext);
  return kExitOk;
}

int encrypt(Context& c) {
  po::options_description options;
  options.add_options()("kek", po::value<std::string>()->required(), "")("in", po::value<std::string>(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  envelope::Context context = context_option(vm, "context");
  std::string plaintext = read_input(optional_string(vm, "in"), envelope::kMaxPlaintextBytes, "the plaintext");
  SecretBytes secret(reinterpret_cast<const std::uint8_t*>(plaintext.data()), plaintext.size());
  secure_wipe(plaintext.data(), plaintext.size());
  envelope::Ciphertext ciphertext = c.app().envelope().encrypt(vm["kek"].as<std::string>(), secret.view(), context);
  print_ciphertext(c, ciphertext, nullptr);
  return kExitOk;
}

envelope::Ciphertext read_ciphertext(const po::variables_map& vm) {
  std::string input = read_input(optional_string(vm, "in"), kMaxCiphertextInput, "the ciphertext");
  return envelope::parse_any(std::span(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
}

int decrypt(Context& c) {
  po::options_description options;
  options.add_options()("in", po::value<std::string>(), "")("out", po::value<std::string>(), "")("kek", po::value<std::string>(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  envelope::Context context = context_option(vm, "context");
  envelope::Ciphertext ciphertext = read_ciphertext(vm);
  PendingOutput out(optional_string(vm, "out"), 0600);
  envelope::Decrypted plain = c.app().envelope().decrypt(ciphertext, context, optional_string(vm, "kek"));
  out.stream().write(reinterpret_cast<const char*>(plain.plaintext.data()), static_cast<std::streamsize>(plain.plaintext.size()));
  out.commit();
  return kExitOk;
}

int rewrap(Context& c) {
  po::options_description options;
  options.add_options()("in", po::value<std::string>(), "")("kek", po::value<std::string>(), "")(
      "new-context", po::value<std::vector<std::string>>()->composing(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  envelope::Context context = context_option(vm, "context");
  std::optional<envelope::Context> new_context;
  if (vm.count("new-context")) new_context = context_option(vm, "new-context");
  envelope::Ciphertext ciphertext = read_ciphertext(vm);
  print_ciphertext(c, c.app().envelope().rewrap(ciphertext, context, new_context, optional_string(vm, "kek")), nullptr);
  return kExitOk;
}

// Opens --in (or stdin) as a binary stream.
class Input {
 public:
  explicit Input(const std::optional<std::string>& path) {
    if (path && *path != "-") {
      std::error_code ec;
      if (std::filesystem::is_directory(*path, ec)) throw Error(ErrorCode::InvalidArgument, "cannot read " + *path + ": it is a directory");
      file_.open(*path, std::ios::binary);
      if (!file_) throw Error(ErrorCode::InvalidArgument, "cannot read " + *path + ": " + std::strerror(errno));
    }
  }
  std::istream& stream() { return file_.is_open() ? static_cast<std::istream&>(file_) : std::cin; }
  bool is_stdin() const { return !file_.is_open(); }

 private:
  std::ifstream file_;
};

// The data goes to standard output unless --out names a file: a JSON summary there would corrupt it.
void refuse_json_on_data_output(Context& c, const po::variables_map& vm) {
  if (c.json() && (!vm.count("out") || vm["out"].as<std::string>() == "-")) {
    throw Error(ErrorCode::InvalidArgument, "--json needs --out FILE: without it the data itself goes to standard output");
  }
}

int seal(Context& c) {
  po::options_description options;
  options.add_options()("kek", po::value<std::string>()->required(), "")("in", po::value<std::string>(), "")(
      "out", po::value<std::string>(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  envelope::Context context = context_option(vm, "context");
  refuse_json_on_data_output(c, vm);
  Input in(optional_string(vm, "in"));
  PendingOutput out(optional_string(vm, "out"), 0644);
  // A fresh data key per file; only its wrapped form is kept (in the header).
  envelope::DataKey key = c.app().envelope().generate_data_key(vm["kek"].as<std::string>(), context, 32);
  std::vector<std::uint8_t> wrapped = envelope::encode(key.ciphertext);
  std::uint64_t bytes = envelope::seal(in.stream(), out.stream(), key.plaintext, wrapped);
  // std::cin reads through C stdio, where a read error looks like the end of input.
  if (in.is_stdin() && std::ferror(stdin)) throw Error(ErrorCode::Unavailable, "reading standard input failed");
  out.commit();
  if (c.json()) {
    print_json(c, {{"plaintext_bytes", bytes}, {"kek_version", key.ciphertext.kek_version}, {"out", out.name()}});
  } else if (vm.count("out") && vm["out"].as<std::string>() != "-") {
    c.out() << "sealed " << bytes << " bytes under KEK '" << vm["kek"].as<std::string>() << "' version "
            << key.ciphertext.kek_version << " to " << out.name() << "\n";
  }
  return kExitOk;
}

int unseal(Context& c) {
  po::options_description options;
  options.add_options()("in", po::value<std::string>(), "")("out", po::value<std::string>(), "")("kek", po::value<std::string>(), "");
  add_context_options(options);
  po::variables_map vm = parse_arguments(c.args(), options, {});
  envelope::Context context = context_option(vm, "context");
  refuse_json_on_data_output(c, vm);
  Input in(optional_string(vm, "in"));
  PendingOutput out(optional_string(vm, "out"), 0600);
  envelope::SealHeader header = envelope::read_seal_header(in.stream());
  envelope::Ciphertext wrapped = envelope::decode(header.wrapped_key);
  envelope::Decrypted key = c.app().envelope().decrypt(wrapped, context, optional_string(vm, "kek"));
  // Every segment is verified before commit() makes the output appear.
  std::uint64_t bytes = envelope::unseal(header, in.stream(), out.stream(), key.plaintext);
  out.commit();
  if (c.json()) {
    print_json(c, {{"plaintext_bytes", bytes}, {"kek", key.kek_name}, {"kek_version", key.kek_version}, {"out", out.name()}});
  } else if (vm.count("out") && vm["out"].as<std::string>() != "-") {
    c.out() << "unsealed " << bytes << " bytes (KEK '" << key.kek_name << "' version " << key.kek_version << ") to "
            << out.name() << "\n";
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> envelope_commands() {
  const std::string context = "[--context k=v ...]";
  return {
      {{"kek", "create"}, "kek create NAME [--rotation-period 90d|none] [--max-encryptions N]", "a KEK (AES-256 in the token), version 1", kek_create},
      {{"kek", "rotate"}, "kek rotate NAME", "a new primary version of a KEK", kek_rotate},
      {{"kek", "list"}, "kek list", "list the KEKs", kek_list},
      {{"kek", "show"}, "kek show NAME", "a KEK's versions, states, counts and next rotation", kek_show},
      {{"kek", "disable-version"}, "kek disable-version NAME V", "refuse decryption under an old version", [](Context& c) { return change_version(c, "disable"); }},
      {{"kek", "enable-version"}, "kek enable-version NAME V", "allow decryption under a disabled version again", [](Context& c) { return change_version(c, "enable"); }},
      {{"kek", "destroy-version"}, "kek destroy-version NAME V --yes", "destroy an old version's token object", [](Context& c) { return change_version(c, "destroy"); }},
      {{"datakey", "generate"}, "datakey generate --kek NAME " + context + " [--bytes 32|16] [--no-plaintext | --plaintext-out FILE]", "a data key, encrypted under the KEK", datakey_generate},
      {{"encrypt"}, "encrypt --kek NAME " + context + " [--in FILE]", "encrypt up to 4 KiB under a KEK", encrypt},
      {{"decrypt"}, "decrypt " + context + " [--kek NAME] [--in FILE] [--out FILE]", "decrypt a kh1 ciphertext", decrypt},
      {{"rewrap"}, "rewrap " + context + " [--new-context k=v ...] [--kek NAME] [--in FILE]", "re-encrypt under the primary version", rewrap},
      {{"seal"}, "seal --kek NAME " + context + " [--in FILE] [--out FILE]", "encrypt a file of any size under a fresh data key", seal},
      {{"unseal"}, "unseal " + context + " [--kek NAME] [--in FILE] [--out FILE]", "decrypt a sealed file (all or nothing)", unseal},
  };
}

}  // namespace keyhold::cli
