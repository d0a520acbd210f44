// keyhold audit verify

#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/audit/log.hpp"
#include "keyhold/core/error.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

std::string count(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// "ok", and how much of the log only the chain protects (the end of a log is
// not protected by a signature until the next checkpoint).
std::string ok_text(const audit::VerifyResult& r) {
  if (r.unsigned_tail == 0) return "ok";
  if (r.checkpoints == 0) return "ok (no checkpoint yet: every record is protected by the chain only)";
  return "ok (" + count(r.unsigned_tail, "record", "records") + " after the last checkpoint " +
         (r.unsigned_tail == 1 ? "is" : "are") + " protected by the chain only)";
}

int audit_verify(Context& c) {
  po::options_description options;
  options.add_options()("log", po::value<std::string>(), "")("key", po::value<std::string>(), "");
  po::variables_map vm = parse_arguments(c.args(), options, {});

  // The file and key: from the options, else from [server]. A --log and
  // --key together need no [server] (a log copied from another machine).
  std::optional<std::filesystem::path> log;
  std::optional<std::string> key;
  if (vm.count("log")) log = std::filesystem::absolute(vm["log"].as<std::string>()).lexically_normal();
  if (vm.count("key")) key = vm["key"].as<std::string>();
  if (!log || !key) {
    const std::optional<app::ServiceSettings>& server = c.app().config().server;
    if (!server) {
      throw Error(ErrorCode::InvalidArgument,
                  c.app().config().file.string() + " has no [server] section naming audit_log and audit_key; give " +
                      (log ? "--key NAME" : key ? "--log FILE" : "--log FILE and --key NAME"));
    }
    if (!log) log = server->audit_log;
    if (!key) key = server->audit_key;
  }

  // Before the token is opened: a missing file needs no PIN to report.
  std::error_code ec;
  std::filesystem::file_status status = std::filesystem::status(*log, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    throw Error(ErrorCode::NotFound, "audit log " + log->string() + " does not exist");
  }
  if (status.type() == std::filesystem::file_type::directory) {
    throw Error(ErrorCode::InvalidArgument, "audit log " + log->string() + " is a directory");
  }

  crypto::PublicKey audit_key = c.app().keys().public_key(*key);
  audit::VerifyResult r = audit::verify(*log, audit_key);

  if (c.json()) {
    print_json(c, {{"log", log->string()},
                   {"key", *key},
                   {"ok", r.ok},
                   {"records", r.records},
                   {"checkpoints", r.checkpoints},
                   {"last_checkpoint_seq", r.last_checkpoint_seq},
                   {"unsigned_tail", r.unsigned_tail},
                   {"first_bad_line", r.first_bad_line ? nlohmann::json(*r.first_bad_line) : nlohmann::json(nullptr)},
                   {"problem", r.ok ? nlohmann::json(nullptr) : nlohmann::json(r.problem)}});
  } else if (r.ok) {
    c.out() << "audit log " << log->string() << ": " << count(r.records, "record", "records") << ", "
            << count(r.checkpoints, "checkpoint", "checkpoints") << ", " << ok_text(r) << "\n";
  }
  if (r.ok) return kExitOk;
  // One line on stderr (exit 1), after the JSON when --json asked for it.
  throw Error(ErrorCode::FailedPrecondition,
              "audit log " + log->string() + ": line " + std::to_string(r.first_bad_line.value_or(0)) + ": " +
                  r.problem + " (" + count(r.records, "record", "records") + " before it verified, " +
                  count(r.checkpoints, "checkpoint", "checkpoints") + ")");
}

}  // namespace

std::vector<Command> audit_commands() {
  return {{{"audit", "verify"},
           "audit verify [--log FILE] [--key NAME]",
           "check the audit log's chain and checkpoint signatures",
           audit_verify}};
}

}  // namespace keyhold::cli
