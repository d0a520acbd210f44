// keyhold init --dev

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/core/error.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

int init(Context& c) {
  po::options_description options;
  options.add_options()("dev", po::bool_switch(), "")("dir", po::value<std::string>()->default_value("keyhold-dev"),
                                                      "")("module", po::value<std::string>()->default_value("softhsm2"), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});
  if (!vm["dev"].as<bool>()) {
    throw Error(ErrorCode::InvalidArgument,
                "init needs --dev: it makes a throwaway SoftHSM token for trying keyhold; production tokens are set "
                "up with the HSM's own tools (docs/configuration.md)");
  }
  app::DevSetup s = app::init_dev(vm["dir"].as<std::string>(), vm["module"].as<std::string>());
  if (c.json()) {
    print_json(c, {{"directory", s.directory.string()},
                   {"config", s.config_file.string()},
                   {"pin_file", s.pin_file.string()},
                   {"store", s.store_file.string()},
                   {"softhsm_conf", s.softhsm_conf.string()},
                   {"token_label", s.token_label},
                   {"token_uri", s.token_uri},
                   {"ca", s.ca_name},
                   {"ca_certificate", s.ca_certificate.string()},
                   {"server_certificate", s.server_certificate.string()},
                   {"server_key", s.server_key},
                   {"admin_certificate", s.admin_certificate.string()},
                   {"admin_key_file", s.admin_key_file.string()},
                   {"policy_file", s.policy_file.string()},
                   {"audit_log", s.audit_log.string()},
                   {"audit_key", s.audit_key}});
    return kExitOk;
  }
  c.out() << "keyhold development set-up in " << s.directory.string() << " (DEVELOPMENT ONLY)\n"
          << "  token      " << s.token_uri << " (a SoftHSM token stored in " << (s.directory / "tokens").string()
          << ")\n"
          << "  PIN file   " << s.pin_file.string() << " (mode 0600)\n"
          << "  config     " << s.config_file.string() << "\n"
          << "  store      " << s.store_file.string() << "\n\n"
          << "for keyhold serve ([server] in the config):\n"
          << "  CA         '" << s.ca_name << "' (key in the token); trust " << s.ca_certificate.string() << "\n"
          << "  server     " << s.server_certificate.string() << " (localhost, 127.0.0.1; key '" << s.server_key
          << "' in the token)\n"
          << "  client     " << s.admin_certificate.string() << " + " << s.admin_key_file.string()
          << " (identity admin; the key is a file: development only)\n"
          << "  policy     " << s.policy_file.string() << " (admin may do everything)\n"
          << "  audit log  " << s.audit_log.string() << " (checkpoints signed by key '" << s.audit_key
          << "' in the token)\n\n"
          << "next:\n"
          << "  export KEYHOLD_CONFIG=" << s.config_file.string() << "\n"
          << "  keyhold token info\n"
          << "  keyhold key create my-key --type ec-p256\n";
  return kExitOk;
}

}  // namespace

std::vector<Command> init_commands() {
  return {{{"init"},
           "init --dev [--dir DIR] [--module M]",
           "make a throwaway SoftHSM token, config, store and service set-up",
           init}};
}

}  // namespace keyhold::cli
