#include "keyhold/hsm/pin.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "keyhold/core/error.hpp"

namespace keyhold::hsm {
namespace {

constexpr std::size_t kMaxPinLength = 256;

// Strips one trailing "\n" or "\r\n" in place, without copying the PIN.
void strip_line_end(SecretBytes& pin) {
  std::size_t size = pin.size();
  if (size > 0 && pin.data()[size - 1] == '\n') --size;
  if (size > 0 && pin.data()[size - 1] == '\r') --size;
  pin.truncate(size);
}

class FilePin final : public PinSource {
 public:
  explicit FilePin(std::filesystem::path path) : path_(std::move(path)) {}

  SecretBytes read() override {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      throw Error(ErrorCode::InvalidArgument,
                  "cannot read the PIN file " + path_.string() + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(ErrorCode::InvalidArgument, "the PIN file " + path_.string() + " is not a regular file");
    }
    if ((st.st_mode & 077) != 0) {
      ::close(fd);
      throw Error(ErrorCode::InvalidArgument, "the PIN file " + path_.string() +
                                                  " is accessible to group or others; run: chmod 600 " +
                                                  path_.string());
    }
    SecretBytes pin(kMaxPinLength + 2);
    std::size_t total = 0;
    while (total < pin.size()) {
      ssize_t n = ::read(fd, pin.data() + total, pin.size() - total);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      total += static_cast<std::size_t>(n);
    }
    ::close(fd);
    pin.truncate(total);
    strip_line_end(pin);
    if (pin.empty()) throw Error(ErrorCode::InvalidArgument, "the PIN file " + path_.string() + " is empty");
    if (pin.size() > kMaxPinLength) {
      throw Error(ErrorCode::InvalidArgument, "the PIN file " + path_.string() + " holds more than one short line");
    }
    return pin;
  }

  std::string describe() const override { return "PIN file " + path_.string(); }

 private:
  std::filesystem::path path_;
};

class EnvironmentPin final : public PinSource {
 public:
  SecretBytes read() override {
    const char* value = std::getenv(kPinEnvironmentVariable);
    if (value == nullptr || *value == '\0') {
      throw Error(ErrorCode::InvalidArgument, std::string(kPinEnvironmentVariable) + " is empty");
    }
    return SecretBytes(reinterpret_cast<const std::uint8_t*>(value), std::strlen(value));
  }
  std::string describe() const override {
    return std::string("environment variable ") + kPinEnvironmentVariable;
  }
};

class PromptPin final : public PinSource {
 public:
  explicit PromptPin(std::string token_label) : token_label_(std::move(token_label)) {}

  SecretBytes read() override {
    int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) throw Error(ErrorCode::InvalidArgument, "no terminal to ask for the PIN on");
    // Echo goes off before the prompt appears, so that nothing typed after
    // the prompt is echoed, nor discarded by the mode change.
    termios saved{};
    bool restore = ::tcgetattr(fd, &saved) == 0;
    if (restore) {
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL);
      ::tcsetattr(fd, TCSADRAIN, &quiet);
    }
    std::string prompt = "PIN for token '" + token_label_ + "': ";
    (void)!::write(fd, prompt.data(), prompt.size());
    SecretBytes pin(kMaxPinLength + 1);
    std::size_t total = 0;
    while (total < pin.size()) {
      char c = 0;
      ssize_t n = ::read(fd, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || c == '\n' || c == '\r') break;
      pin.data()[total++] = static_cast<std::uint8_t>(c);
      c = 0;
    }
    if (restore) ::tcsetattr(fd, TCSADRAIN, &saved);
    (void)!::write(fd, "\n", 1);
    ::close(fd);
    pin.truncate(total);
    if (pin.empty()) throw Error(ErrorCode::InvalidArgument, "no PIN was entered");
    if (pin.size() > kMaxPinLength) throw Error(ErrorCode::InvalidArgument, "the PIN entered is too long");
    return pin;
  }

  std::string describe() const override { return "terminal prompt"; }

 private:
  std::string token_label_;
};

class MemoryPin final : public PinSource {
 public:
  explicit MemoryPin(const SecretBytes& pin) : pin_(pin.data(), pin.size()) {}
  SecretBytes read() override { return SecretBytes(pin_.data(), pin_.size()); }
  std::string describe() const override { return "PIN given by the caller"; }

 private:
  SecretBytes pin_;
};

std::filesystem::path resolve(const std::filesystem::path& path, const std::filesystem::path& relative_to) {
  return path.is_absolute() ? path : relative_to / path;
}

}  // namespace

std::unique_ptr<PinSource> pin_from_file(std::filesystem::path path) {
  return std::make_unique<FilePin>(std::move(path));
}
std::unique_ptr<PinSource> pin_from_environment() { return std::make_unique<EnvironmentPin>(); }
std::unique_ptr<PinSource> pin_from_prompt(std::string token_label) {
  return std::make_unique<PromptPin>(std::move(token_label));
}
std::unique_ptr<PinSource> pin_from_memory(const SecretBytes& pin) { return std::make_unique<MemoryPin>(pin); }

std::unique_ptr<PinSource> choose_pin_source(const std::optional<std::string>& uri_pin_source,
                                             const std::optional<std::filesystem::path>& pin_file,
                                             const std::filesystem::path& relative_to, std::string token_label) {
  if (uri_pin_source) {
    // RFC 7512 section 2.3: pin-source is a URI; keyhold takes file: URIs and plain paths.
    std::string source = *uri_pin_source;
    if (source.rfind("file:", 0) == 0) {
      source = source.substr(5);
      if (source.rfind("//", 0) == 0) source = source.substr(2);
    } else if (source.find(':') != std::string::npos) {
      throw Error(ErrorCode::InvalidArgument,
                  "pin-source '" + source + "' is not supported: use pin-source=file:/path/to/pin");
    }
    return pin_from_file(resolve(source, relative_to));
  }
  if (pin_file) return pin_from_file(resolve(*pin_file, relative_to));
  if (const char* env = std::getenv(kPinEnvironmentVariable); env != nullptr && *env != '\0') {
    return pin_from_environment();
  }
  if (::isatty(STDIN_FILENO)) return pin_from_prompt(std::move(token_label));
  throw Error(ErrorCode::InvalidArgument,
              "no PIN for the token: set pin_file in [token] of keyhold.toml, add pin-source=file:... to the token "
              "URI, set KEYHOLD_PIN (development only), or run on a terminal to be asked");
}

}  // namespace keyhold::hsm
