// keyhold maintain: the CA host's periodic work, for cron or a systemd timer
// (docs/maintenance.md). The steps are app::run_maintenance's, which
// keyhold serve also runs on its own schedule; this command parses the
// options, takes the lock and prints one line per item on stderr.

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/app/maintenance.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/file_lock.hpp"
#include "keyhold/renew/renewal.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

int maintain(Context& c) {
  po::options_description options;
  options.add_options()("now", po::value<std::string>(), "")("expiring-within", po::value<std::string>(), "")(
      "publish-dir", po::value<std::string>(), "")("lock-file", po::value<std::string>(), "")("quiet", po::bool_switch(),
                                                                                               "");
  po::variables_map vm = parse_arguments(c.args(), options, {});

  app::MaintenanceOptions o;
  const bool quiet = vm["quiet"].as<bool>();
  if (vm.count("now")) {
    // --now takes what keyhold renew --now takes (one RFC 3339 parser for both).
    std::optional<std::chrono::system_clock::time_point> now = renew::parse_rfc3339(vm["now"].as<std::string>());
    if (!now) {
      throw Error(ErrorCode::InvalidArgument,
                  "--now '" + vm["now"].as<std::string>() + "' is not an RFC 3339 time such as 2026-11-28T15:47:59Z");
    }
    o.now = *now;
  }
  if (vm.count("expiring-within")) {
    std::optional<std::chrono::seconds> within = parse_duration(vm["expiring-within"].as<std::string>());
    if (!within) {
      throw Error(ErrorCode::InvalidArgument, "--expiring-within '" + vm["expiring-within"].as<std::string>() +
                                                  "' is not a duration such as 30d, 2w or 12h");
    }
    o.expiring_within = *within;
  }
  if (vm.count("publish-dir")) {
    std::filesystem::path dir = std::filesystem::absolute(vm["publish-dir"].as<std::string>());
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      throw Error(ErrorCode::InvalidArgument, "--publish-dir " + dir.string() + " is not a directory");
    }
    o.publish_dir = dir;
  }

  // A configuration error ends the run here, with status 2 (keyhold::cli::run).
  const app::Config& config = c.app().config();
  std::filesystem::path lock_path = vm.count("lock-file") ? std::filesystem::absolute(vm["lock-file"].as<std::string>())
                                                          : app::maintenance_lock_file(config);
  std::optional<FileLock> lock = FileLock::try_acquire(lock_path);
  if (!lock) {
    std::cerr << "keyhold: maintain: another keyhold maintain is running (it holds " << lock_path.string()
              << "); nothing done\n";
    return kExitFailed;
  }

  // Failures are printed even with --quiet; with --json the report goes to stdout instead of the lines.
  o.on_line = [&](const app::MaintenanceLine& line) {
    if (line.kind == app::MaintenanceLine::Kind::Failed || (!quiet && !c.json())) std::cerr << line.text << "\n";
  };
  app::MaintenanceResult result = app::run_maintenance(c.app(), o);

  if (c.json()) print_json(c, result.report);
  if (result.failures > 0) {
    std::cerr << "keyhold: maintain: " << result.failures << (result.failures == 1 ? " item" : " items")
              << " failed; the others were done\n";
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> maintain_commands() {
  return {
      {{"maintain"},
       "maintain [--now TIME] [--expiring-within 30d] [--publish-dir DIR] [--lock-file FILE] [--quiet]",
       "publish due CRLs and KRLs, rotate due KEKs, mark expired and report expiring certificates",
       maintain},
  };
}

}  // namespace keyhold::cli
