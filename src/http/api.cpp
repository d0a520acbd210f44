#include "keyhold/http/api.hpp"

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "keyhold/core/duration.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/core/secret.hpp"
#include "keyhold/core/text.hpp"
#include "keyhold/crypto/key_type.hpp"
#include "keyhold/envelope/ciphertext.hpp"
#include "keyhold/service/json_views.hpp"
#include "keyhold/ssh/profile.hpp"

namespace keyhold::http {
namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// A refusal that has no keyhold::ErrorCode of its own (405, 415).
struct Refusal {
  int status;
  std::string code;
  std::string message;
  std::string allow = {};  // 405: the methods the path takes
};

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

Response json_response(const Json& body, int status = 200) {
  Response response;
  response.status = status;
  response.body = body.dump() + "\n";
  return response;
}

Response text_response(std::string body, std::string content_type) {
  Response response;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

Response error_response(int status, std::string_view code, std::string_view message, const std::string& request_id) {
  return json_response({{"error", {{"code", code}, {"message", message}, {"request_id", request_id}}}}, status);
}

// "10.0.0.1:5555" -> "10.0.0.1", "[::1]:5555" -> "[::1]".
std::string host_of(const std::string& address) {
  std::size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// The request body as a JSON object whose keys are all among `known`.
// An empty body is an empty object.
Json body_object(const Request& request, std::initializer_list<std::string_view> known) {
  Json body;
  if (request.body.empty()) {
    body = Json::object();
  } else {
    // A key twice in one object is refused, not "last one wins": a proxy or
    // another reader of the same body (an auditor, a WAF) may take the
    // first, and the two would disagree on what was asked.
    std::vector<std::set<std::string>> objects;  // keys seen, per open object
    std::optional<std::string> duplicate;
    auto track_keys = [&](int, Json::parse_event_t event, Json& parsed) {
      if (event == Json::parse_event_t::object_start) objects.emplace_back();
      if (event == Json::parse_event_t::object_end && !objects.empty()) objects.pop_back();
      if (event == Json::parse_event_t::key && !objects.empty() && !duplicate &&
          !objects.back().insert(parsed.get<std::string>()).second) {
        duplicate = parsed.get<std::string>();
      }
      return true;
    };
    // Not the parser's message: it quotes the body, which may hold plaintext.
    body = Json::parse(request.body, track_keys, false);
    if (body.is_discarded()) invalid("the request body is not valid JSON");
    if (duplicate) invalid("the request body has the key " + shown(*duplicate) + " twice in one object");
    if (!body.is_object()) invalid("the request body must be a JSON object");
  }
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string names;
      for (std::string_view k : known) names += (names.empty() ? "" : ", ") + std::string(k);
      invalid("unknown field " + shown(key) + " in the request body (known: " + (names.empty() ? "none" : names) + ")");
    }
  }
  return body;
}

std::optional<std::string> optional_string(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) invalid(std::string("'") + name + "' must be a string");
  return it->get<std::string>();
}

std::string required_string(const Json& body, const char* name) {
  std::optional<std::string> value = optional_string(body, name);
  if (!value || value->empty()) invalid(std::string("'") + name + "' is required");
  return *value;
}

std::optional<bool> optional_bool(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) invalid(std::string("'") + name + "' must be true or false");
  return it->get<bool>();
}

std::optional<std::uint64_t> optional_count(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned()) invalid(std::string("'") + name + "' must be a whole number from 0");
  return it->get<std::uint64_t>();
}

std::vector<std::string> optional_strings(const Json& body, const char* name) {
  std::vector<std::string> out;
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_array()) invalid(std::string("'") + name + "' must be an array of strings");
  for (const Json& item : *it) {
    if (!item.is_string()) invalid(std::string("'") + name + "' must be an array of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

// An encryption context: an object whose values are strings (validated
// further by the envelope service: canonical_context).
std::optional<envelope::Context> optional_context(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) invalid(std::string("'") + name + "' must be an object of strings");
  envelope::Context context;
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) invalid(std::string("'") + name + "' must be an object of strings");
    context[key] = value.get<std::string>();
  }
  envelope::canonical_context(context);  // refuses a malformed context before anything else
  return context;
}

