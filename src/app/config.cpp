#include "keyhold/app/config.hpp"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <system_error>

#include "keyhold/core/edit_distance.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/hsm/uri.hpp"
#include "keyhold/pki/profile.hpp"
#include "keyhold/ssh/profile.hpp"

namespace keyhold::app {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kMaxSessionsLimit = 4096;
constexpr const char* kDefaultStoreFile = "keyhold.db";
constexpr std::chrono::seconds kMinCrlNextUpdate{3600};
constexpr std::chrono::seconds kMaxCrlNextUpdate{366 * 24 * 3600};

// Messages are one line (the CLI prints them as such and logs parse them by
// line), but keys, URIs and file names may hold control characters.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

// The file being read: names it in messages and anchors relative paths.
class Source {
 public:
  explicit Source(const fs::path& file) {
    std::error_code ec;
    fs::path absolute = fs::absolute(file, ec);
    file_ = (ec ? file : absolute).lexically_normal();
    directory_ = file_.parent_path();
  }

  const fs::path& file() const noexcept { return file_; }
  const fs::path& directory() const noexcept { return directory_; }

  [[noreturn]] void fail(std::size_t line, std::string_view message) const {
    throw Error(ErrorCode::InvalidArgument, one_line(file_.string() + ":" + std::to_string(line) + ": " +
                                                     std::string(message)));
  }
  [[noreturn]] void fail(std::string_view message) const {
    throw Error(ErrorCode::InvalidArgument, one_line(file_.string() + ": " + std::string(message)));
  }

  // Relative to the configuration's directory, so the file means the same from any cwd.
  fs::path resolve(const fs::path& path) const {
    if (path.is_absolute()) return path;
    return (directory_ / path).lexically_normal();
  }

  // Shared opening of every "there is a PIN in this file" refusal.
  std::string pin_refused() const {
    return "a PIN in " + file_.filename().string() + " is refused (anyone who can read the file has it); ";
  }

 private:
  fs::path file_;
  fs::path directory_;
};

// ---- The schema walker -----------------------------------------------------
// A section of keyhold.toml is a Table of Fields; the walker checks names,
// types and required keys, and hands each value to its Field's reader, which
// checks what is particular to it (ranges, URIs) and stores it in the Config.
// Adding a section is adding a Table to config_schema() and its readers.

// One key of the file, as the walker hands it to a reader.
struct Entry {
  std::string name;  // dotted, for messages: token.max_sessions
  std::string_view key;
  const toml::node& node;  // already of the Field's type
  std::size_t line;
  // The key of the table holding it ("server" for profiles.server.dns; empty
  // at the root): how a reader of a repeated section finds what it fills.
  std::string_view table;
};

using Reader = void (*)(const Entry& entry, const Source& source, Config& config);

struct Table;

// A key a table may hold: a value given to `read`, or a sub-table walked with `table`.
struct Field {
  std::string_view name;
  toml::node_type type;
  bool required = false;
  Reader read = nullptr;
  std::shared_ptr<const Table> table;
};

// Keys refused whatever their value, with their own message (a PIN), rather
// than as unknown. Compared case-insensitively with '-' as '_' so that "PIN"
// or "user-pin" get the helpful message too.
struct Refusal {
  std::vector<std::string_view> keys;
  std::string message;
};

struct Table {
  std::vector<Field> fields;
  std::vector<Refusal> refusals;
  // An open table such as [token.env]: any key not in `fields` must have this
  // type and goes to read_other. Unset: such keys are unknown.
  std::optional<toml::node_type> other_type;
  Reader read_other = nullptr;
  // An open table of tables such as [profiles]: each other key is a table,
  // given to read_other first and then walked with this schema.
  std::shared_ptr<const Table> other_table;
  // Called with the table's own Entry once its keys are walked: checks across keys.
  Reader finish = nullptr;
};

std::string type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// A key as TOML would write it, so token."a.b" is not mistaken for token.a.b.
std::string key_text(std::string_view key) {
  if (is_bare_key(key)) return std::string(key);
  std::string out = "\"";
  for (char c : key) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string dotted(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return key_text(key);
  return std::string(prefix) + "." + key_text(key);
}

std::string normalised_key(std::string_view key) {
  std::string out(key);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '-') c = '_';
  }
  return out;
}


// "unknown key 'token.pin_fle' (did you mean 'token.pin_file'?)": a typo is
// the usual cause, so name the closest known key, or list them all.
std::string unknown_key_message(const Entry& entry, std::string_view prefix, const Table& schema) {
  std::string message = "unknown key '" + entry.name + "'";
  const Field* closest = nullptr;
  std::size_t best = 3;  // more than two edits away is not a typo
  for (const Field& field : schema.fields) {
    std::size_t distance = edit_distance(normalised_key(entry.key), normalised_key(field.name));
    if (distance < best) {
      best = distance;
      closest = &field;
    }
  }
  if (closest != nullptr) return message + " (did you mean '" + dotted(prefix, closest->name) + "'?)";
  if (schema.fields.empty()) return message;
  message += prefix.empty() ? " (known keys: " : " (known keys in [" + std::string(prefix) + "]: ";
  for (std::size_t i = 0; i < schema.fields.size(); ++i) {
    if (i > 0) message += ", ";
    message += schema.fields[i].name;
  }
  return message + ")";
}

std::size_t line_of(const toml::key& key, const toml::node& node) {
  std::size_t line = key.source().begin.line;
  return line != 0 ? line : node.source().begin.line;
}

