#pragma once
// The least-privilege policy of the keyhold service: which caller may do
// which operation on which resource, and under which conditions. Default
// deny: a request is allowed only when a rule allows it. docs/policy.md is
// the user's reference; this is the contract for the code.
//
// The policy file (TOML) is a list of rules:
//
//   [[rule]]
//   name = "payments-service"                       # required, a keyhold name, unique
//   identities = ["spiffe://example.org/payments"]  # required, not empty
//   operations = ["kek.datakey", "kek.decrypt"]     # required, not empty
//   resources = ["kek:payments-*"]                  # required, not empty
//   [rule.when]                                     # optional: constraints, all must hold
//   context = { tenant = "payments" }               # kek.datakey kek.encrypt kek.decrypt kek.rewrap
//   dns_suffixes = [".payments.example.org"]        # pki.issue pki.renew
//   principals = ["$identity", "deploy-*"]          # ssh.sign ssh.renew
//   profiles = ["server"]                           # pki.issue pki.renew ssh.sign ssh.renew
//
// Nothing else may be in the file. Every problem is an InvalidArgument
// "FILE:LINE: rule 'NAME': what is wrong" (rule #N when the rule has no
// valid name; no rule at all for problems outside the rules).
//
// Decision: a request is allowed iff some rule (1) names the caller in
// `identities`, (2) lists the operation, (3) names the resource, and (4) all
// of its constraints hold. Order does not matter; there are no deny rules.
//
// Identities (the caller is the client certificate's URI SAN, else its
// subject CN):
//   - a URI is `scheme://...`; anything else is a name (a CN). A URI pattern
//     only matches URIs, a name pattern only names.
//   - `*` matches one or more characters other than '/' in a URI pattern
//     (within one path segment; not allowed in the scheme or authority), and
//     other than '.' in a name pattern (within one label). `**` is refused.
//   - `"*"` on its own matches every caller.
//   - comparison is exact, byte for byte (case-sensitive).
// Operations: exact names from known_operations(); no wildcards (an old
// policy must not grant an operation added later).
// Resources: `KIND:NAME`, KIND one of ca, ssh-ca, kek, key, audit (see
// resource_kind()); in NAME, `*` matches one or more characters. Every
// resource of a rule must be of the kind of one of its operations, and every
// operation must have a resource of its kind.
// Constraints must apply to every operation of their rule (else a load error):
//   - context: each key present in the request's context with exactly that
//     value ("$identity": the caller's name, see below); other keys allowed.
//   - dns_suffixes: the certificate names at least one DNS name; every DNS
//     name, and the common name if any, is under an entry; and it has no IP,
//     URI or email SAN. ".example.org" means names below example.org;
//     "example.org" means example.org and the names below it. Compared
//     without regard to ASCII case; names must be LDH (IDNs as xn-- A-labels,
//     no trailing dot, `*` only as a whole first label) or the check fails.
//   - principals: at least one principal, each matching an entry: "$identity"
//     (the caller's name) or a pattern where `*` matches one or more characters.
//   - profiles: the request's profile matches an entry (`*` as above).
// The caller's name ("$identity"): for a URI, its last path segment
// (spiffe://example.org/users/alice -> alice; none when the path is empty,
// ends with '/' or the URI has a query or fragment); for a name, the name.
// A constraint that needs the name fails when there is none.

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keyhold::authz {

// The operations the service checks, a closed list: pki.issue pki.renew
// pki.revoke pki.read ssh.sign ssh.renew ssh.revoke ssh.read kek.datakey
// kek.encrypt kek.decrypt kek.rewrap kek.rotate kek.read keys.create
// keys.read audit.read. (pki.renew, ssh.renew: a certificate renewing itself.)
std::span<const std::string_view> known_operations() noexcept;

// The kind of resource an operation acts on: "ca" for pki.*, "ssh-ca" for
// ssh.*, "kek" for kek.*, "key" for keys.*, "audit" for audit.read; nullopt
// for an unknown operation. The service names the resource KIND:NAME.
std::optional<std::string_view> resource_kind(std::string_view operation) noexcept;

// What the service asks. The service fills in everything the operation has,
// as the operation will be carried out (the profile it will use when none
// was named, the names from the CSR and the request merged).
struct Request {
  std::string identity;   // the caller: URI SAN or subject CN
  std::string operation;  // "kek.decrypt"
  std::string resource;   // "kek:payments", "ca:issuing", "ssh-ca:users", "key:web-tls", "audit:main"
  std::map<std::string, std::string> context;  // kek.datakey/encrypt/decrypt/rewrap: encryption context
  // pki.issue: what the certificate would hold.
  std::optional<std::string> common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::vector<std::string> uris;
  std::vector<std::string> emails;
  std::vector<std::string> principals;  // ssh.sign
  std::optional<std::string> profile;   // pki.issue, ssh.sign
};

struct Decision {
  bool allowed = false;
  // When allowed: the name of the first rule (in file order) that allows it (the service's debug log).
  std::string rule;
  // When denied: "kek.decrypt on kek:payments denied", what the caller is told. Names
  // the operation and the resource and nothing more (no rule, no constraint, no value).
  std::string reason;
  // When denied: why, for the server's own log only (info level), never for the
  // caller: which rules came close and which of their constraints failed (names of
  // rules, constraints and context keys; no values from the request).
  std::string detail;
};

// An immutable policy. check() is const and safe to call from many threads at
// once; copies share the rules. A default-constructed Policy has no rules and
// denies everything. To reload, load a new Policy and swap it in.
class Policy {
 public:
  Policy() = default;

  // Reads and parses a policy file. Throws InvalidArgument naming the file,
  // and the line when the problem is in the file.
  static Policy load(const std::filesystem::path& file);
  // Parses policy text; source_name stands for the file in messages.
  static Policy parse(std::string_view toml, std::string_view source_name);

  // Never throws (except std::bad_alloc). An unknown operation, a malformed
  // resource or an empty identity is denied.
  Decision check(const Request& request) const;

  std::size_t rules() const noexcept;

 private:
  struct Rules;  // defined in policy.cpp
  explicit Policy(std::shared_ptr<const Rules> rules) : rules_(std::move(rules)) {}
  std::shared_ptr<const Rules> rules_;
};

// The policy for keyhold init --dev: the caller named "admin" may do every
// operation on every resource; nobody else may do anything.
std::string dev_policy_toml();

}  // namespace keyhold::authz
