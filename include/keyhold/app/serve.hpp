#pragma once
// `keyhold serve`: builds the service from keyhold.toml's [server] section
// -- the policy, the audit log (checkpoints signed by the audit key in the
// token), service::Operations, the API (routes, rate limit, metrics) and the
// HTTPS server with the server's token key -- runs it until SIGTERM or
// SIGINT, and shuts it down in order: stop accepting, let requests in flight
// finish (bounded by the shutdown grace), write a final audit checkpoint.
// SIGHUP reloads keyhold.toml's profiles, the policy file, the server
// certificate and the client CAs and CRLs, without dropping connections; if
// any of them fails to load, nothing changes and the failure is logged.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "keyhold/app/application.hpp"

namespace keyhold::app {

struct ServeOptions {
  std::optional<std::string> listen;  // overrides [server] listen
  // Called once the listeners are bound, with their addresses
  // ("127.0.0.1:8443"; plain empty without a plain listener).
  std::function<void(const std::string& tls, const std::string& plain)> on_listening;
};

// Returns when a SIGTERM or SIGINT has stopped the server: 0 when the final
// audit checkpoint was written, else throws. Throws InvalidArgument without a
// [server] section or for bad settings, and what opening the token, the
// store, the policy or the audit log throws.
int serve(Application& app, const ServeOptions& options);

}  // namespace keyhold::app