void walk(const toml::table& table, const Table& schema, std::string_view prefix, std::string_view table_key,
          const Source& source, Config& config) {
  // toml++ keeps a table's keys sorted by name; walk them in file order so the
  // first problem reported is the first in the file and [token.env] keeps its order.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [key, node] : table) entries.emplace_back(&key, &node);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const toml::source_position& pa = a.first->source().begin;
    const toml::source_position& pb = b.first->source().begin;
    return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
  });

  for (const auto& [key, node] : entries) {
    const Entry entry{dotted(prefix, key->str()), key->str(), *node, line_of(*key, *node), table_key};

    const std::string normal = normalised_key(entry.key);
    for (const Refusal& refusal : schema.refusals) {
      for (std::string_view refused : refusal.keys) {
        if (normal == normalised_key(refused)) source.fail(entry.line, refusal.message);
      }
    }

    auto field = std::find_if(schema.fields.begin(), schema.fields.end(),
                              [&](const Field& f) { return f.name == entry.key; });
    bool known = field != schema.fields.end();
    if (!known && !schema.other_type) source.fail(entry.line, unknown_key_message(entry, prefix, schema));

    toml::node_type expected = known ? field->type : *schema.other_type;
    if (node->type() != expected) {
      source.fail(entry.line,
                  "'" + entry.name + "' must be " + type_name(expected) + ", not " + type_name(node->type()));
    }
    Reader read = known ? field->read : schema.read_other;
    if (read != nullptr) read(entry, source, config);
    const Table* sub = known ? field->table.get() : schema.other_table.get();
    if (sub != nullptr) {
      walk(*node->as_table(), *sub, entry.name, entry.key, source, config);
      if (sub->finish != nullptr) sub->finish(entry, source, config);
    }
  }

  for (const Field& field : schema.fields) {
    if (!field.required || table.contains(field.name)) continue;
    std::string name = dotted(prefix, field.name);
    std::string message = field.type == toml::node_type::table ? "missing required table [" + name + "]"
                                                                : "missing required key '" + name + "'";
    // Point at the section's header; the root has none.
    std::size_t header = prefix.empty() ? 0 : table.source().begin.line;
    if (header != 0) source.fail(header, message);
    source.fail(message);
  }
}

// ---- Readers ---------------------------------------------------------------

std::string text_of(const Entry& entry, const Source& source) {
  std::string text = entry.node.as_string()->get();
  // Paths, URIs and environment values all end up as C strings, which would cut at a NUL.
  if (text.find('\0') != std::string::npos) {
    source.fail(entry.line, "'" + entry.name + "' must not contain a NUL character");
  }
  return text;
}

std::string non_empty_text_of(const Entry& entry, const Source& source) {
  std::string text = text_of(entry, source);
  if (text.empty()) source.fail(entry.line, "'" + entry.name + "' must not be empty");
  return text;
}

void read_module(const Entry& entry, const Source& source, Config& config) {
  std::string module = non_empty_text_of(entry, source);
  // Module::load takes anything with a '/' as a path: anchor it like every other path here.
  if (module.find('/') != std::string::npos) module = source.resolve(module).string();
  config.token.module = std::move(module);
}

bool mentions_pin_value(std::string_view uri) {
  std::string lower = normalised_key(uri);
  return lower.find("pin_value") != std::string::npos;
}

void read_uri(const Entry& entry, const Source& source, Config& config) {
  std::string text = non_empty_text_of(entry, source);
  const std::string refused = source.pin_refused() + "drop pin-value from '" + entry.name +
                              "' and put the PIN in a file with mode 0600, named by pin-source=file:PATH in the "
                              "URI or by pin_file";
  std::optional<hsm::Uri> uri;
  try {
    uri.emplace(hsm::Uri::parse(text));
  } catch (const Error& error) {
    // p11-kit's complaint quotes the URI, PIN and all (and "PIN-VALUE=" fails
    // to parse): refuse for the PIN instead of echoing it.
    if (mentions_pin_value(text)) source.fail(entry.line, refused);
    source.fail(entry.line, error.what());
  }
  if (uri->has_pin_value()) source.fail(entry.line, refused);
  config.token.uri = std::move(text);
}

void read_pin_file(const Entry& entry, const Source& source, Config& config) {
  config.token.pin_file = source.resolve(non_empty_text_of(entry, source));
}

void read_max_sessions(const Entry& entry, const Source& source, Config& config) {
  std::int64_t value = entry.node.as_integer()->get();
  if (value < 0 || value > kMaxSessionsLimit) {
    source.fail(entry.line, "'" + entry.name + "' must be between 1 and " + std::to_string(kMaxSessionsLimit) +
                                " (or 0 for the token's own limit), not " + std::to_string(value));
  }
  config.token.max_sessions = static_cast<std::size_t>(value);
}

bool is_environment_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

void read_environment_variable(const Entry& entry, const Source& source, Config& config) {
  if (!is_environment_name(entry.key)) {
    source.fail(entry.line, "'" + entry.name +
                                "' is not a valid environment variable name (letters, digits and '_', not "
                                "starting with a digit)");
  }
  // Taken literally: no expansion, no path resolution (the module reads them, not keyhold).
  config.token.environment.emplace_back(std::string(entry.key), text_of(entry, source));
}

void read_store_path(const Entry& entry, const Source& source, Config& config) {
  config.store.path = source.resolve(non_empty_text_of(entry, source));
}

// ---- [pki] and [profiles.NAME] ---------------------------------------------

// A duration from low to high; `range` says so in messages ("1h and 366d").
std::chrono::seconds duration_of(const Entry& entry, const Source& source, std::chrono::seconds low,
                                 std::chrono::seconds high, std::string_view range) {
  std::string text = text_of(entry, source);
  // The syntax of every duration keyhold reads ("--expiring-within 30d" too).
  std::optional<std::chrono::seconds> duration = keyhold::parse_duration(text);
  if (!duration) {
    source.fail(entry.line, "'" + entry.name + "' must be a duration such as '90m', '12h', '7d' or '2w', not '" +
                                text + "'");
  }
  if (*duration < low || *duration > high) {
    source.fail(entry.line, "'" + entry.name + "' must be between " + std::string(range) + ", not '" + text + "'");
  }
  return *duration;
}

void read_crl_next_update(const Entry& entry, const Source& source, Config& config) {
  config.pki.crl_next_update = duration_of(entry, source, kMinCrlNextUpdate, kMaxCrlNextUpdate, "1h and 366d");
}

// The profile a key of [profiles.NAME] belongs to; read_profile made it.
pki::Profile& profile_of(const Entry& entry, Config& config) {
  return config.pki.profiles.at(std::string(entry.table));
}

// [profiles.NAME] itself: the name, before its keys are walked.
void read_profile(const Entry& entry, const Source& source, Config& config) {
  try {
    pki::validate_profile_name(entry.key);
  } catch (const Error& error) {
    source.fail(entry.line, error.what());
  }
  pki::Profile profile;
  profile.name = std::string(entry.key);
  config.pki.profiles.emplace(profile.name, std::move(profile));
}

