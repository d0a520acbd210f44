// keyhold's entry point: global options, command dispatch, and the one place
// where errors become a one-line message and an exit status.

#include <boost/program_options.hpp>

#include <iostream>
#include <string_view>

#include "cli.hpp"
#include "keyhold/core/error.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {

int exit_status_for(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument: return kExitUsage;
    case ErrorCode::Unauthenticated:
    case ErrorCode::Unavailable: return kExitToken;
    case ErrorCode::NotFound: return kExitNotFound;
    case ErrorCode::PermissionDenied: return kExitRefused;
    default: return kExitFailed;
  }
}

Context::~Context() { shutdown(); }

app::Application& Context::app() {
  if (!app_) {
    std::optional<std::filesystem::path> flag;
    if (options_.config) flag = *options_.config;
    app_ = std::make_unique<app::Application>(app::load_config(app::find_config(flag)));
  }
  return *app_;
}

void Context::shutdown() noexcept {
  if (app_) app_->shutdown();
  app_.reset();
}

void print_json(Context& context, const nlohmann::json& value) { context.out() << value.dump(2) << "\n"; }

namespace {

std::vector<Command> all_commands() {
  std::vector<Command> commands;
  for (auto group : {init_commands, token_commands, key_commands, ca_commands, ssh_commands, envelope_commands,
                     audit_commands, serve_commands, renew_commands, maintain_commands}) {
    for (Command& c : group()) commands.push_back(std::move(c));
  }
  return commands;
}

void print_usage(std::ostream& out) {
  out << "usage: keyhold [--config FILE] [--json] COMMAND ...\n\n"
         "Keys and certificates kept in a PKCS#11 token (an HSM; SoftHSM for development).\n\n"
         "commands:\n";
  for (const Command& c : all_commands()) {
    std::string synopsis = c.synopsis;
    if (synopsis.size() < 52) synopsis.resize(52, ' ');
    out << "  " << synopsis << " " << c.summary << "\n";
  }
  out << "\nglobal options:\n"
         "  --config FILE   keyhold.toml to use (else $KEYHOLD_CONFIG, ./keyhold.toml, /etc/keyhold/keyhold.toml)\n"
         "  --json          machine-readable output\n"
         "\nThe PIN is never taken on the command line: see docs/cli.md.\n";
}

// keyhold COMMAND --help: the synopsis of every command that starts with the words given.
void print_command_help(const std::vector<std::string>& words, std::ostream& out) {
  for (const Command& c : all_commands()) {
    bool matches = true;
    for (std::size_t i = 0; i < words.size() && i < c.words.size() && matches; ++i) matches = c.words[i] == words[i];
    if (matches) out << "usage: keyhold " << c.synopsis << "\n  " << c.summary << "\n";
  }
  out << "(keyhold --help lists every command; docs/cli.md has the details)\n";
}

// One line: messages never span lines, whatever a library put in them.
std::string one_line(std::string_view message) {
  std::string out;
  for (char c : message) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

// A PIN on the command line is visible to every user in /proc/PID/cmdline.
// Refused before anything else, without repeating the value.
std::optional<std::string> pin_on_command_line(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    for (std::string_view flag : {"--pin", "--so-pin", "--user-pin", "--pin-value"}) {
      if (arg == flag || (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
                          arg[flag.size()] == '=')) {
        return std::string(flag);
      }
    }
    if (arg.find("pin-value=") != std::string_view::npos) return std::string("pin-value in a PKCS#11 URI");
  }
  return std::nullopt;
}

}  // namespace

