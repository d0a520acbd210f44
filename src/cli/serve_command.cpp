// keyhold serve

#include <iostream>
#include <optional>
#include <string>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/app/serve.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

int serve(Context& c) {
  po::options_description options;
  options.add_options()("listen", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  app::ServeOptions serve_options;
  if (vm.count("listen")) serve_options.listen = vm["listen"].as<std::string>();
  serve_options.on_listening = [&c](const std::string& tls, const std::string& plain) {
    if (c.json()) {
      c.out() << nlohmann::json({{"listening", tls}, {"plain", plain.empty() ? nlohmann::json(nullptr) : nlohmann::json(plain)}}).dump()
              << std::endl;
    } else {
      c.out() << "keyhold serve: listening on https://" << tls;
      if (!plain.empty()) c.out() << " and http://" << plain << " (public material only)";
      c.out() << std::endl;  // flushed: scripts and tests wait for this line
    }
  };
  int status = app::serve(c.app(), serve_options);
  if (!c.json()) c.out() << "keyhold serve: stopped; the audit log is complete and signed" << std::endl;
  return status;
}

}  // namespace

std::vector<Command> serve_commands() {
  return {{{"serve"}, "serve [--listen ADDR:PORT]", "run the key-management service (HTTPS, mTLS; [server] in keyhold.toml)",
           serve}};
}

}  // namespace keyhold::cli