// The strings of an array, each with its own line (arrays may span lines).
std::vector<std::pair<std::string, std::size_t>> strings_of(const Entry& entry, const Source& source) {
  std::vector<std::pair<std::string, std::size_t>> strings;
  const toml::array& array = *entry.node.as_array();
  for (std::size_t i = 0; i < array.size(); ++i) {
    const toml::node& element = array[i];
    std::size_t line = element.source().begin.line != 0 ? element.source().begin.line : entry.line;
    std::string name = entry.name + "[" + std::to_string(i) + "]";
    if (!element.is_string()) {
      source.fail(line, "'" + name + "' must be a string, not " + type_name(element.type()));
    }
    std::string text = element.as_string()->get();
    if (text.find('\0') != std::string::npos) source.fail(line, "'" + name + "' must not contain a NUL character");
    strings.emplace_back(std::move(text), line);
  }
  return strings;
}

// A list of a profile, each entry checked by pki (which names the value and the rule).
template <std::vector<std::string> pki::Profile::*kMember, void (*kCheck)(std::string_view), bool kNonEmpty>
void read_profile_list(const Entry& entry, const Source& source, Config& config) {
  std::vector<std::string> values;
  for (auto& [text, line] : strings_of(entry, source)) {
    try {
      kCheck(text);
    } catch (const Error& error) {
      source.fail(line, "'" + entry.name + "': " + error.what());
    }
    values.push_back(std::move(text));
  }
  if (kNonEmpty && values.empty()) source.fail(entry.line, "'" + entry.name + "' must not be empty");
  profile_of(entry, config).*kMember = std::move(values);
}

template <int pki::Profile::*kMember, std::int64_t kLow, std::int64_t kHigh>
void read_profile_integer(const Entry& entry, const Source& source, Config& config) {
  std::int64_t value = entry.node.as_integer()->get();
  if (value < kLow || value > kHigh) {
    source.fail(entry.line, "'" + entry.name + "' must be between " + std::to_string(kLow) + " and " +
                                std::to_string(kHigh) + ", not " + std::to_string(value));
  }
  profile_of(entry, config).*kMember = static_cast<int>(value);
}

template <bool pki::Profile::*kMember>
void read_profile_flag(const Entry& entry, const Source&, Config& config) {
  profile_of(entry, config).*kMember = entry.node.as_boolean()->get();
}

// Checks across the keys of [profiles.NAME], once they are all read.
void finish_profile(const Entry& entry, const Source& source, Config& config) {
  pki::Profile& profile = config.pki.profiles.at(std::string(entry.key));
  const toml::table& table = *entry.node.as_table();
  auto line_of_key = [&](std::string_view key) {
    const toml::node* node = table.get(key);
    std::size_t line = node != nullptr ? node->source().begin.line : 0;
    return line != 0 ? line : entry.line;
  };
  const bool has_default = table.contains("default_days");
  const bool has_max = table.contains("max_days");
  // max_days alone brings the default down with it: "max_days = 30" means
  // 30-day certificates unless a request asks for fewer.
  if (!has_default && profile.default_days > profile.max_days) profile.default_days = profile.max_days;
  if (profile.default_days > profile.max_days) {
    source.fail(line_of_key(has_default ? "default_days" : "max_days"),
                "'" + entry.name + ".default_days' (" + std::to_string(profile.default_days) +
                    ") must not be more than max_days (" + std::to_string(profile.max_days) +
                    (has_max ? ")" : ", the default)"));
  }
  try {
    pki::validate_profile(profile);
  } catch (const Error& error) {
    source.fail(entry.line, error.what());
  }
}

std::shared_ptr<Table> profile_schema() {
  using pki::Profile;
  constexpr auto kList = toml::node_type::array;
  constexpr auto kInteger = toml::node_type::integer;
  constexpr auto kBoolean = toml::node_type::boolean;
  auto profile = std::make_shared<Table>();
  profile->fields = {
      {"key_types", kList, false, read_profile_list<&Profile::key_types, pki::validate_key_type, true>, nullptr},
      {"min_rsa_bits", kInteger, false,
       read_profile_integer<&Profile::min_rsa_bits, pki::kMinRsaBits, pki::kMaxRsaBits>, nullptr},
      {"default_days", kInteger, false, read_profile_integer<&Profile::default_days, 1, pki::kMaxProfileDays>,
       nullptr},
      {"max_days", kInteger, false, read_profile_integer<&Profile::max_days, 1, pki::kMaxProfileDays>, nullptr},
      {"key_usage", kList, false, read_profile_list<&Profile::key_usage, pki::validate_key_usage, true>, nullptr},
      {"extended_key_usage", kList, false,
       read_profile_list<&Profile::extended_key_usage, pki::validate_extended_key_usage, true>, nullptr},
      {"dns", kList, false, read_profile_list<&Profile::dns, pki::validate_dns_pattern, false>, nullptr},
      {"ip", kList, false, read_profile_list<&Profile::ip, pki::validate_ip_range, false>, nullptr},
      {"uri", kList, false, read_profile_list<&Profile::uri, pki::validate_uri_pattern, false>, nullptr},
      {"email", kList, false, read_profile_list<&Profile::email, pki::validate_email_pattern, false>, nullptr},
      {"require_san", kBoolean, false, read_profile_flag<&Profile::require_san>, nullptr},
      {"subject_fields", kList, false,
       read_profile_list<&Profile::subject_fields, pki::validate_subject_field, false>, nullptr},
      {"crl_distribution_points", kList, false,
       read_profile_list<&Profile::crl_distribution_points, pki::validate_url, false>, nullptr},
      {"ocsp_urls", kList, false, read_profile_list<&Profile::ocsp_urls, pki::validate_url, false>, nullptr},
      {"ca_issuers_urls", kList, false, read_profile_list<&Profile::ca_issuers_urls, pki::validate_url, false>,
       nullptr},
      {"development_only", kBoolean, false, read_profile_flag<&Profile::development_only>, nullptr},
  };
  // Keys of SSH profiles, written into an X.509 one: say where they belong.
  // ("extensions" is left out: there it more likely means X.509 extensions.)
  for (std::string_view key : {"kind", "principals", "critical_options", "default_validity", "max_validity"}) {
    profile->refusals.push_back({{key}, "'" + std::string(key) +
                                            "' is a key of SSH profiles, which are [ssh_profiles.NAME] tables; "
                                            "[profiles.NAME] is an X.509 certificate profile"});
  }
  profile->finish = finish_profile;
  return profile;
}

// ---- [ssh_profiles.NAME] -----------------------------------------------------

