// keyhold token info

#include <iomanip>

#include "arguments.hpp"
#include "cli.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

std::string optional_count(const std::optional<unsigned long>& value, const char* unlimited) {
  return value ? std::to_string(*value) : unlimited;
}

int token_info(Context& c) {
  parse_arguments(c.args(), po::options_description(), {});
  crypto::TokenSummary s = c.app().token_summary();
  if (c.json()) {
    nlohmann::json j = {
        {"uri", s.uri},
        {"label", s.label},
        {"manufacturer", s.manufacturer},
        {"model", s.model},
        {"serial", s.serial},
        {"slot_id", s.slot_id},
        {"slot_description", s.slot_description},
        {"hardware_version", s.hardware_version},
        {"firmware_version", s.firmware_version},
        {"flags", s.flags},
        {"max_sessions", s.max_sessions ? nlohmann::json(*s.max_sessions) : nullptr},
        {"session_count", s.session_count},
        {"free_private_memory", s.free_private_memory ? nlohmann::json(*s.free_private_memory) : nullptr},
        {"total_private_memory", s.total_private_memory ? nlohmann::json(*s.total_private_memory) : nullptr},
        {"mechanisms", s.mechanisms},
        {"unsupported_key_types", s.missing_for},
        {"module",
         {{"path", s.module_path},
          {"name", s.module_name},
          {"description", s.module_description},
          {"manufacturer", s.module_manufacturer},
          {"version", s.module_version},
          {"cryptoki_version", s.cryptoki_version}}},
    };
    print_json(c, j);
    return kExitOk;
  }
  std::ostream& out = c.out();
  auto row = [&out](const std::string& name, const std::string& value) {
    out << std::left << std::setw(16) << (name + ":") << value << "\n";
  };
  std::string flags;
  for (const std::string& f : s.flags) flags += (flags.empty() ? "" : ", ") + f;
  row("token", s.label);
  row("uri", s.uri);
  row("manufacturer", s.manufacturer);
  row("model", s.model);
  row("serial", s.serial);
  row("slot", std::to_string(s.slot_id) + " (" + s.slot_description + ")");
  row("versions", "hardware " + s.hardware_version + ", firmware " + s.firmware_version);
  row("flags", flags);
  row("sessions", std::to_string(s.session_count) + " open, at most " + optional_count(s.max_sessions, "unlimited"));
  if (s.total_private_memory) {
    row("private memory", optional_count(s.free_private_memory, "?") + " free of " + std::to_string(*s.total_private_memory));
  }
  row("module", s.module_path + (s.module_name.empty() ? "" : " (" + s.module_name + ")"));
  row("library", s.module_description + " " + s.module_version + " by " + s.module_manufacturer +
                     ", PKCS#11 " + s.cryptoki_version);
  std::string missing;
  for (const std::string& m : s.missing_for) missing += (missing.empty() ? "" : ", ") + m;
  row("key types", missing.empty() ? "every keyhold key type is supported" : "cannot make: " + missing);
  row("mechanisms", std::to_string(s.mechanisms.size()) + " (--json lists them)");
  return kExitOk;
}

}  // namespace

std::vector<Command> token_commands() {
  return {{{"token", "info"}, "token info", "describe the token (no login needed)", token_info}};
}

}  // namespace keyhold::cli
