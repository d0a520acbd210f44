// keyhold init --dev: a self-contained development set-up in one directory.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "keyhold/app/application.hpp"
#include "keyhold/app/config.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/provision.hpp"

namespace keyhold::app {
namespace {

constexpr const char* kDevTokenLabel = "keyhold-dev";

SecretBytes random_pin() {
  static constexpr char kAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  std::random_device rd;  // /dev/urandom on Linux
  SecretBytes pin(24);
  for (std::size_t i = 0; i < pin.size(); ++i) {
    pin.data()[i] = static_cast<std::uint8_t>(kAlphabet[rd() % (sizeof kAlphabet - 1)]);
  }
  return pin;
}

// Written with open(2) so the mode holds whatever the umask.
void write_private_file(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw Error(ErrorCode::FailedPrecondition, "cannot create " + path.string() + ": " + std::strerror(errno));
  ::fchmod(fd, mode);
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) throw Error(ErrorCode::FailedPrecondition, "cannot write " + path.string());
}

// A TOML basic string.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Removes what init_dev created unless it finished.
class Rollback {
 public:
  void created(std::filesystem::path p) { paths_.push_back(std::move(p)); }
  void done() { paths_.clear(); }
  ~Rollback() {
    std::error_code ec;
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) std::filesystem::remove_all(*it, ec);
  }

 private:
  std::vector<std::filesystem::path> paths_;
};

}  // namespace

DevSetup init_dev(const std::filesystem::path& directory, const std::string& module_name_or_path) {
  // A module path is written to keyhold.toml absolute: the configuration
  // resolves relative paths against its own directory, not this one.
  std::string softhsm_module = module_name_or_path.find('/') == std::string::npos
                                   ? module_name_or_path
                                   : std::filesystem::absolute(module_name_or_path).lexically_normal().string();
  DevSetup setup;
  setup.directory = std::filesystem::absolute(directory).lexically_normal();
  if (setup.directory.has_filename() == false) setup.directory = setup.directory.parent_path();
  setup.config_file = setup.directory / "keyhold.toml";
  setup.pin_file = setup.directory / "pin";
  setup.store_file = setup.directory / "keyhold.db";
  setup.softhsm_conf = setup.directory / "softhsm2.conf";
  setup.token_label = kDevTokenLabel;

  std::error_code ec;
  if (std::filesystem::exists(setup.config_file, ec)) {
    throw Error(ErrorCode::AlreadyExists, setup.directory.string() +
                                              " already holds a keyhold set-up (keyhold.toml); remove it or choose "
                                              "another --dir");
  }
  Rollback rollback;
  if (!std::filesystem::exists(setup.directory, ec)) {
    std::filesystem::create_directories(setup.directory, ec);
    if (ec) throw Error(ErrorCode::FailedPrecondition, "cannot create " + setup.directory.string() + ": " + ec.message());
    ::chmod(setup.directory.c_str(), 0700);
    rollback.created(setup.directory);
  } else if (!std::filesystem::is_empty(setup.directory, ec)) {
    throw Error(ErrorCode::AlreadyExists, setup.directory.string() + " is not empty; choose a new --dir");
  }

  std::filesystem::path tokens = setup.directory / "tokens";
  std::filesystem::create_directory(tokens, ec);
  if (ec) throw Error(ErrorCode::FailedPrecondition, "cannot create " + tokens.string() + ": " + ec.message());
  ::chmod(tokens.c_str(), 0700);
  rollback.created(tokens);

  write_private_file(setup.softhsm_conf,
                     "# SoftHSM2 configuration of a keyhold development token (made by keyhold init --dev).\n"
                     "directories.tokendir = " + tokens.string() + "\n"
                     "objectstore.backend = file\n"
                     "log.level = ERROR\n"
                     "slots.removable = false\n"
                     "slots.mechanisms = ALL\n"
                     "library.reset_on_fork = false\n",
                     0600);
  rollback.created(setup.softhsm_conf);

  SecretBytes pin = random_pin();
  SecretBytes so_pin = random_pin();
  write_private_file(setup.pin_file, std::string(pin.as_string()) + "\n", 0600);
  rollback.created(setup.pin_file);
  // The SO PIN is not kept: a development token is thrown away, not administered.

  ::setenv("SOFTHSM2_CONF", setup.softhsm_conf.c_str(), 1);
  {
    std::shared_ptr<hsm::Module> module = hsm::Module::load(softhsm_module);
    hsm::initialize_token(*module, setup.token_label, so_pin, pin);
    module->finalize();
  }
  // The label alone selects it: this token directory holds only this token.
  setup.token_uri = "pkcs11:token=" + setup.token_label;

  write_private_file(setup.config_file,
                     "# keyhold configuration for DEVELOPMENT ONLY (made by keyhold init --dev):\n"
                     "# a SoftHSM token in this directory, its PIN in a file next to it.\n\n"
                     "[token]\n"
                     "module = " + toml_string(softhsm_module) + "\n"
                     "uri = " + toml_string(setup.token_uri) + "\n"
                     "pin_file = \"pin\"\n\n"
                     "[token.env]\n"
                     "SOFTHSM2_CONF = " + toml_string(setup.softhsm_conf.string()) + "\n\n"
                     "[store]\n"
                     "path = \"keyhold.db\"\n\n" +
                         dev_profiles_toml(),
                     0600);
  rollback.created(setup.config_file);

  store::open_sqlite_store(setup.store_file);  // creates the file and applies the migrations
  rollback.created(setup.store_file);
  rollback.done();
  return setup;
}

}  // namespace keyhold::app