// The SSH profile a key of [ssh_profiles.NAME] belongs to; read_ssh_profile made it.
ssh::Profile& ssh_profile_of(const Entry& entry, Config& config) {
  return config.ssh.profiles.at(std::string(entry.table));
}

// [ssh_profiles.NAME] itself: the name, before its keys are walked. The
// profile starts as a user profile; finish_ssh_profile fits the defaults to
// its kind.
void read_ssh_profile(const Entry& entry, const Source& source, Config& config) {
  try {
    ssh::validate_profile_name(entry.key);
  } catch (const Error& error) {
    source.fail(entry.line, error.what());
  }
  std::string name(entry.key);
  config.ssh.profiles.emplace(name, ssh::make_profile(name, ssh::CertificateKind::User));
}

void read_ssh_kind(const Entry& entry, const Source& source, Config& config) {
  std::string text = text_of(entry, source);
  std::optional<ssh::CertificateKind> kind = ssh::parse_certificate_kind(text);
  if (!kind) source.fail(entry.line, "'" + entry.name + "' must be \"user\" or \"host\", not '" + text + "'");
  ssh_profile_of(entry, config).kind = *kind;
}

// Principal patterns are checked by the rules of every kind here; those of
// host names wait for finish_ssh_profile, which knows the kind.
void check_any_principal_pattern(std::string_view pattern) {
  ssh::validate_principal_pattern(pattern, ssh::CertificateKind::User);
}

// A list of an SSH profile, each entry checked by ssh (which names the value and the rule), none twice.
template <std::vector<std::string> ssh::Profile::*kMember, void (*kCheck)(std::string_view), bool kNonEmpty>
void read_ssh_list(const Entry& entry, const Source& source, Config& config) {
  std::vector<std::string> values;
  for (auto& [text, line] : strings_of(entry, source)) {
    try {
      kCheck(text);
    } catch (const Error& error) {
      source.fail(line, "'" + entry.name + "': " + error.what());
    }
    if (std::find(values.begin(), values.end(), text) != values.end()) {
      source.fail(line, "'" + entry.name + "': '" + text + "' is listed twice");
    }
    values.push_back(std::move(text));
  }
  if (kNonEmpty && values.empty()) source.fail(entry.line, "'" + entry.name + "' must not be empty");
  ssh_profile_of(entry, config).*kMember = std::move(values);
}

void read_ssh_min_rsa_bits(const Entry& entry, const Source& source, Config& config) {
  std::int64_t value = entry.node.as_integer()->get();
  if (value < ssh::kMinRsaBits || value > ssh::kMaxRsaBits) {
    source.fail(entry.line, "'" + entry.name + "' must be between " + std::to_string(ssh::kMinRsaBits) + " and " +
                                std::to_string(ssh::kMaxRsaBits) + ", not " + std::to_string(value));
  }
  ssh_profile_of(entry, config).min_rsa_bits = static_cast<int>(value);
}

template <std::chrono::seconds ssh::Profile::*kMember>
void read_ssh_validity(const Entry& entry, const Source& source, Config& config) {
  ssh_profile_of(entry, config).*kMember = duration_of(entry, source, ssh::kMinValidity, ssh::kMaxValidity,
                                                       "1m and 3650d");
}

void read_ssh_development_only(const Entry& entry, const Source&, Config& config) {
  ssh_profile_of(entry, config).development_only = entry.node.as_boolean()->get();
}