envelope::Context context_of(const Json& body) { return optional_context(body, "context").value_or(envelope::Context{}); }

// Base64 that may hold plaintext: decoded into wiped memory, never quoted.
SecretBytes secret_base64(const Json& body, const char* name) {
  std::optional<std::string> text = optional_string(body, name);
  if (!text) invalid(std::string("'") + name + "' is required");
  if (text->empty()) return SecretBytes();
  std::optional<std::vector<std::uint8_t>> bytes = from_base64(*text);
  if (!bytes) invalid(std::string("'") + name + "' is not standard base64 with padding");
  SecretBytes secret(bytes->data(), bytes->size());
  secure_wipe(bytes->data(), bytes->size());
  secure_wipe(text->data(), text->size());
  return secret;
}

std::string base64_of(const SecretBytes& secret) { return to_base64(secret.view()); }

envelope::Ciphertext ciphertext_of(const Json& body) {
  return envelope::from_text(required_string(body, "ciphertext"));
}

std::optional<std::string> query_value(const std::map<std::string, std::string>& query, const char* name) {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

// Percent-decoding (RFC 3986) of a query component; '+' stays '+'.
std::string percent_decoded(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || hex(text[i + 1]) < 0 || hex(text[i + 2]) < 0) {
      invalid("the query string has a malformed percent-encoding");
    }
    out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
    i += 2;
  }
  return out;
}

// The query string as name -> value (percent-decoded); unknown names are refused.
std::map<std::string, std::string> parse_query(std::string_view query, std::initializer_list<std::string_view> known) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    std::size_t eq = item.find('=');
    std::string name = percent_decoded(item.substr(0, eq));
    std::string value = percent_decoded(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      invalid("unknown query parameter " + shown(name));
    }
    out[name] = value;
  }
  return out;
}

std::string status_filter(const std::map<std::string, std::string>& query) {
  std::optional<std::string> status = query_value(query, "status");
  if (!status) return {};
  if (*status != "valid" && *status != "revoked" && *status != "expired") {
    invalid("unknown status " + shown(*status) + " (valid, revoked or expired)");
  }
  return *status;
}

std::uint64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

std::uint64_t ssh_time(const std::string& text, const char* name) {
  std::optional<std::chrono::system_clock::time_point> t = parse_utc(text);
  if (!t || *t < std::chrono::system_clock::time_point()) {
    invalid(std::string("'") + name + "' is not a time such as 2030-01-02T03:04:05Z");
  }
  return unix_seconds(*t);
}

}  // namespace

// One request on its way through the API.
struct Api::Call {
  const Request& request;
  service::Caller caller;
  std::string path;
  std::string query;
  std::string parameter;             // the {name} segment of the route
  std::string operation = "unknown";  // for the audit record and the metrics until routed
  std::string resource;
  bool audited = false;  // an Operations call has taken over the audit record
  service::Operations* operations = nullptr;

  // Marks the audit record as the operation's, then returns the operations.
  service::Operations& ops() {
    audited = true;
    return *operations;
  }
};

Api::Api(service::Operations& operations, Metrics& metrics, ApiSettings settings)
    : operations_(operations),
      metrics_(metrics),
      settings_(std::move(settings)),
      limiter_(settings_.rate_limit_per_second, settings_.rate_limit_burst) {}

Response Api::handle(const Request& request) { return dispatch(request, false); }
Response Api::handle_public(const Request& request) { return dispatch(request, true); }

