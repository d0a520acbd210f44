#include "keyhold/core/edit_distance.hpp"
#include "keyhold/core/text.hpp"
#include "keyhold/authz/policy.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "keyhold/core/error.hpp"
#include "keyhold/core/names.hpp"

namespace keyhold::authz {
namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 17> kOperations = {
    "pki.issue",   "pki.renew",   "pki.revoke", "pki.read",   "ssh.sign",    "ssh.renew",
    "ssh.revoke",  "ssh.read",    "kek.datakey", "kek.encrypt", "kek.decrypt", "kek.rewrap",
    "kek.rotate",  "kek.read",    "keys.create", "keys.read",  "audit.read",
};
constexpr std::array<std::string_view, 5> kKinds = {"ca", "ssh-ca", "kek", "key", "audit"};

// Which operations each constraint can say something about; anywhere else it is a load error.
constexpr std::array<std::string_view, 4> kContextOperations = {"kek.datakey", "kek.encrypt", "kek.decrypt",
                                                                "kek.rewrap"};
constexpr std::array<std::string_view, 2> kDnsOperations = {"pki.issue", "pki.renew"};
constexpr std::array<std::string_view, 2> kPrincipalOperations = {"ssh.sign", "ssh.renew"};
constexpr std::array<std::string_view, 4> kProfileOperations = {"pki.issue", "pki.renew", "ssh.sign", "ssh.renew"};

constexpr std::string_view kIdentityVariable = "$identity";
constexpr std::size_t kMaxPatternLength = 1024;
constexpr std::size_t kMaxDnsLength = 253;
constexpr std::size_t kMaxLabelLength = 63;

// ---- Text ------------------------------------------------------------------------


// Request values reach the caller through Decision::reason: shown() keeps them one printable line.
std::string in_quotes(std::string_view value) { return "'" + shown(value) + "'"; }

template <class List>
std::string join(const List& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += shown(item);
  }
  return out;
}

template <class List>
bool contains(const List& items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool has_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}