// "8h", "30d": how a default appears in messages.
std::string duration_text(std::chrono::seconds duration) {
  long long s = duration.count();
  if (s % 86400 == 0 && s >= 3 * 86400) return std::to_string(s / 86400) + "d";
  if (s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

// Checks across the keys of [ssh_profiles.NAME], once they are all read, and
// the defaults that depend on other keys.
void finish_ssh_profile(const Entry& entry, const Source& source, Config& config) {
  ssh::Profile& profile = config.ssh.profiles.at(std::string(entry.key));
  const toml::table& table = *entry.node.as_table();
  auto line_of_key = [&](std::string_view key) {
    const toml::node* node = table.get(key);
    std::size_t line = node != nullptr ? node->source().begin.line : 0;
    return line != 0 ? line : entry.line;
  };
  auto line_of_element = [&](std::string_view key, std::size_t index) {
    const toml::array* array = table.get_as<toml::array>(key);
    std::size_t line = array != nullptr && index < array->size() ? (*array)[index].source().begin.line : 0;
    return line != 0 ? line : line_of_key(key);
  };
  auto text_or_default = [&](std::string_view key, std::chrono::seconds value) {
    const toml::node* node = table.get(key);
    return node != nullptr && node->is_string() ? node->as_string()->get() : duration_text(value);
  };
  const std::string name = entry.name;

  // max_validity alone brings the default down with it, as max_days does.
  const bool has_default = table.contains("default_validity");
  const bool has_max = table.contains("max_validity");
  if (!has_default && profile.default_validity > profile.max_validity) {
    profile.default_validity = profile.max_validity;
  }
  if (profile.default_validity > profile.max_validity) {
    source.fail(line_of_key(has_default ? "default_validity" : "max_validity"),
                "'" + name + ".default_validity' (" + text_or_default("default_validity", profile.default_validity) +
                    ") must not be more than max_validity (" +
                    text_or_default("max_validity", profile.max_validity) + (has_max ? ")" : ", the default)"));
  }

  if (profile.kind == ssh::CertificateKind::Host) {
    struct HostEmpty {
      std::string_view key;
      std::vector<std::string> ssh::Profile::*member;
      std::string_view why;
    };
    for (const HostEmpty& list :
         {HostEmpty{"extensions", &ssh::Profile::extensions, "host certificates carry no extensions"},
          HostEmpty{"default_extensions", &ssh::Profile::default_extensions, "host certificates carry no extensions"},
          HostEmpty{"critical_options", &ssh::Profile::critical_options,
                    "host certificates carry no critical options (ssh refuses a host certificate that has any)"}}) {
      if (!table.contains(list.key)) {
        (profile.*list.member).clear();  // the user defaults do not apply
      } else if (!(profile.*list.member).empty()) {
        source.fail(line_of_key(list.key), "'" + name + "." + std::string(list.key) + "' must be empty in a profile "
                                           "with kind = \"host\": " + std::string(list.why));
      }
    }
    for (std::size_t i = 0; i < profile.principals.size(); ++i) {
      try {
        ssh::validate_principal_pattern(profile.principals[i], ssh::CertificateKind::Host);
      } catch (const Error& error) {
        source.fail(line_of_element("principals", i), "'" + name + ".principals': " + error.what());
      }
    }
  } else if (!table.contains("default_extensions")) {
    // Without default_extensions, the standard defaults that extensions allows.
    std::erase_if(profile.default_extensions, [&](const std::string& extension) {
      return std::find(profile.extensions.begin(), profile.extensions.end(), extension) == profile.extensions.end();
    });
  } else {
    for (std::size_t i = 0; i < profile.default_extensions.size(); ++i) {
      const std::string& extension = profile.default_extensions[i];
      if (std::find(profile.extensions.begin(), profile.extensions.end(), extension) != profile.extensions.end()) {
        continue;
      }
      std::string allowed;
      for (const std::string& e : profile.extensions) allowed += (allowed.empty() ? "" : ", ") + e;
      source.fail(line_of_element("default_extensions", i),
                  "'" + name + ".default_extensions': extension '" + extension + "' is not in extensions (" +
                      (allowed.empty() ? std::string("it is empty") : allowed) +
                      (table.contains("extensions") ? ")" : ", the default)"));
    }
  }

  try {
    ssh::validate_profile(profile);
  } catch (const Error& error) {
    source.fail(entry.line, error.what());
  }
}

std::shared_ptr<Table> ssh_profile_schema() {
  using ssh::Profile;
  constexpr auto kList = toml::node_type::array;
  constexpr auto kString = toml::node_type::string;
  auto profile = std::make_shared<Table>();
  profile->fields = {
      {"kind", kString, true, read_ssh_kind, nullptr},
      {"principals", kList, false, read_ssh_list<&Profile::principals, check_any_principal_pattern, true>, nullptr},
      {"key_types", kList, false, read_ssh_list<&Profile::key_types, ssh::validate_key_type, true>, nullptr},
      {"min_rsa_bits", toml::node_type::integer, false, read_ssh_min_rsa_bits, nullptr},
      {"default_validity", kString, false, read_ssh_validity<&Profile::default_validity>, nullptr},
      {"max_validity", kString, false, read_ssh_validity<&Profile::max_validity>, nullptr},
      {"extensions", kList, false, read_ssh_list<&Profile::extensions, ssh::validate_extension_name, false>, nullptr},
      {"default_extensions", kList, false,
       read_ssh_list<&Profile::default_extensions, ssh::validate_extension_name, false>, nullptr},
      {"critical_options", kList, false,
       read_ssh_list<&Profile::critical_options, ssh::validate_critical_option_name, false>, nullptr},
      {"development_only", toml::node_type::boolean, false, read_ssh_development_only, nullptr},
  };
  // Keys of X.509 profiles, written into an SSH one: say where they belong.
  for (std::string_view key : {"dns", "ip", "uri", "email", "key_usage", "extended_key_usage", "default_days",
                               "max_days", "require_san", "subject_fields", "crl_distribution_points", "ocsp_urls",
                               "ca_issuers_urls"}) {
    profile->refusals.push_back({{key}, "'" + std::string(key) +
                                            "' is a key of X.509 certificate profiles, which are [profiles.NAME] "
                                            "tables; [ssh_profiles.NAME] is an SSH certificate profile"});
  }
  profile->finish = finish_ssh_profile;
  return profile;
}

// ---- [server] ----------------------------------------------------------------

constexpr std::int64_t kMaxCheckpointRecords = 1000000;
constexpr std::int64_t kMaxCheckpointSeconds = 86400;
constexpr std::int64_t kMinBodyLimit = 1024;
constexpr std::int64_t kMaxBodyLimit = 64 * 1024 * 1024;
constexpr std::int64_t kMaxConnectionsLimit = 1000000;
constexpr std::int64_t kMaxThreads = 1024;
constexpr std::int64_t kMaxRate = 1000000;
constexpr std::int64_t kMaxBurst = 10000000;

// [server] itself: present, so `keyhold serve` has settings (defaults until its keys are read).
void read_server(const Entry&, const Source&, Config& config) { config.server.emplace(); }

ListenAddress listen_address_of(const Entry& entry, const Source& source) {
  try {
    return parse_listen_address(text_of(entry, source));
  } catch (const Error& error) {
    source.fail(entry.line, "'" + entry.name + "': " + error.what());
  }
}

void read_listen(const Entry& entry, const Source& source, Config& config) {
  listen_address_of(entry, source);
  config.server->listen = text_of(entry, source);
}

void read_plain_listen(const Entry& entry, const Source& source, Config& config) {
  listen_address_of(entry, source);
  config.server->plain_listen = text_of(entry, source);
}

void read_tls12(const Entry& entry, const Source&, Config& config) {
  config.server->tls12 = entry.node.as_boolean()->get();
}

// A CA or key name, by the rules of every keyhold name.
std::string name_of(const Entry& entry, const Source& source, std::string_view what) {
  std::string text = text_of(entry, source);
  try {
    validate_name(what, text);
  } catch (const Error& error) {
    source.fail(entry.line, "'" + entry.name + "': " + error.what());
  }
  return text;
}

void read_server_ca(const Entry& entry, const Source& source, Config& config) {
  config.server->ca = name_of(entry, source, "CA");
}

void read_server_key(const Entry& entry, const Source& source, Config& config) {
  config.server->key = name_of(entry, source, "key");
}

void read_audit_key(const Entry& entry, const Source& source, Config& config) {
  config.server->audit_key = name_of(entry, source, "key");
}

template <fs::path ServiceSettings::*kMember>
void read_server_path(const Entry& entry, const Source& source, Config& config) {
  (*config.server).*kMember = source.resolve(non_empty_text_of(entry, source));
}

// An array of file names, each resolved; none empty, none twice.
template <std::vector<fs::path> ServiceSettings::*kMember, bool kNonEmpty>
void read_server_paths(const Entry& entry, const Source& source, Config& config) {
  std::vector<fs::path> paths;
  for (auto& [text, line] : strings_of(entry, source)) {
    if (text.empty()) source.fail(line, "'" + entry.name + "' must not hold an empty file name");
    fs::path path = source.resolve(text);
    if (std::find(paths.begin(), paths.end(), path) != paths.end()) {
      source.fail(line, "'" + entry.name + "': '" + text + "' is listed twice");
    }
    paths.push_back(std::move(path));
  }
  if (kNonEmpty && paths.empty()) {
    source.fail(entry.line, "'" + entry.name + "' must not be empty: name at least one CA certificate file (PEM)");
  }
  (*config.server).*kMember = std::move(paths);
}

std::int64_t integer_of(const Entry& entry, const Source& source, std::int64_t low, std::int64_t high,
                        std::string_view zero_means = {}) {
  std::int64_t value = entry.node.as_integer()->get();
  if (value < low || value > high) {
    std::string range = "between " + std::to_string(low) + " and " + std::to_string(high);
    if (!zero_means.empty()) range += " (0: " + std::string(zero_means) + ")";
    source.fail(entry.line, "'" + entry.name + "' must be " + range + ", not " + std::to_string(value));
  }
  return value;
}

void read_checkpoint_records(const Entry& entry, const Source& source, Config& config) {
  config.server->audit_checkpoint_records =
      static_cast<std::uint64_t>(integer_of(entry, source, 0, kMaxCheckpointRecords, "no checkpoint by count"));
}

void read_checkpoint_seconds(const Entry& entry, const Source& source, Config& config) {
  config.server->audit_checkpoint_seconds =
      std::chrono::seconds(integer_of(entry, source, 0, kMaxCheckpointSeconds, "no checkpoint by time"));
}

void read_body_limit(const Entry& entry, const Source& source, Config& config) {
  config.server->body_limit = static_cast<std::size_t>(integer_of(entry, source, kMinBodyLimit, kMaxBodyLimit));
}

void read_header_timeout(const Entry& entry, const Source& source, Config& config) {
  config.server->header_timeout =
      duration_of(entry, source, std::chrono::seconds(1), std::chrono::seconds(600), "1s and 10m");
}

void read_idle_timeout(const Entry& entry, const Source& source, Config& config) {
  config.server->idle_timeout =
      duration_of(entry, source, std::chrono::seconds(1), std::chrono::seconds(3600), "1s and 1h");
}

void read_max_connections(const Entry& entry, const Source& source, Config& config) {
  config.server->max_connections = static_cast<std::size_t>(integer_of(entry, source, 1, kMaxConnectionsLimit));
}

void read_threads(const Entry& entry, const Source& source, Config& config) {
  config.server->threads = static_cast<std::size_t>(integer_of(entry, source, 0, kMaxThreads, "one per CPU core"));
}

void read_rate(const Entry& entry, const Source& source, Config& config) {
  config.server->rate_limit_per_second = static_cast<std::uint64_t>(integer_of(entry, source, 0, kMaxRate, "no limit"));
}

void read_burst(const Entry& entry, const Source& source, Config& config) {
  config.server->rate_limit_burst = static_cast<std::uint64_t>(integer_of(entry, source, 1, kMaxBurst));
}

void read_maintain_every(const Entry& entry, const Source& source, Config& config) {
  std::string text = text_of(entry, source);
  if (text == "off") {
    config.server->maintain_every.reset();
    return;
  }
  if (!keyhold::parse_duration(text)) {
    source.fail(entry.line, "'" + entry.name + "' must be a duration such as '15m', '1h' or '1d', or 'off', not '" +
                                text + "'");
  }
  config.server->maintain_every = duration_of(entry, source, std::chrono::seconds(1), std::chrono::days(1),
                                              "1s and 1d (or 'off')");
}

void read_maintain_publish_dir(const Entry& entry, const Source& source, Config& config) {
  config.server->maintain_publish_dir = source.resolve(non_empty_text_of(entry, source));
}

void read_maintain_expiring_within(const Entry& entry, const Source& source, Config& config) {
  config.server->maintain_expiring_within =
      duration_of(entry, source, std::chrono::seconds(3600), std::chrono::days(3650), "1h and 3650d");
}

// Checks across the keys of [server], once they are all read.
void finish_server(const Entry& entry, const Source& source, Config& config) {
  const ServiceSettings& server = *config.server;
  const toml::table& table = *entry.node.as_table();
  auto line_of_key = [&](std::string_view key) {
    const toml::node* node = table.get(key);
    std::size_t line = node != nullptr ? node->source().begin.line : 0;
    return line != 0 ? line : entry.line;
  };
  if (server.audit_checkpoint_records == 0 && server.audit_checkpoint_seconds.count() == 0) {
    source.fail(line_of_key(table.contains("audit_checkpoint_seconds") ? "audit_checkpoint_seconds"
                                                                        : "audit_checkpoint_records"),
                "'" + entry.name + ".audit_checkpoint_records' and '" + entry.name +
                    ".audit_checkpoint_seconds' are both 0: the audit log would never be signed; set at least one");
  }
  if (server.plain_listen) {
    ListenAddress tls = parse_listen_address(server.listen);
    ListenAddress plain = parse_listen_address(*server.plain_listen);
    if (tls.port != 0 && tls.port == plain.port && normalised_key(tls.host) == normalised_key(plain.host)) {
      source.fail(line_of_key("plain_listen"), "'" + entry.name + ".plain_listen' (" + *server.plain_listen +
                                                   ") is the address of listen: give the plain-HTTP listener its "
                                                   "own port");
    }
  }
}

std::shared_ptr<Table> server_schema() {
  constexpr auto kString = toml::node_type::string;
  constexpr auto kInteger = toml::node_type::integer;
  constexpr auto kList = toml::node_type::array;
  auto server = std::make_shared<Table>();
  server->fields = {
      {"listen", kString, false, read_listen, nullptr},
      {"plain_listen", kString, false, read_plain_listen, nullptr},
      {"tls12", toml::node_type::boolean, false, read_tls12, nullptr},
      {"ca", kString, false, read_server_ca, nullptr},
      {"certificate_file", kString, true, read_server_path<&ServiceSettings::certificate_file>, nullptr},
      {"key", kString, true, read_server_key, nullptr},
      {"client_ca_files", kList, true, read_server_paths<&ServiceSettings::client_ca_files, true>, nullptr},
      {"crl_files", kList, false, read_server_paths<&ServiceSettings::crl_files, false>, nullptr},
      {"policy_file", kString, true, read_server_path<&ServiceSettings::policy_file>, nullptr},
      {"audit_log", kString, true, read_server_path<&ServiceSettings::audit_log>, nullptr},
      {"audit_key", kString, true, read_audit_key, nullptr},
      {"audit_checkpoint_records", kInteger, false, read_checkpoint_records, nullptr},
      {"audit_checkpoint_seconds", kInteger, false, read_checkpoint_seconds, nullptr},
      {"body_limit", kInteger, false, read_body_limit, nullptr},
      {"header_timeout", kString, false, read_header_timeout, nullptr},
      {"idle_timeout", kString, false, read_idle_timeout, nullptr},
      {"max_connections", kInteger, false, read_max_connections, nullptr},
      {"threads", kInteger, false, read_threads, nullptr},
      {"rate_limit_per_second", kInteger, false, read_rate, nullptr},
      {"rate_limit_burst", kInteger, false, read_burst, nullptr},
      {"maintain_every", kString, false, read_maintain_every, nullptr},
      {"maintain_publish_dir", kString, false, read_maintain_publish_dir, nullptr},
      {"maintain_expiring_within", kString, false, read_maintain_expiring_within, nullptr},
  };
  // The server's private key is in the token; a key file is what it must not have.
  server->refusals = {{{"key_file", "private_key", "private_key_file", "tls_key", "tls_key_file"},
                       "the server's private key stays in the token: name the token key with 'key' (a keyhold "
                       "key name), not a key file"}};
  server->finish = finish_server;
  return server;
}

Table config_schema(const Source& source) {
  auto environment = std::make_shared<Table>();
  environment->other_type = toml::node_type::string;
  environment->read_other = read_environment_variable;
  // The module would not read it, but keyhold would: it is the development PIN source.
  environment->refusals = {{{"KEYHOLD_PIN"},
                            source.pin_refused() +
                                "drop KEYHOLD_PIN from [token.env]: put the PIN in a file with mode 0600 and set "
                                "pin_file, or, for development, set KEYHOLD_PIN in keyhold's own environment"}};

  auto token = std::make_shared<Table>();
  token->fields = {
      {"module", toml::node_type::string, true, read_module, nullptr},
      {"uri", toml::node_type::string, true, read_uri, nullptr},
      {"pin_file", toml::node_type::string, false, read_pin_file, nullptr},
      {"max_sessions", toml::node_type::integer, false, read_max_sessions, nullptr},
      {"env", toml::node_type::table, false, nullptr, environment},
  };
  token->refusals = {{{"pin", "pin_value", "user_pin", "so_pin"},
                      source.pin_refused() +
                          "put the PIN in a file with mode 0600 and set pin_file, or use KEYHOLD_PIN for development"}};

  auto store = std::make_shared<Table>();
  store->fields = {{"path", toml::node_type::string, false, read_store_path, nullptr}};

  auto pki = std::make_shared<Table>();
  pki->fields = {{"crl_next_update", toml::node_type::string, false, read_crl_next_update, nullptr}};

  // [profiles.NAME]: any number, the table name is the profile's.
  auto profiles = std::make_shared<Table>();
  profiles->other_type = toml::node_type::table;
  profiles->read_other = read_profile;
  profiles->other_table = profile_schema();

  // [ssh_profiles.NAME]: any number, the table name is the profile's.
  auto ssh_profiles = std::make_shared<Table>();
  ssh_profiles->other_type = toml::node_type::table;
  ssh_profiles->read_other = read_ssh_profile;
  ssh_profiles->other_table = ssh_profile_schema();

  Table root;
  root.fields = {
      {"token", toml::node_type::table, true, nullptr, token},
      {"store", toml::node_type::table, false, nullptr, store},
      {"pki", toml::node_type::table, false, nullptr, pki},
      {"profiles", toml::node_type::table, false, nullptr, profiles},
      {"ssh_profiles", toml::node_type::table, false, nullptr, ssh_profiles},
      {"server", toml::node_type::table, false, read_server, server_schema()},
  };
  return root;
}

[[noreturn]] void syntax_error(const toml::parse_error& error, const Source& source) {
  const toml::source_position& at = error.source().begin;
  throw Error(ErrorCode::InvalidArgument, one_line(source.file().string() + ":" + std::to_string(at.line) + ":" +
                                                   std::to_string(at.column) + ": " +
                                                   std::string(error.description())));
}

toml::table parse_toml(std::string_view text, const Source& source) {
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text);
  } catch (const toml::parse_error& error) {
    syntax_error(error, source);
  }
#else
  toml::parse_result result = toml::parse(text);
  if (!result) syntax_error(result.error(), source);
  return std::move(result).table();
#endif
}