Response Api::dispatch(const Request& request, bool public_listener) {
  SteadyClock::time_point started = SteadyClock::now();
  Call call{request, {}, {}, {}, {}, "unknown", {}, false, &operations_};
  call.caller.identity = public_listener ? std::string() : request.identity;
  call.caller.address = request.client_address;
  call.caller.request_id = request.request_id;
  call.caller.anonymous = public_listener;
  std::size_t question = request.target.find('?');
  call.path = request.target.substr(0, question);
  if (question != std::string::npos) call.query = request.target.substr(question + 1);

  Response response;
  std::string outcome = "allowed";
  std::string failure_code;
  try {
    response = public_listener ? route_public(call) : route(call);
  } catch (const Refusal& refusal) {
    failure_code = refusal.code;
    response = error_response(refusal.status, refusal.code, refusal.message, request.request_id);
    if (!refusal.allow.empty()) response.headers.emplace_back("Allow", refusal.allow);
    if (refusal.status == 429) response.headers.emplace_back("Retry-After", "1");
  } catch (const Error& e) {
    failure_code = std::string(to_string(e.code()));
    if (e.code() == ErrorCode::Internal) {
      log::error("request " + request.request_id + " (" + call.operation + "): " + e.what());
      response = error_response(500, failure_code, "internal error", request.request_id);
    } else {
      response = error_response(status_for(e.code()), failure_code, e.what(), request.request_id);
    }
  } catch (const std::exception& e) {
    failure_code = std::string(to_string(ErrorCode::Internal));
    log::error("request " + request.request_id + " (" + call.operation + "): " + e.what());
    response = error_response(500, failure_code, "internal error", request.request_id);
  }
  if (!failure_code.empty()) {
    outcome = failure_code == to_string(ErrorCode::PermissionDenied) ? "denied" : "failed";
    if (!call.audited) {
      try {
        operations_.record_refusal(call.caller, call.operation, call.resource, failure_code,
                                   std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started));
      } catch (const Error&) {
        // Nothing is answered that is not audited, refusals included.
        response = error_response(503, to_string(ErrorCode::Unavailable), "the audit log cannot be written",
                                  request.request_id);
      }
    }
  }
  metrics_.observe_request(call.operation, outcome, SteadyClock::now() - started);
  return response;
}