// The known spelling `value` is most likely a typo of: same but for case, at
// most two edits away, or a singular of a plural key ("identity").
template <class List>
std::optional<std::string_view> closest(std::string_view value, const List& known) {
  const std::string low = ascii_lower(value);
  std::optional<std::string_view> best;
  std::size_t best_distance = 3;
  for (std::string_view name : known) {
    std::string name_low = ascii_lower(name);
    if (name_low == low) return name;
    if (name_low == low + "s" || name_low == low + "es" ||
        (low.ends_with('y') && name_low == low.substr(0, low.size() - 1) + "ies")) {
      return name;
    }
    std::size_t distance = edit_distance(low, name_low);
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  return best;
}

// "unknown operation 'kek.decypt' (did you mean 'kek.decrypt'?)", or with the known list.
template <class List>
std::string unknown(std::string_view what, std::string_view value, const List& known) {
  std::string message = "unknown " + std::string(what) + " " + in_quotes(value);
  if (auto guess = closest(value, known)) return message + " (did you mean '" + std::string(*guess) + "'?)";
  return message + " (known: " + join(known) + ")";
}

// ---- Patterns --------------------------------------------------------------------

// '*' matches one or more characters; nothing else is special. The classic
// greedy matcher with backtracking to the last star, where a star first takes
// the one character it must have.
bool glob(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = ++t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  return p == pattern.size();
}

// glob, with no '*' crossing `separator`: both split into as many parts, matched part by part.
bool glob_within(std::string_view pattern, std::string_view text, char separator) {
  while (true) {
    std::size_t p = pattern.find(separator);
    std::size_t t = text.find(separator);
    if ((p == std::string_view::npos) != (t == std::string_view::npos)) return false;
    if (!glob(pattern.substr(0, p), text.substr(0, t))) return false;
    if (p == std::string_view::npos) return true;
    pattern.remove_prefix(p + 1);
    text.remove_prefix(t + 1);
  }
}

// RFC 3986 section 3.1 scheme, then "://": the identities keyhold treats as URIs.
// Returns the length of "scheme://", or 0.
std::size_t uri_prefix(std::string_view text) {
  if (text.empty() || !is_alpha(text[0])) return 0;
  std::size_t i = 1;
  while (i < text.size() &&
         (is_alpha(text[i]) || is_digit(text[i]) || text[i] == '+' || text[i] == '-' || text[i] == '.')) {
    ++i;
  }
  return text.substr(i).starts_with("://") ? i + 3 : 0;
}

bool is_uri(std::string_view text) { return uri_prefix(text) != 0; }

// The caller's name, for "$identity": a URI's last path segment, a name itself.
std::optional<std::string> name_of(std::string_view identity) {
  if (identity.empty()) return std::nullopt;
  std::size_t prefix = uri_prefix(identity);
  if (prefix == 0) return std::string(identity);
  if (identity.find_first_of("?#") != std::string_view::npos) return std::nullopt;
  std::size_t path = identity.find('/', prefix);
  if (path == std::string_view::npos) return std::nullopt;
  std::string_view segment = identity.substr(identity.rfind('/') + 1);
  if (segment.empty()) return std::nullopt;
  return std::string(segment);
}

bool is_name_pattern_char(char c) { return is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-' || c == '*'; }

// Why `pattern` is not a pattern of keyhold names (resources, profiles), or empty.
std::string name_pattern_problem(std::string_view pattern) {
  if (pattern.empty()) return "is empty";
  if (pattern.find("**") != std::string_view::npos) return "holds '**' (one '*' matches any run of characters)";
  for (char c : pattern) {
    if (!is_name_pattern_char(c)) {
      return "holds " + in_quotes(std::string_view(&c, 1)) +
             ", which cannot be in a name (letters, digits, '.', '_', '-', and '*' as a wildcard)";
    }
  }
  if (pattern.size() > 64) return "is longer than 64 characters, and no name is";
  if (pattern[0] == '.' || pattern[0] == '_' || pattern[0] == '-') {
    return "can never match: names start with a letter or digit";
  }
  return {};
}

enum class IdentityKind { kAny, kUri, kName };

struct IdentityPattern {
  std::string text;
  IdentityKind kind = IdentityKind::kName;
};

bool matches(const IdentityPattern& pattern, std::string_view identity) {
  switch (pattern.kind) {
    case IdentityKind::kAny: return !identity.empty();
    case IdentityKind::kUri: return is_uri(identity) && glob_within(pattern.text, identity, '/');
    case IdentityKind::kName: return !is_uri(identity) && glob_within(pattern.text, identity, '.');
  }
  return false;
}

// Why `pattern` cannot be an identity pattern, or empty; sets its kind.
std::string identity_problem(std::string_view pattern, IdentityKind& kind) {
  if (pattern.empty()) return "is empty";
  if (pattern.size() > kMaxPatternLength) {
    return "is " + std::to_string(pattern.size()) + " bytes long; at most " + std::to_string(kMaxPatternLength) +
           " are allowed";
  }
  if (has_control(pattern)) return "contains a control character";
  if (pattern == "*") {
    kind = IdentityKind::kAny;
    return {};
  }
  if (pattern.front() == '$') {
    return "is a variable: variables such as '$identity' are for constraints in [rule.when], not for naming callers";
  }
  if (pattern.front() == ' ' || pattern.back() == ' ') return "starts or ends with a space";
  if (pattern.find("**") != std::string_view::npos) {
    return "holds '**': '*' matches within one path segment or label, and there is no wildcard across them";
  }
  if (pattern.find('?') != std::string_view::npos && !is_uri(pattern)) {
    return "contains '?', which is not a wildcard here: only '*' is";
  }
  std::size_t prefix = uri_prefix(pattern);
  if (prefix == 0) {
    // It would be a name pattern, which never matches a URI: surely not what was meant.
    std::size_t separator = pattern.find("://");
    if (separator != std::string_view::npos) {
      return "looks like a URI, but " + in_quotes(pattern.substr(0, separator)) +
             " is not a URI scheme (letters, digits, '+', '-', '.'; no '*')";
    }
    kind = IdentityKind::kName;
    return {};
  }
  kind = IdentityKind::kUri;
  if (pattern.find(' ') != std::string_view::npos) return "is a URI and contains a space";
  if (pattern.find_first_of("?#") != std::string_view::npos) {
    return "is a URI with a query or fragment, which an identity never has";
  }
  std::size_t path = pattern.find('/', prefix);
  std::size_t star = pattern.find('*');
  if (star != std::string_view::npos && (path == std::string_view::npos || star < path)) {
    return "has '*' in its scheme or authority: a wildcard there would admit callers of any trust domain or host "
           "(list them one by one)";
  }
  return {};
}

struct ResourcePattern {
  std::string kind;
  std::string name;  // a name pattern
};

// The request's "kind:name", or nullopt when it is not a resource.
std::optional<std::pair<std::string_view, std::string_view>> split_resource(std::string_view resource) {
  std::size_t colon = resource.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return std::pair{resource.substr(0, colon), resource.substr(colon + 1)};
}

// ---- DNS names ------------------------------------------------------------------

// Whether `name` (lower case) is an LDH host name as certificates hold it:
// labels of letters, digits and '-', no trailing dot, and `*` only as a whole
// first label when allow_wildcard.
bool is_ldh_name(std::string_view name, bool allow_wildcard) {
  if (name.empty() || name.size() > kMaxDnsLength) return false;
  if (allow_wildcard && name.starts_with("*.")) name.remove_prefix(2);
  while (true) {
    std::size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > kMaxLabelLength) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!(c >= 'a' && c <= 'z') && !is_digit(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    name.remove_prefix(dot + 1);
  }
}

struct DnsSuffix {
  std::string domain;       // lower case, without the leading dot
  bool below_only = false;  // ".example.org": below it, not example.org itself
};

bool under(std::string_view name, const DnsSuffix& suffix) {
  if (!suffix.below_only && name == suffix.domain) return true;
  return name.size() > suffix.domain.size() + 1 && name.ends_with(suffix.domain) &&
         name[name.size() - suffix.domain.size() - 1] == '.';
}

std::string dns_suffix_problem(std::string_view entry) {
  if (entry.empty()) return "is empty";
  if (entry == ".") return "is only a dot, which would allow every name (list the domains)";
  if (std::any_of(entry.begin(), entry.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    return "holds non-ASCII characters: write IDNs as xn-- A-labels ('.xn--bcher-kva.example')";
  }
  if (entry.back() == '.') return "ends with a dot: write it without the trailing dot";
  if (entry.find('*') != std::string_view::npos) {
    return "holds '*': a suffix needs none ('.example.org' allows every name below example.org)";
  }
  std::string_view domain = entry.front() == '.' ? entry.substr(1) : entry;
  if (!is_ldh_name(ascii_lower(domain), false)) {
    return "is not a DNS domain (labels of 1 to 63 letters, digits and '-', not starting or ending with '-', "
           "separated by dots)";
  }
  return {};
}

// ---- Rules ---------------------------------------------------------------------

struct ContextEntry {
  std::string key;
  std::string value;  // "$identity": the caller's name
};

// A constraint as read, with the line that set it (for messages about it).
template <class T>
struct Constraint {
  std::vector<T> entries;
  std::size_t line = 0;
};

struct Rule {
  std::string name;
  std::vector<IdentityPattern> identities;
  std::vector<std::string> operations;
  std::vector<ResourcePattern> resources;
  std::optional<Constraint<ContextEntry>> context;
  std::optional<Constraint<DnsSuffix>> dns_suffixes;
  std::optional<Constraint<std::string>> principals;  // "$identity" or a pattern
  std::optional<Constraint<std::string>> profiles;    // name patterns
};

bool principal_matches(std::string_view entry, std::string_view principal, const std::optional<std::string>& caller) {
  if (entry == kIdentityVariable) return caller.has_value() && principal == *caller;
  return glob(entry, principal);
}

// The first constraint of `rule` that `request` fails, described without request values; empty if all hold.
std::string failed_constraint(const Rule& rule, const Request& request, const std::optional<std::string>& caller) {
  if (rule.context) {
    for (const ContextEntry& entry : rule.context->entries) {
      auto found = request.context.find(entry.key);
      bool holds = found != request.context.end() &&
                   (entry.value == kIdentityVariable ? caller.has_value() && found->second == *caller
                                                     : found->second == entry.value);
      if (!holds) return "when.context " + in_quotes(entry.key) + " not met";
    }
  }
  if (rule.dns_suffixes) {
    const auto& suffixes = rule.dns_suffixes->entries;
    auto allowed = [&](std::string_view name) {
      std::string low = ascii_lower(name);
      if (!is_ldh_name(low, true)) return false;
      return std::any_of(suffixes.begin(), suffixes.end(), [&](const DnsSuffix& s) { return under(low, s); });
    };
    if (request.dns_names.empty()) return "when.dns_suffixes not met: no DNS name";
    if (!std::all_of(request.dns_names.begin(), request.dns_names.end(), allowed)) {
      return "when.dns_suffixes not met: a DNS name outside the suffixes";
    }
    if (request.common_name && !allowed(*request.common_name)) {
      return "when.dns_suffixes not met: the common name is not a DNS name under the suffixes";
    }
    if (!request.ip_addresses.empty() || !request.uris.empty() || !request.emails.empty()) {
      return "when.dns_suffixes not met: an IP address, URI or email name";
    }
  }
  if (rule.principals) {
    const auto& entries = rule.principals->entries;
    if (request.principals.empty()) return "when.principals not met: no principal";
    for (const std::string& principal : request.principals) {
      if (std::none_of(entries.begin(), entries.end(),
                       [&](const std::string& e) { return principal_matches(e, principal, caller); })) {
        return "when.principals not met";
      }
    }
  }
  if (rule.profiles) {
    const auto& entries = rule.profiles->entries;
    if (!request.profile ||
        std::none_of(entries.begin(), entries.end(), [&](const std::string& e) { return glob(e, *request.profile); })) {
      return "when.profiles not met";
    }
  }
  return {};
}

// ---- Reading the file -----------------------------------------------------------

// Messages are one line, but keys and values in the file may hold control characters.
std::string one_line(std::string_view text) {
  std::string out;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

class Source {
 public:
  explicit Source(std::string name) : name_(std::move(name)) {}
  [[noreturn]] void fail(std::size_t line, std::string_view message) const {
    if (line == 0) fail(message);
    throw Error(ErrorCode::InvalidArgument, one_line(name_ + ":" + std::to_string(line) + ": " + std::string(message)));
  }
  [[noreturn]] void fail(std::string_view message) const {
    throw Error(ErrorCode::InvalidArgument, one_line(name_ + ": " + std::string(message)));
  }

 private:
  std::string name_;
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

std::size_t line_of(const toml::node& node, std::size_t fallback) {
  std::size_t line = node.source().begin.line;
  return line != 0 ? line : fallback;
}

struct Item {
  std::string_view key;
  const toml::node* node;
  std::size_t line;
  std::size_t column;
};

// toml++ keeps a table's keys sorted by name; walk them in file order, so that
// the first problem reported is the first in the file.
std::vector<Item> items_of(const toml::table& table) {
  std::vector<Item> items;
  for (auto&& [key, node] : table) {
    const toml::source_position& at = key.source().begin;
    std::size_t line = at.line != 0 ? at.line : line_of(node, table.source().begin.line);
    items.push_back({key.str(), &node, line, at.column});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  return items;
}

// A key of a rule, as messages name it: "operations", "when.context".
std::string key_name(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? shown(key) : std::string(prefix) + "." + shown(key);
}

// The reader of one [[rule]]: every message starts with the rule's label.
class RuleReader {
 public:
  RuleReader(const Source& source, const toml::table& table, std::size_t number)
      : source_(source), table_(table), header_line_(table.source().begin.line) {
    label_ = "rule #" + std::to_string(number);
    if (const toml::node* name = table.get("name"); name != nullptr && name->is_string()) {
      if (is_valid_name(name->as_string()->get())) label_ = "rule " + in_quotes(name->as_string()->get());
    }
  }

  Rule read() {
    for (const Item& item : items_of(table_)) read_rule_key(item);
    for (std::string_view required : {"name", "identities", "operations", "resources"}) {
      if (!table_.contains(required)) fail(header_line_, "missing required key '" + std::string(required) + "'");
    }
    check_resource_kinds();
    check_constraint_applies(rule_.context ? rule_.context->line : 0, "when.context", kContextOperations);
    check_constraint_applies(rule_.dns_suffixes ? rule_.dns_suffixes->line : 0, "when.dns_suffixes", kDnsOperations);
    check_constraint_applies(rule_.principals ? rule_.principals->line : 0, "when.principals", kPrincipalOperations);
    check_constraint_applies(rule_.profiles ? rule_.profiles->line : 0, "when.profiles", kProfileOperations);
    return std::move(rule_);
  }

  std::size_t name_line() const { return name_line_; }

 private:
  [[noreturn]] void fail(std::size_t line, const std::string& message) const {
    source_.fail(line, label_ + ": " + message);
  }

  void expect(const Item& item, const std::string& name, toml::node_type type, std::string_view example) const {
    if (item.node->type() == type) return;
    std::string message = "'" + name + "' must be " + type_name(type);
    if (type == toml::node_type::array) message += " of strings";
    if (!example.empty()) message += ", as in " + std::string(example);
    fail(item.line, message + "; not " + type_name(item.node->type()));
  }

  // The strings of an array, each with its line; none twice, and not empty.
  std::vector<std::pair<std::string, std::size_t>> strings(const Item& item, const std::string& name,
                                                           std::string_view example, std::string_view what,
                                                           std::string_view empty_hint) const {
    expect(item, name, toml::node_type::array, example);
    const toml::array& array = *item.node->as_array();
    if (array.empty()) fail(item.line, "'" + name + "' must not be empty" + std::string(empty_hint));
    std::vector<std::pair<std::string, std::size_t>> out;
    for (std::size_t i = 0; i < array.size(); ++i) {
      const toml::node& element = array[i];
      std::size_t line = line_of(element, item.line);
      if (!element.is_string()) {
        fail(line, "'" + name + "[" + std::to_string(i) + "]' must be a string, not " + type_name(element.type()));
      }
      std::string text = element.as_string()->get();
      if (text.find('\0') != std::string::npos) {
        fail(line, std::string(what) + " in '" + name + "' contains a NUL character");
      }
      auto seen = std::find_if(out.begin(), out.end(), [&](const auto& entry) { return entry.first == text; });
      if (seen != out.end())
        fail(line, std::string(what) + " " + in_quotes(text) + " is listed twice in '" + name + "'");
      out.emplace_back(std::move(text), line);
    }
    return out;
  }

  void read_rule_key(const Item& item) {
    const std::string name = key_name("", item.key);
    if (item.key == "name") {
      expect(item, name, toml::node_type::string, "\"payments-service\"");
      const std::string& text = item.node->as_string()->get();
      try {
        validate_name("rule", text);
      } catch (const Error& error) {
        fail(item.line, error.what());
      }
      rule_.name = text;
      name_line_ = item.line;
    } else if (item.key == "identities") {
      read_identities(item, name);
    } else if (item.key == "operations") {
      read_operations(item, name);
    } else if (item.key == "resources") {
      read_resources(item, name);
    } else if (item.key == "when") {
      expect(item, name, toml::node_type::table, "[rule.when]");
      for (const Item& when : items_of(*item.node->as_table())) read_when_key(when);
    } else if (contains(std::array<std::string_view, 4>{"context", "dns_suffixes", "principals", "profiles"},
                        item.key)) {
      fail(item.line, "unknown key " + in_quotes(item.key) +
                          ": constraints go in [rule.when] (write [rule.when] "
                          "after the rule's keys, then " +
                          shown(item.key) + " = ...)");
    } else {
      constexpr std::array<std::string_view, 5> kKeys = {"name", "identities", "operations", "resources", "when"};
      fail(item.line, unknown("key", item.key, kKeys));
    }
  }

  void read_identities(const Item& item, const std::string& name) {
    for (auto& [text, line] : strings(item, name, "[\"spiffe://example.org/payments\"]", "identity",
                                      " (a rule must name its callers; \"*\" names every caller)")) {
      IdentityPattern pattern;
      std::string problem = identity_problem(text, pattern.kind);
      if (!problem.empty()) fail(line, "identity " + in_quotes(text) + " " + problem);
      pattern.text = std::move(text);
      rule_.identities.push_back(std::move(pattern));
    }
  }

  void read_operations(const Item& item, const std::string& name) {
    for (auto& [text, line] : strings(item, name, "[\"kek.decrypt\"]", "operation", "")) {
      if (text.find('*') != std::string::npos) {
        fail(line, "operation " + in_quotes(text) +
                       " is a pattern: operations are listed one by one, so that a policy never grants an "
                       "operation added to keyhold after it was written (known: " +
                       join(kOperations) + ")");
      }
      if (!contains(kOperations, text)) fail(line, unknown("operation", text, kOperations));
      line_of_operation_.emplace_back(text, line);
      rule_.operations.push_back(std::move(text));
    }
  }

  void read_resources(const Item& item, const std::string& name) {
    for (auto& [text, line] : strings(item, name, "[\"kek:payments\"]", "resource", "")) {
      auto parts = split_resource(text);
      if (!parts) {
        fail(line, "resource " + in_quotes(text) + " has no kind: write KIND:NAME with KIND one of " + join(kKinds) +
                       " (as in 'kek:" + shown(text) + "')");
      }
      auto [kind, pattern] = *parts;
      if (!contains(kKinds, kind)) fail(line, "resource " + in_quotes(text) + ": " + unknown("kind", kind, kKinds));
      std::string problem = name_pattern_problem(pattern);
      if (!problem.empty()) fail(line, "resource " + in_quotes(text) + ": the name " + problem);
      line_of_resource_.emplace_back(text, line);
      rule_.resources.push_back({std::string(kind), std::string(pattern)});
    }
  }

  void read_when_key(const Item& item) {
    const std::string name = key_name("when", item.key);
    if (item.key == "context") {
      read_context(item, name);
    } else if (item.key == "dns_suffixes") {
      Constraint<DnsSuffix> constraint{{}, item.line};
      std::vector<std::string> seen;
      for (auto& [text, line] :
           strings(item, name, "[\".payments.example.org\"]", "DNS suffix", " (leave it out for no constraint)")) {
        std::string problem = dns_suffix_problem(text);
        if (!problem.empty()) fail(line, "DNS suffix " + in_quotes(text) + " " + problem);
        std::string low = ascii_lower(text);
        if (contains(seen, low)) fail(line, "DNS suffix " + in_quotes(text) + " is listed twice in '" + name + "'");
        seen.push_back(low);
        bool below_only = low.front() == '.';
        constraint.entries.push_back({below_only ? low.substr(1) : low, below_only});
      }
      rule_.dns_suffixes = std::move(constraint);
    } else if (item.key == "principals") {
      Constraint<std::string> constraint{{}, item.line};
      for (auto& [text, line] :
           strings(item, name, "[\"$identity\"]", "principal", " (leave it out for no constraint)")) {
        std::string problem = principal_problem(text);
        if (!problem.empty()) fail(line, "principal " + in_quotes(text) + " " + problem);
        constraint.entries.push_back(std::move(text));
      }
      rule_.principals = std::move(constraint);
    } else if (item.key == "profiles") {
      Constraint<std::string> constraint{{}, item.line};
      for (auto& [text, line] : strings(item, name, "[\"server\"]", "profile", " (leave it out for no constraint)")) {
        std::string problem = name_pattern_problem(text);
        if (!problem.empty()) fail(line, "profile " + in_quotes(text) + " " + problem);
        constraint.entries.push_back(std::move(text));
      }
      rule_.profiles = std::move(constraint);
    } else {
      constexpr std::array<std::string_view, 4> kKeys = {"context", "dns_suffixes", "principals", "profiles"};
      std::string message = "unknown key '" + name + "'";
      if (auto guess = closest(item.key, kKeys)) {
        fail(item.line, message + " (did you mean 'when." + std::string(*guess) + "'?)");
      }
      fail(item.line, message + " (known constraints: " + join(kKeys) + ")");
    }
  }

  void read_context(const Item& item, const std::string& name) {
    expect(item, name, toml::node_type::table, "{ tenant = \"payments\" }");
    Constraint<ContextEntry> constraint{{}, item.line};
    for (const Item& entry : items_of(*item.node->as_table())) {
      const std::string entry_name = name + "." + shown(entry.key);
      if (entry.key.empty()) fail(entry.line, "'" + name + "' has an empty key");
      if (has_control(entry.key)) fail(entry.line, "'" + entry_name + "': the key contains a control character");
      if (!entry.node->is_string()) {
        fail(entry.line, "'" + entry_name + "' must be a string, not " + type_name(entry.node->type()) +
                             " (encryption context values are strings)");
      }
      const std::string& value = entry.node->as_string()->get();
      if (value.empty()) fail(entry.line, "'" + entry_name + "' must not be empty");
      if (value.find('\0') != std::string::npos) fail(entry.line, "'" + entry_name + "' contains a NUL character");
      if (value.front() == '$' && value != kIdentityVariable) {
        fail(entry.line, "'" + entry_name + "': unknown variable " + in_quotes(value) + " (the only one is $identity)");
      }
      constraint.entries.push_back({std::string(entry.key), value});
    }
    if (constraint.entries.empty())
      fail(item.line, "'" + name + "' must not be empty (leave it out for no constraint)");
    rule_.context = std::move(constraint);
  }

  static std::string principal_problem(std::string_view text) {
    if (text.front() == '$') {
      return text == kIdentityVariable ? std::string() : "is an unknown variable (the only one is $identity)";
    }
    if (has_control(text)) return "contains a control character";
    if (text.find(' ') != std::string_view::npos) return "contains a space";
    if (text.find(',') != std::string_view::npos) return "contains a comma (OpenSSH separates principals with commas)";
    if (text.find("**") != std::string_view::npos) return "holds '**' (one '*' matches any run of characters)";
    if (text.find('?') != std::string_view::npos) return "contains '?', which is not a wildcard here: only '*' is";
    if (text.size() > kMaxPatternLength) return "is too long";
    return {};
  }

  // Every operation has a resource of its kind, every resource an operation of its kind:
  // anything else is dead text that its author meant to mean something.
  void check_resource_kinds() const {
    for (const auto& [operation, line] : line_of_operation_) {
      std::string_view kind = *resource_kind(operation);
      bool has = std::any_of(rule_.resources.begin(), rule_.resources.end(),
                             [&](const ResourcePattern& r) { return r.kind == kind; });
      if (!has) {
        fail(line, "operation " + in_quotes(operation) + " acts on " + std::string(kind) +
                       ":NAME resources, and 'resources' names none");
      }
    }
    for (const auto& [resource, line] : line_of_resource_) {
      std::string_view kind = split_resource(resource)->first;
      bool has = std::any_of(rule_.operations.begin(), rule_.operations.end(),
                             [&](const std::string& op) { return *resource_kind(op) == kind; });
      if (!has) {
        std::string acts;
        for (const std::string& op : rule_.operations) {
          if (!acts.empty()) acts += ", ";
          acts += op + " on " + std::string(*resource_kind(op)) + ":NAME";
        }
        fail(line,
             "resource " + in_quotes(resource) + " is not of a kind any operation of the rule acts on (" + acts + ")");
      }
    }
  }

  template <class List>
  void check_constraint_applies(std::size_t line, std::string_view name, const List& applies) const {
    if (line == 0) return;
    for (const std::string& operation : rule_.operations) {
      if (contains(applies, operation)) continue;
      fail(line, "'" + std::string(name) + "' constrains " + join(applies) + " only, and the rule also allows " +
                     operation + ": give " + operation + " a rule of its own");
    }
  }

  const Source& source_;
  const toml::table& table_;
  std::size_t header_line_;
  std::string label_;
  Rule rule_;
  std::size_t name_line_ = 0;
  std::vector<std::pair<std::string, std::size_t>> line_of_operation_;
  std::vector<std::pair<std::string, std::size_t>> line_of_resource_;
};

[[noreturn]] void syntax_error(const toml::parse_error& error, const Source& source) {
  source.fail(error.source().begin.line, std::string(error.description()));
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

std::vector<Rule> read_rules(const toml::table& document, const Source& source) {
  std::vector<Rule> rules;
  std::vector<std::pair<std::string, std::size_t>> names;
  for (const Item& item : items_of(document)) {
    if (item.key != "rule") {
      std::string message = "unknown key " + in_quotes(item.key);
      constexpr std::array<std::string_view, 1> kKeys = {"rule"};
      if (closest(item.key, kKeys) || item.key == "rules")
        source.fail(item.line, message + " (did you mean [[rule]]?)");
      source.fail(item.line, message + ": a policy file holds [[rule]] tables and nothing else");
    }
    const toml::array* array = item.node->as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
      source.fail(item.line, "'rule' must be written as [[rule]] tables (two brackets, one per rule), not as " +
                                 type_name(item.node->type()));
    }
    for (std::size_t i = 0; i < array->size(); ++i) {
      RuleReader reader(source, *array->get(i)->as_table(), i + 1);
      Rule rule = reader.read();
      auto seen = std::find_if(names.begin(), names.end(), [&](const auto& n) { return n.first == rule.name; });
      if (seen != names.end()) {
        source.fail(reader.name_line(), "rule name " + in_quotes(rule.name) + " is used twice (first on line " +
                                            std::to_string(seen->second) + ")");
      }
      names.emplace_back(rule.name, reader.name_line());
      rules.push_back(std::move(rule));
    }
  }
  return rules;
}

}  // namespace

struct Policy::Rules {
  std::vector<Rule> list;
};

std::span<const std::string_view> known_operations() noexcept { return kOperations; }

std::optional<std::string_view> resource_kind(std::string_view operation) noexcept {
  if (!contains(kOperations, operation)) return std::nullopt;
  if (operation.starts_with("pki.")) return "ca";
  if (operation.starts_with("ssh.")) return "ssh-ca";
  if (operation.starts_with("kek.")) return "kek";
  if (operation.starts_with("keys.")) return "key";
  return "audit";
}

Policy Policy::load(const fs::path& file) {
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  fs::path path = (ec ? file : absolute).lexically_normal();
  Source source(path.string());
  fs::file_status status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) source.fail("does not exist");
  if (status.type() == fs::file_type::directory) source.fail("is a directory, not a policy file");
  std::ifstream in(path, std::ios::binary);
  if (!in) source.fail(std::string("cannot be read: ") + std::strerror(errno));
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) source.fail(std::string("cannot be read: ") + std::strerror(errno));
  return parse(text, path.string());
}

Policy Policy::parse(std::string_view toml, std::string_view source_name) {
  Source source{std::string(source_name)};
  toml::table document = parse_toml(toml, source);
  auto rules = std::make_shared<Rules>();
  rules->list = read_rules(document, source);
  return Policy(std::move(rules));
}

Decision Policy::check(const Request& request) const {
  Decision decision;
  const std::string asked = shown(request.operation) + " on " + shown(request.resource);
  auto deny = [&](std::string detail) {
    decision.allowed = false;
    decision.reason = asked + " denied";
    decision.detail = std::move(detail);
    return decision;
  };

  std::optional<std::string_view> kind = resource_kind(request.operation);
  if (!kind) return deny("unknown operation");
  auto resource = split_resource(request.resource);
  if (!resource || resource->first != *kind || !is_valid_name(resource->second)) {
    return deny(request.operation + " acts on " + std::string(*kind) + ":NAME, and the resource is not one");
  }
  if (request.identity.empty()) return deny("no caller identity");

  const std::optional<std::string> caller = name_of(request.identity);
  bool named = false;
  std::string near;
  const std::vector<Rule> none;
  for (const Rule& rule : rules_ ? rules_->list : none) {
    if (std::none_of(rule.identities.begin(), rule.identities.end(),
                     [&](const IdentityPattern& p) { return matches(p, request.identity); })) {
      continue;
    }
    named = true;
    if (!contains(rule.operations, request.operation)) continue;
    if (std::none_of(rule.resources.begin(), rule.resources.end(), [&](const ResourcePattern& r) {
          return r.kind == resource->first && glob(r.name, resource->second);
        })) {
      continue;
    }
    std::string failed = failed_constraint(rule, request, caller);
    if (failed.empty()) {
      decision.allowed = true;
      decision.rule = rule.name;
      return decision;
    }
    if (!near.empty()) near += "; ";
    near += "rule '" + rule.name + "': " + failed;
  }
  if (!near.empty()) return deny(near);
  if (!named) return deny("no rule names the caller");
  return deny("no rule allows the caller this operation on this resource");
}

std::size_t Policy::rules() const noexcept { return rules_ ? rules_->list.size() : 0; }

std::string dev_policy_toml() {
  std::string operations;
  for (std::string_view operation : kOperations) {
    if (!operations.empty()) operations += ", ";
    operations += "\"" + std::string(operation) + "\"";
  }
  return "# Policy for DEVELOPMENT ONLY (made by keyhold init --dev): the client whose\n"
         "# certificate names \"admin\" may do everything; nobody else may do anything.\n"
         "# Write your own (docs/policy.md) before the service holds keys that matter.\n"
         "\n"
         "[[rule]]\n"
         "name = \"dev-admin\"\n"
         "identities = [\"admin\"]\n"
         "operations = [" +
         operations +
         "]\n"
         "resources = [\"ca:*\", \"ssh-ca:*\", \"kek:*\", \"key:*\", \"audit:*\"]\n";
}

}  // namespace keyhold::authz