// ---- find_config -----------------------------------------------------------

// The path chosen by `rule` ("--config names"), checked to be a file.
fs::path chosen(const fs::path& path, const std::string& rule) {
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) absolute = path;
  absolute = absolute.lexically_normal();
  fs::file_status status = fs::status(absolute, ec);
  std::string what = rule + " " + absolute.string();
  if (status.type() == fs::file_type::not_found) {
    throw Error(ErrorCode::InvalidArgument, one_line(what + ", which does not exist"));
  }
  if (ec) throw Error(ErrorCode::InvalidArgument, one_line(what + ", which cannot be examined: " + ec.message()));
  if (status.type() == fs::file_type::directory) {
    throw Error(ErrorCode::InvalidArgument, one_line(what + ", which is a directory, not a configuration file"));
  }
  return absolute;
}

bool exists_quietly(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

}  // namespace

namespace {

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t start = 0;
  while (start <= host.size()) {
    std::size_t end = host.find('.', start);
    if (end == std::string_view::npos) end = host.size();
    std::string_view label = host.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace

ListenAddress parse_listen_address(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::InvalidArgument,
                 one_line("listen address '" + std::string(text) + "' is not HOST:PORT or [IPv6]:PORT: " + why));
  };
  if (text.empty()) throw bad("it is empty");
  ListenAddress address;
  std::string_view port;
  if (text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) throw bad("no ']' after the IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') throw bad("no ':PORT' after ']'");
    address.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
    in6_addr ip6{};
    if (::inet_pton(AF_INET6, address.host.c_str(), &ip6) != 1) {
      throw bad("'" + address.host + "' is not an IPv6 address");
    }
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) throw bad("no port");
    address.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (address.host.find(':') != std::string::npos) throw bad("an IPv6 address needs brackets, as in [::1]:8443");
    if (address.host.empty()) throw bad("no host (0.0.0.0 or [::] listens on every interface)");
    bool numeric = std::all_of(address.host.begin(), address.host.end(),
                               [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    in_addr ip4{};
    if (numeric && ::inet_pton(AF_INET, address.host.c_str(), &ip4) != 1) {
      throw bad("'" + address.host + "' is not an IPv4 address");
    }
    if (!numeric && !is_host_name(address.host)) {
      throw bad("'" + address.host + "' is neither an IP address nor a host name");
    }
  }
  if (port.empty()) throw bad("no port");
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw bad("the port '" + std::string(port) + "' is not a number from 0 to 65535");
  }
  unsigned long value = std::stoul(std::string(port));
  if (value > 65535) throw bad("the port " + std::to_string(value) + " is over 65535");
  address.port = static_cast<std::uint16_t>(value);
  return address;
}