namespace {

// Splits "/v1/keks/payments/decrypt" into its segments; empty segments
// (a "//" or a trailing '/') make the path unknown.
std::optional<std::vector<std::string_view>> segments_of(std::string_view path) {
  if (path.empty() || path[0] != '/') return std::nullopt;
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  while (true) {
    std::size_t slash = path.find('/');
    std::string_view segment = path.substr(0, slash);
    if (segment.empty()) return std::nullopt;
    out.push_back(segment);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

struct Route {
  std::vector<std::string_view> pattern;  // "{}" is the parameter
  std::string_view method;
  std::string_view operation;
  std::string_view resource_kind;  // the parameter becomes KIND:NAME; empty: none
};

// Routes in order; the first whose pattern and method match is taken.
const std::vector<Route>& tls_routes() {
  static const std::vector<Route> routes = {
      {{"v1", "health"}, "GET", "health", ""},
      {{"metrics"}, "GET", "metrics", ""},
      {{"v1", "keys"}, "GET", "keys.read", ""},
      {{"v1", "keys"}, "POST", "keys.create", ""},
      {{"v1", "keys", "{}"}, "GET", "keys.read", "key"},
      {{"v1", "keks", "{}"}, "GET", "kek.read", "kek"},
      {{"v1", "keks", "{}", "datakey"}, "POST", "kek.datakey", "kek"},
      {{"v1", "keks", "{}", "encrypt"}, "POST", "kek.encrypt", "kek"},
      {{"v1", "keks", "{}", "decrypt"}, "POST", "kek.decrypt", "kek"},
      {{"v1", "keks", "{}", "rewrap"}, "POST", "kek.rewrap", "kek"},
      {{"v1", "keks", "{}", "rotate"}, "POST", "kek.rotate", "kek"},
      {{"v1", "pki", "{}", "issue"}, "POST", "pki.issue", "ca"},
      {{"v1", "pki", "{}", "renew"}, "POST", "pki.renew", "ca"},
      {{"v1", "pki", "{}", "revoke"}, "POST", "pki.revoke", "ca"},
      {{"v1", "pki", "{}", "chain"}, "GET", "pki.read", "ca"},
      {{"v1", "pki", "{}", "crl"}, "GET", "pki.read", "ca"},
      {{"v1", "pki", "{}", "certs"}, "GET", "pki.read", "ca"},
      {{"v1", "ssh", "{}", "sign"}, "POST", "ssh.sign", "ssh-ca"},
      {{"v1", "ssh", "{}", "renew"}, "POST", "ssh.renew", "ssh-ca"},
      {{"v1", "ssh", "{}", "revoke"}, "POST", "ssh.revoke", "ssh-ca"},
      {{"v1", "ssh", "{}", "ca-key"}, "GET", "ssh.read", "ssh-ca"},
      {{"v1", "ssh", "{}", "krl"}, "GET", "ssh.read", "ssh-ca"},
      {{"v1", "ssh", "{}", "certs"}, "GET", "ssh.read", "ssh-ca"},
  };
  return routes;
}

const std::vector<Route>& public_routes() {
  static const std::vector<Route> routes = {
      {{"v1", "pki", "{}", "chain"}, "GET", "pki.read", "ca"},
      {{"v1", "pki", "{}", "crl"}, "GET", "pki.read", "ca"},
      {{"v1", "ssh", "{}", "ca-key"}, "GET", "ssh.read", "ssh-ca"},
      {{"v1", "ssh", "{}", "krl"}, "GET", "ssh.read", "ssh-ca"},
  };
  return routes;
}

// Finds the route of a request: sets operation, resource and parameter.
// 404 for an unknown path, 405 for a known path with another method.
const Route& find_route(const std::vector<Route>& routes, std::string_view method, std::string_view path,
                        std::string& parameter) {
  std::optional<std::vector<std::string_view>> segments = segments_of(path);
  std::string allowed;
  if (segments) {
    for (const Route& route : routes) {
      if (route.pattern.size() != segments->size()) continue;
      std::string_view value;
      bool match = true;
      for (std::size_t i = 0; i < route.pattern.size() && match; ++i) {
        if (route.pattern[i] == "{}") {
          value = (*segments)[i];
        } else {
          match = route.pattern[i] == (*segments)[i];
        }
      }
      if (!match) continue;
      allowed += (allowed.empty() ? "" : ", ") + std::string(route.method);
      // HEAD is answered like GET (the server sends no body).
      if (route.method == method || (method == "HEAD" && route.method == "GET")) {
        parameter = std::string(value);
        return route;
      }
    }
  }
  if (!allowed.empty()) throw Refusal{405, "method_not_allowed", "this path does not take " + shown(method), allowed};
  throw Error(ErrorCode::NotFound, "no such API path");
}

// What the {name} of an operation's path names, for validate_name's message.
std::string_view name_kind(std::string_view operation) {
  if (operation.rfind("kek.", 0) == 0) return "KEK";
  if (operation.rfind("pki.", 0) == 0) return "CA";
  if (operation.rfind("ssh.", 0) == 0) return "SSH CA";
  return "key";
}

void require_json(const Request& request) {
  if (request.body.empty()) return;
  std::string_view type = request.content_type;
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  std::string lower(type);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower != "application/json") {
    throw Refusal{415, "unsupported_media_type", "the request body must be sent as Content-Type: application/json"};
  }
}

}  // namespace

// The rate limit comes before the route: a request for a path that does not
// exist costs an audit record (and its disk sync) as much as any other.
Response Api::route_public(Call& call) {
  if (!limiter_.allow("address:" + host_of(call.request.client_address))) {
    metrics_.count_rate_limited();
    throw Refusal{429, "resource_exhausted", "too many requests: slow down and retry"};
  }
  const Route& found = find_route(public_routes(), call.request.method, call.path, call.parameter);
  call.operation = std::string(found.operation);
  call.resource = std::string(found.resource_kind) + ":" + call.parameter;
  return route(call);
}

Response Api::route(Call& call) {
  if (call.operation == "unknown") {
    if (!limiter_.allow("identity:" + call.caller.identity)) {
      metrics_.count_rate_limited();
      throw Refusal{429, "resource_exhausted", "too many requests: slow down and retry"};
    }
    const Route& found = find_route(tls_routes(), call.request.method, call.path, call.parameter);
    call.operation = std::string(found.operation);
    if (!found.resource_kind.empty()) call.resource = std::string(found.resource_kind) + ":" + call.parameter;
    if (call.operation == "keys.create") call.resource = "key:";  // named in the body, below
    if (call.operation == "keys.read" && call.parameter.empty()) call.resource = "key:*";
    // The handshake accepts a certificate of any extendedKeyUsage so that a
    // server certificate can renew itself; for anything else it must be a
    // client certificate.
    if (!call.request.client_auth && call.operation != "pki.renew") {
      throw Error(ErrorCode::PermissionDenied,
                  "this certificate is not for client authentication (its extendedKeyUsage lacks clientAuth): it may "
                  "only renew itself (POST /v1/pki/CA/renew)");
    }
  }
  // A {name} that is not a keyhold name names nothing: bad input, not a
  // matter for the policy (which would deny it to every caller, admin too).
  if (!call.parameter.empty()) validate_name(name_kind(call.operation), call.parameter);
  const Request& request = call.request;
  if (request.method == "POST") require_json(request);
  const std::string& name = call.parameter;
  const std::string& op = call.operation;
  std::string last = call.path.substr(call.path.rfind('/') + 1);
  std::map<std::string, std::string> query;
  // Only the pki.read and ssh.read routes take query parameters (parsed
  // below); every other route refuses any, as it refuses unknown fields.
  if (op != "pki.read" && op != "ssh.read") parse_query(call.query, {});

  if (op == "health") {
    query = parse_query(call.query, {});
    Json checks = Json::object();
    bool ok = true;
    for (const auto& [probe, check] : settings_.health_probes) {
      std::string problem;
      try {
        problem = check();
      } catch (const std::exception& e) {
        problem = e.what();
      }
      checks[probe] = problem.empty() ? "ok" : problem;
      ok = ok && problem.empty();
    }
    bool audit_ok = operations_.audit_healthy();
    checks["audit"] = audit_ok ? "ok" : "the audit log cannot be written";
    ok = ok && audit_ok;
    call.audited = true;
    operations_.record_plain(call.caller, "health", ok ? std::nullopt : std::optional(ErrorCode::Unavailable),
                             std::chrono::microseconds(0));
    return json_response({{"status", ok ? "ok" : "unavailable"}, {"checks", checks}}, ok ? 200 : 503);
  }
  if (op == "metrics") {
    query = parse_query(call.query, {});
    call.audited = true;
    operations_.record_plain(call.caller, "metrics", std::nullopt, std::chrono::microseconds(0));
    return text_response(metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
  }

  // keys
  if (op == "keys.read" && name.empty()) {
    query = parse_query(call.query, {});
    service::KeyInventory inventory = call.ops().keys_list(call.caller);
    Json keys = Json::array();
    for (const auto& key : inventory.keys) keys.push_back(service::key_json(key));
    Json unmanaged = Json::array();
    for (const auto& key : inventory.unmanaged) unmanaged.push_back(service::token_key_json(key));
    return json_response({{"keys", keys}, {"unmanaged", unmanaged}});
  }
  if (op == "keys.read") return json_response(service::key_json(call.ops().keys_show(call.caller, name)));
  if (op == "keys.create") {
    Json body = body_object(request, {"name", "type", "purpose"});
    std::string key_name = required_string(body, "name");
    call.resource = "key:" + key_name;
    validate_name("key", key_name);
    std::string type_text = required_string(body, "type");
    std::optional<crypto::KeyType> type = crypto::parse_key_type(type_text);
    if (!type) invalid("unknown key type " + shown(type_text));
    std::optional<crypto::KeyPurpose> purpose;
    if (std::optional<std::string> text = optional_string(body, "purpose")) {
      purpose = crypto::parse_key_purpose(*text);
      if (!purpose) invalid("unknown key purpose " + shown(*text));
    }
    return json_response(service::key_json(call.ops().keys_create(call.caller, key_name, *type, purpose)));
  }

  // KEKs
  if (op == "kek.read") return json_response(service::kek_json(call.ops().kek_show(call.caller, name)));
  if (op == "kek.datakey") {
    Json body = body_object(request, {"context", "bytes", "plaintext"});
    envelope::Context context = context_of(body);
    std::uint64_t bytes = optional_count(body, "bytes").value_or(32);
    if (bytes != 16 && bytes != 32) invalid("'bytes' must be 16 or 32");
    bool with_plaintext = optional_bool(body, "plaintext").value_or(true);
    envelope::DataKey key = call.ops().datakey(call.caller, name, context, bytes);
    Json out = {{"ciphertext", envelope::to_text(key.ciphertext)}, {"kek_version", key.ciphertext.kek_version}};
    if (with_plaintext) out["plaintext"] = base64_of(key.plaintext);
    return json_response(out);
  }
  if (op == "kek.encrypt") {
    Json body = body_object(request, {"plaintext", "context"});
    SecretBytes plaintext = secret_base64(body, "plaintext");
    envelope::Context context = context_of(body);
    envelope::Ciphertext ciphertext = call.ops().encrypt(call.caller, name, plaintext.view(), context);
    return json_response({{"ciphertext", envelope::to_text(ciphertext)}, {"kek_version", ciphertext.kek_version}});
  }
  if (op == "kek.decrypt") {
    Json body = body_object(request, {"ciphertext", "context"});
    envelope::Ciphertext ciphertext = ciphertext_of(body);
    envelope::Context context = context_of(body);
    envelope::Decrypted decrypted = call.ops().decrypt(call.caller, name, ciphertext, context);
    return json_response({{"plaintext", base64_of(decrypted.plaintext)}, {"kek_version", decrypted.kek_version}});
  }
  if (op == "kek.rewrap") {
    Json body = body_object(request, {"ciphertext", "context", "new_context"});
    envelope::Ciphertext ciphertext = ciphertext_of(body);
    envelope::Context context = context_of(body);
    std::optional<envelope::Context> new_context = optional_context(body, "new_context");
    envelope::Ciphertext rewrapped = call.ops().rewrap(call.caller, name, ciphertext, context, new_context);
    return json_response({{"ciphertext", envelope::to_text(rewrapped)}, {"kek_version", rewrapped.kek_version}});
  }
  if (op == "kek.rotate") {
    body_object(request, {});
    return json_response(service::kek_json(call.ops().rotate_kek(call.caller, name)));
  }

  // PKI
  if (op == "pki.issue") {
    Json body = body_object(request, {"profile", "csr", "days"});
    service::PkiIssue issue;
    issue.ca = name;
    issue.profile = required_string(body, "profile");
    issue.csr = required_string(body, "csr");
    if (std::optional<std::uint64_t> days = optional_count(body, "days")) {
      if (*days == 0 || *days > 36500) invalid("'days' must be from 1 to 36500");
      issue.days = static_cast<int>(*days);
    }
    return json_response(service::issued_certificate_json(call.ops().pki_issue(call.caller, issue)));
  }
  if (op == "pki.renew") {
    Json body = body_object(request, {"csr"});
    std::string csr = required_string(body, "csr");
    return json_response(service::issued_certificate_json(
        call.ops().pki_renew(call.caller, name, request.client_certificate, csr)));
  }
  if (op == "ssh.renew") {
    Json body = body_object(request, {"certificate", "public_key"});
    std::string current = required_string(body, "certificate");
    // The content of a -cert.pub file: one line, its end of line dropped.
    while (!current.empty() && (current.back() == '\n' || current.back() == '\r')) current.pop_back();
    std::string public_key = optional_string(body, "public_key").value_or("");
    return json_response(
        service::signed_ssh_certificate_json(call.ops().ssh_renew(call.caller, name, current, public_key)));
  }
  if (op == "pki.revoke") {
    Json body = body_object(request, {"serial", "reason"});
    std::string serial = required_string(body, "serial");
    std::string reason_text = optional_string(body, "reason").value_or("unspecified");
    std::optional<pki::RevocationReason> reason = pki::parse_revocation_reason(reason_text);
    if (!reason) {
      invalid("unknown reason " + shown(reason_text) +
              " (keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, unspecified)");
    }
    store::CertificateRecord record = call.ops().pki_revoke(call.caller, name, serial, *reason);
    return json_response(
        {{"serial", record.serial}, {"revoked_at", *record.revoked_at}, {"reason", *record.revocation_reason}});
  }
  if (op == "pki.read" && last == "chain") {
    query = parse_query(call.query, {});
    std::string pem;
    for (const std::string& certificate : call.ops().pki_chain(call.caller, name)) pem += certificate;
    return text_response(std::move(pem), "application/pem-certificate-chain");
  }
  if (op == "pki.read" && last == "crl") {
    query = parse_query(call.query, {"format"});
    std::string format = query_value(query, "format").value_or("der");
    if (format != "der" && format != "pem") invalid("unknown format " + shown(format) + " (der or pem)");
    pki::CrlResult crl = call.ops().pki_crl(call.caller, name);
    if (format == "pem") return text_response(to_pem("X509 CRL", crl.der), "application/x-pem-file");
    return text_response(std::string(crl.der.begin(), crl.der.end()), "application/pkix-crl");
  }
  if (op == "pki.read" && last == "certs") {
    query = parse_query(call.query, {"status", "expiring_within"});
    store::CertificateFilter filter;
    if (std::string status = status_filter(query); !status.empty()) filter.status = status;
    if (std::optional<std::string> within = query_value(query, "expiring_within")) {
      std::optional<std::chrono::seconds> period = parse_duration(*within);
      if (!period) invalid("'expiring_within' takes a duration such as 30d or 12h");
      filter.not_after_before = format_utc(std::chrono::system_clock::now() + *period);
    }
    Json list = Json::array();
    for (const auto& record : call.ops().pki_certificates(call.caller, name, filter)) {
      list.push_back(service::certificate_json(record));
    }
    return json_response({{"certificates", list}});
  }

  // SSH
  if (op == "ssh.sign") {
    Json body = body_object(request, {"public_key", "type", "key_id", "principals", "profile", "validity", "valid_from",
                                      "valid_to", "options", "extensions", "no_default_extensions"});
    ssh::SignInput input;
    input.ca = name;
    input.public_key = required_string(body, "public_key");
    std::string type = required_string(body, "type");
    std::optional<ssh::CertificateKind> kind = ssh::parse_certificate_kind(type);
    if (!kind) invalid("'type' must be user or host");
    input.kind = *kind;
    input.key_id = required_string(body, "key_id");
    input.principals = optional_strings(body, "principals");
    input.profile = optional_string(body, "profile");
    if (std::optional<std::string> validity = optional_string(body, "validity")) {
      if (body.contains("valid_from") || body.contains("valid_to")) {
        invalid("give 'validity' or 'valid_from'/'valid_to', not both");
      }
      std::optional<std::chrono::seconds> period = parse_duration(*validity);
      if (!period) invalid("'validity' takes a duration such as 8h or 30d");
      input.validity = *period;
    }
    if (std::optional<std::string> from = optional_string(body, "valid_from")) input.valid_from = ssh_time(*from, "valid_from");
    if (std::optional<std::string> to = optional_string(body, "valid_to")) input.valid_to = ssh_time(*to, "valid_to");
    if (auto options = body.find("options"); options != body.end() && !options->is_null()) {
      if (!options->is_object()) invalid("'options' must be an object of strings");
      for (const auto& [option, value] : options->items()) {
        if (!value.is_string()) invalid("'options' must be an object of strings");
        input.options.emplace_back(option, value.get<std::string>());
      }
    }
    input.extensions = optional_strings(body, "extensions");
    input.no_default_extensions = optional_bool(body, "no_default_extensions").value_or(false);
    return json_response(service::signed_ssh_certificate_json(call.ops().ssh_sign(call.caller, std::move(input))));
  }
  if (op == "ssh.revoke") {
    Json body = body_object(request, {"serial", "key_id", "public_key"});
    int given = body.contains("serial") + body.contains("key_id") + body.contains("public_key");
    if (given != 1) invalid("give exactly one of 'serial', 'key_id' and 'public_key'");
    if (body.contains("serial")) {
      // A string (as keyhold writes serials: jq rounds large numbers) or a number.
      const Json& value = body["serial"];
      std::uint64_t serial = 0;
      if (value.is_number_unsigned()) {
        serial = value.get<std::uint64_t>();
      } else if (value.is_string()) {
        const std::string& text = value.get_ref<const std::string&>();
        if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos) {
          invalid("'serial' must be a decimal number");
        }
        try {
          serial = std::stoull(text);
        } catch (const std::exception&) {
          invalid("'serial' must be a decimal number below 2^64");
        }
      } else {
        invalid("'serial' must be a decimal number");
      }
      store::SshCertificateRecord record = call.ops().ssh_revoke_serial(call.caller, name, serial);
      return json_response({{"revoked", 1}, {"serial", std::to_string(record.serial)}});
    }
    if (body.contains("key_id")) {
      std::string key_id = required_string(body, "key_id");
      return json_response({{"revoked", call.ops().ssh_revoke_key_id(call.caller, name, key_id)}});
    }
    std::string key = required_string(body, "public_key");
    return json_response({{"revoked", call.ops().ssh_revoke_key(call.caller, name, key)}});
  }
  if (op == "ssh.read" && last == "ca-key") {
    query = parse_query(call.query, {});
    return text_response(call.ops().ssh_ca_key(call.caller, name).public_key_line + "\n", "text/plain; charset=utf-8");
  }
  if (op == "ssh.read" && last == "krl") {
    query = parse_query(call.query, {});
    ssh::KrlResult krl = call.ops().ssh_krl(call.caller, name);
    return text_response(std::string(krl.krl.begin(), krl.krl.end()), "application/octet-stream");
  }
  if (op == "ssh.read" && last == "certs") {
    query = parse_query(call.query, {"status", "key_id"});
    store::SshCertificateFilter filter;
    if (std::string status = status_filter(query); !status.empty()) filter.status = status;
    filter.key_id = query_value(query, "key_id");
    std::uint64_t now = unix_seconds(std::chrono::system_clock::now());
    Json list = Json::array();
    for (const auto& record : call.ops().ssh_certificates(call.caller, name, filter)) {
      bool expired = record.status == "valid" && record.valid_before <= now;
      list.push_back(service::ssh_certificate_json(record, expired ? "expired" : ""));
    }
    return json_response({{"certificates", list}});
  }
  throw Error(ErrorCode::Internal, "route " + op + " has no handler");
}

}  // namespace keyhold::http
