#pragma once
// The routes of `keyhold serve` (docs/api.md is the user's reference): JSON
// in and out, each route one service::Operations call, so that the policy
// check and the one audit record happen there.
//
// On the mTLS listener (handle):
//   GET  /v1/health                      token, store and audit log; 200 or 503
//   GET  /metrics                        Prometheus text
//   GET  /v1/keys                        keys.read (only the keys the caller may read)
//   POST /v1/keys                        keys.create  {"name","type","purpose"?}
//   GET  /v1/keys/{name}                 keys.read
//   GET  /v1/keks/{name}                 kek.read
//   POST /v1/keks/{name}/datakey         kek.datakey  {"context"?,"bytes"?,"plaintext"?}
//   POST /v1/keks/{name}/encrypt         kek.encrypt  {"plaintext","context"?}
//   POST /v1/keks/{name}/decrypt         kek.decrypt  {"ciphertext","context"?}
//   POST /v1/keks/{name}/rewrap          kek.rewrap   {"ciphertext","context"?,"new_context"?}
//   POST /v1/keks/{name}/rotate          kek.rotate   {}
//   POST /v1/pki/{ca}/issue              pki.issue    {"profile","csr","days"?}
//   POST /v1/pki/{ca}/renew              pki.renew    {"csr"}: the client certificate renews itself
//   POST /v1/pki/{ca}/revoke             pki.revoke   {"serial","reason"?}
//   GET  /v1/pki/{ca}/chain              pki.read     PEM
//   GET  /v1/pki/{ca}/crl                pki.read     DER (?format=pem: PEM)
//   GET  /v1/pki/{ca}/certs              pki.read     ?status=&expiring_within=
//   POST /v1/ssh/{ca}/sign               ssh.sign     {"public_key","type","key_id","principals",...}
//   POST /v1/ssh/{ca}/renew              ssh.renew    {"certificate","public_key"?}
//   POST /v1/ssh/{ca}/revoke             ssh.revoke   {"serial"} | {"key_id"} | {"public_key"}
//   GET  /v1/ssh/{ca}/ca-key             ssh.read     text
//   GET  /v1/ssh/{ca}/krl                ssh.read     binary KRL
//   GET  /v1/ssh/{ca}/certs              ssh.read     ?status=&key_id=
// A client certificate whose extendedKeyUsage lacks clientAuth (a server
// certificate) reaches only POST /v1/pki/{ca}/renew; anything else is 403.
// On the plain listener (handle_public), without identity or policy: GET
// /v1/pki/{ca}/chain, /v1/pki/{ca}/crl, /v1/ssh/{ca}/ca-key, /v1/ssh/{ca}/krl.
//
// Every request a Handler sees leaves exactly one audit record: the
// operation's own, or, for a request refused before it reached one (unknown
// route, wrong method or content type, malformed body, rate limit), a
// "failed" record naming what was asked. Health and metrics are recorded as
// operations "health" and "metrics" (no policy: any authenticated caller).
// Errors are {"error":{"code","message","request_id"}} with the status of
// http::status_for, plus 405 method_not_allowed and 415
// unsupported_media_type; messages never carry request data beyond names.
// Thread-safe.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "keyhold/http/metrics.hpp"
#include "keyhold/http/rate_limiter.hpp"
#include "keyhold/http/server.hpp"
#include "keyhold/service/operations.hpp"

namespace keyhold::http {

struct ApiSettings {
  // Per identity on the mTLS listener, per client address on the plain one.
  std::uint64_t rate_limit_per_second = 500;  // 0: no limit
  std::uint64_t rate_limit_burst = 1000;
  // GET /v1/health: named probes besides the audit log ("token", "store");
  // each returns "" when fine, else what is wrong (shown to the caller, so
  // free of secrets).
  std::vector<std::pair<std::string, std::function<std::string()>>> health_probes;
};

class Api {
 public:
  Api(service::Operations& operations, Metrics& metrics, ApiSettings settings);

  Response handle(const Request& request);         // the mTLS listener
  Response handle_public(const Request& request);  // the plain listener

 private:
  struct Call;
  Response dispatch(const Request& request, bool public_listener);
  Response route(Call& call);
  Response route_public(Call& call);

  service::Operations& operations_;
  Metrics& metrics_;
  ApiSettings settings_;
  RateLimiter limiter_;
};

}  // namespace keyhold::http