fs::path find_config(const std::optional<fs::path>& flag, const fs::path& system_file) {
  if (flag) return chosen(*flag, "--config names");
  const char* variable = std::getenv(kConfigEnvironmentVariable);
  if (variable != nullptr && *variable != '\0') {
    return chosen(variable, std::string(kConfigEnvironmentVariable) + " names");
  }
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec && exists_quietly(cwd / kConfigFileName)) return chosen(cwd / kConfigFileName, "the current directory has");
  if (exists_quietly(system_file)) return chosen(system_file, "the system configuration is");
  std::string local = ec ? std::string("./") + kConfigFileName : (cwd / kConfigFileName).string();
  throw Error(ErrorCode::InvalidArgument,
              one_line("no configuration file: no --config given, " + std::string(kConfigEnvironmentVariable) +
                       " not set, and neither " + local + " nor " + system_file.string() +
                       " exists; run keyhold init --dev, or pass --config FILE"));
}

Config load_config(const fs::path& file) {
  Source source(file);
  std::error_code ec;
  fs::file_status status = fs::status(source.file(), ec);
  if (status.type() == fs::file_type::not_found) source.fail("does not exist");
  if (status.type() == fs::file_type::directory) source.fail("is a directory, not a configuration file");
  std::ifstream in(source.file(), std::ios::binary);
  if (!in) source.fail(std::string("cannot be read: ") + std::strerror(errno));
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) source.fail(std::string("cannot be read: ") + std::strerror(errno));
  return parse_config(text, source.file());
}