int run(int argc, char** argv) {
  if (auto flag = pin_on_command_line(argc, argv)) {
    std::cerr << "keyhold: error: a PIN on the command line is refused (" << *flag
              << "): any user can read it in /proc/PID/cmdline; put it in a file with mode 0600 and set pin_file "
                 "in [token] of keyhold.toml, or set KEYHOLD_PIN for development\n";
    return kExitUsage;
  }

  // --json and --config FILE may also come after the command: take them out
  // first, so each command sees only its own arguments.
  std::vector<std::string> words(argv + 1, argv + argc);
  std::vector<std::string> global_args = {argv[0]};
  std::vector<std::string> command_args;
  for (std::size_t i = 0; i < words.size(); ++i) {
    bool before_command = command_args.empty();
    const std::string& w = words[i];
    bool anywhere = w == "--json" || w == "--help" || w == "-h" || w.rfind("--config=", 0) == 0;
    if (anywhere || (before_command && !w.empty() && w[0] == '-' && w != "--config")) {
      global_args.push_back(words[i]);
    } else if (words[i] == "--config") {
      global_args.push_back(words[i]);
      if (i + 1 < words.size()) global_args.push_back(words[++i]);
    } else {
      command_args.push_back(words[i]);
    }
  }
  std::vector<char*> global_argv;
  for (std::string& a : global_args) global_argv.push_back(a.data());

  GlobalOptions global;
  std::vector<std::string> rest = command_args;
  try {
    po::options_description options("global options");
    options.add_options()("config", po::value<std::string>(), "")("json", po::bool_switch(), "")(
        "help,h", po::bool_switch(), "")("version", po::bool_switch(), "");
    po::variables_map vm;
    po::store(po::command_line_parser(static_cast<int>(global_argv.size()), global_argv.data()).options(options).run(),
              vm);
    po::notify(vm);
    if (vm.count("config")) global.config = vm["config"].as<std::string>();
    global.json = vm["json"].as<bool>();
    if (vm["version"].as<bool>()) {
      std::cout << "keyhold " << KEYHOLD_VERSION << "\n";
      return kExitOk;
    }
    bool help = vm["help"].as<bool>();
    if (rest.empty()) {
      print_usage(help ? std::cout : std::cerr);
      return help ? kExitOk : kExitUsage;
    }
    if (help) {
      print_command_help(rest, std::cout);
      return kExitOk;
    }
  } catch (const po::error& e) {
    std::cerr << "keyhold: error: " << one_line(e.what()) << " (see keyhold --help)\n";
    return kExitUsage;
  }

  // The longest command whose words start the rest of the line.
  const std::vector<Command> commands = all_commands();
  const Command* chosen = nullptr;
  for (const Command& c : commands) {
    if (c.words.size() > rest.size()) continue;
    if (!std::equal(c.words.begin(), c.words.end(), rest.begin())) continue;
    if (chosen == nullptr || c.words.size() > chosen->words.size()) chosen = &c;
  }
  if (chosen == nullptr) {
    std::string words = rest[0] + (rest.size() > 1 && rest[1][0] != '-' ? " " + rest[1] : "");
    std::string group;
    for (const Command& c : commands) {
      if (c.words.size() > 1 && c.words[0] == rest[0]) group += (group.empty() ? "" : ", ") + c.words[1];
    }
    std::cerr << "keyhold: error: unknown command '" << one_line(words) << "' ("
              << (group.empty() ? "see keyhold --help" : "'" + rest[0] + "' takes: " + group) << ")\n";
    return kExitUsage;
  }

  Context context(global, std::vector<std::string>(rest.begin() + static_cast<long>(chosen->words.size()), rest.end()),
                  std::cout);
  try {
    int status = chosen->run(context);
    context.shutdown();
    std::cout.flush();
    return status;
  } catch (const po::error& e) {
    std::cerr << "keyhold: error: " << one_line(e.what()) << " (usage: keyhold " << chosen->synopsis << ")\n";
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "keyhold: error: " << one_line(e.what()) << "\n";
    return exit_status_for(e.code());
  } catch (const std::exception& e) {
    std::cerr << "keyhold: error: " << one_line(e.what()) << "\n";
    return kExitFailed;
  }
}

}  // namespace keyhold::cli

int main(int argc, char** argv) { return keyhold::cli::run(argc, argv); }