Config parse_config(std::string_view text, const fs::path& file) {
  Source source(file);
  Config config;
  config.file = source.file();
  config.directory = source.directory();
  config.store.path = source.resolve(kDefaultStoreFile);

  toml::table document = parse_toml(text, source);
  walk(document, config_schema(source), "", "", source, config);
  return config;
}

std::string dev_profiles_toml() {
  // Every name allowed: trying keyhold needs no editing, and issuance warns
  // about development_only on every certificate.
  auto profile = [](const char* name, const char* key_usage, const char* extended_key_usage) {
    return std::string("[profiles.") + name +
           "]\n"
           "development_only = true\n"
           "key_types = [\"rsa\", \"ec-p256\", \"ec-p384\", \"ed25519\"]\n"
           "min_rsa_bits = 2048\n"
           "default_days = 90\n"
           "max_days = 397\n"
           "key_usage = " + key_usage + "\n"
           "extended_key_usage = " + extended_key_usage + "\n"
           "dns = [\"*\"]\n"
           "ip = [\"0.0.0.0/0\", \"::/0\"]\n"
           "uri = [\"*\"]\n"
           "email = [\"*\"]\n"
           "require_san = true\n"
           "subject_fields = [\"CN\", \"O\", \"OU\", \"L\", \"ST\", \"C\", \"serialNumber\"]\n";
  };
  // Every principal allowed, for the same reason; `user` and `host` are the
  // profiles ssh sign uses when none is named.
  auto ssh_profile = [](const char* name, const char* default_validity, const char* max_validity,
                        const std::string& user_lists) {
    return std::string("[ssh_profiles.") + name +
           "]\n"
           "development_only = true\n"
           "kind = \"" + name + "\"\n"
           "principals = [\"*\"]\n"
           "key_types = [\"ed25519\", \"ecdsa\", \"rsa\"]\n"
           "min_rsa_bits = 2048\n"
           "default_validity = \"" + default_validity + "\"\n"
           "max_validity = \"" + max_validity + "\"\n" +
           user_lists;
  };
  const std::string standard_extensions =
      "[\"permit-X11-forwarding\", \"permit-agent-forwarding\", \"permit-port-forwarding\", \"permit-pty\", "
      "\"permit-user-rc\"]";
  return "# Certificate profiles for DEVELOPMENT ONLY (made by keyhold init --dev): they\n"
         "# allow any DNS name, IP address, URI and email address, and SSH certificates\n"
         "# for any principal. Write your own (docs/configuration.md) before issuing\n"
         "# certificates that matter.\n"
         "\n"
         "[pki]\n"
         "crl_next_update = \"7d\"\n"
         "\n" +
         profile("server", "[\"digitalSignature\", \"keyEncipherment\"]", "[\"serverAuth\"]") + "\n" +
         profile("client", "[\"digitalSignature\"]", "[\"clientAuth\"]") + "\n" +
         ssh_profile("user", "8h", "24h",
                     "extensions = " + standard_extensions + "\n" + "default_extensions = " + standard_extensions +
                         "\n"
                         "critical_options = [\"force-command\", \"source-address\", \"verify-required\"]\n") +
         "\n" + ssh_profile("host", "30d", "365d", "");
}


std::string dev_server_toml() {
  return "\n"
         "# The service (keyhold serve), for DEVELOPMENT ONLY: its TLS key and the audit\n"
         "# key are in the token; ca.pem is the CA to trust, admin.pem and admin-key.pem\n"
         "# are a client certificate and key for the identity \"admin\", which\n"
         "# policy.toml allows everything.\n"
         "[server]\n"
         "listen = \"127.0.0.1:8443\"\n"
         "ca = \"dev\"\n"
         "certificate_file = \"server.pem\"\n"
         "key = \"server-tls\"\n"
         "client_ca_files = [\"ca.pem\"]\n"
         "policy_file = \"policy.toml\"\n"
         "audit_log = \"audit.log\"\n"
         "audit_key = \"audit\"\n"
         "audit_checkpoint_records = 1000\n"
         "audit_checkpoint_seconds = 60\n";
}

}  // namespace keyhold::app
