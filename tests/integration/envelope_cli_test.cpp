// Envelope encryption end to end through the keyhold command, against the
// throwaway `keyhold init --dev` set-up: KEKs and their versions (create,
// rotate, show, list, disable, enable, destroy), data keys, encrypt, decrypt,
// rewrap, sealed files, maintain; every refusal of the requirement (one error
// line, a non-zero status, no output); a bit-flip sweep; a 1 GiB sealed
// stream in constant memory; and no secret in the store or on stderr.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "support/dev_setup.hpp"
#include "support/process.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_error_line;
using testing::keyhold;
using testing::keyhold_json;
using testing::path_in_setup;
using testing::ProcessOptions;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;
using testing::write_file;

// Binary data is kept in std::string (bytes, NULs included); Args are a command's arguments.
using Args = std::vector<std::string>;

constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Sealed-file layout (docs/ciphertext-format.md, "Sealed files").
constexpr std::size_t kSegment = 64 * 1024;
constexpr std::size_t kSealTag = 16;
constexpr std::size_t kFullSegment = kSegment + kSealTag;

std::string encode64(std::string_view bytes, std::string_view alphabet, bool pad) {
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (std::uint32_t{static_cast<std::uint8_t>(bytes[i])} << 16) |
                      (std::uint32_t{static_cast<std::uint8_t>(bytes[i + 1])} << 8) | static_cast<std::uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += alphabet[(v >> s) & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<std::uint8_t>(bytes[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<std::uint8_t>(bytes[i + 1])} << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(rest == 1 ? 2 : 1, '=');
  }
  return out;
}

// Decodes base64 in the given alphabet; '=' padding is ignored. A character
// outside the alphabet is a test failure.
std::string decode64(std::string_view text, std::string_view alphabet) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    std::size_t v = alphabet.find(c);
    if (v == std::string_view::npos) {
      ADD_FAILURE() << "not base64 in this alphabet: '" << c << "' in " << text;
      return out;
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string hex(std::string_view bytes, bool upper = false) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    auto b = static_cast<std::uint8_t>(c);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string random_bytes(std::size_t n) {
  static std::mt19937_64 rng{std::random_device{}()};
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The binary form of a kh1 text ciphertext, decoded here (not by keyhold).
std::string binary_of(const std::string& text) {
  std::string t = trim(text);
  EXPECT_EQ(t.rfind("kh1:", 0), 0u) << t;
  if (t.rfind("kh1:", 0) != 0) return "";
  return decode64(std::string_view(t).substr(4), kBase64Url);
}

std::string text_of(const std::string& binary) { return "kh1:" + encode64(binary, kBase64Url, false); }

std::uint32_t kek_version_of(const std::string& binary) {
  if (binary.size() < 21) return 0;
  std::uint32_t v = 0;
  for (int i = 17; i < 21; ++i) v = (v << 8) | static_cast<std::uint8_t>(binary[static_cast<std::size_t>(i)]);
  return v;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// A new empty directory in the set-up, for one test's files.
std::string fresh_dir(const std::string& name) {
  fs::path dir = path_in_setup("envelope-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

Args with_context(Args args, const Args& context) {
  for (const std::string& item : context) {
    args.push_back("--context");
    args.push_back(item);
  }
  return args;
}

// While alive, SIGPIPE is ignored: a keyhold that refuses its input before
// reading all of it closes the pipe run_process is still writing to, which
// would otherwise kill the test binary.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() { old_ = ::signal(SIGPIPE, SIG_IGN); }
  ~IgnoreSigpipe() { ::signal(SIGPIPE, old_); }
  IgnoreSigpipe(const IgnoreSigpipe&) = delete;
  IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

 private:
  void (*old_)(int) = SIG_DFL;
};

ProcessOptions input(std::string bytes) {
  ProcessOptions o;
  o.input = std::move(bytes);
  return o;
}

void create_kek(const std::string& name, Args extra = {}) {
  Args args = {"kek", "create", name};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = keyhold(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// keyhold encrypt from stdin; the text ciphertext (one line) without its newline.
std::string encrypt(const std::string& kek, const std::string& plaintext, const Args& context = {}) {
  ProcessResult r = keyhold(with_context({"encrypt", "--kek", kek}, context), input(plaintext));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  return trim(r.out);
}

// keyhold decrypt with the ciphertext on stdin.
ProcessResult decrypt(const std::string& ciphertext, const Args& context = {}, Args extra = {}) {
  Args args = with_context({"decrypt"}, context);
  args.insert(args.end(), extra.begin(), extra.end());
  return keyhold(args, input(ciphertext));
}

void expect_decrypts(const std::string& ciphertext, const Args& context, const std::string& plaintext) {
  ProcessResult r = decrypt(ciphertext, context);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, plaintext);
  EXPECT_EQ(r.err, "");
}

// A refusal: this status, exactly one line on stderr naming each of `says`, nothing on stdout.
void expect_refused(const ProcessResult& r, int status, const std::vector<std::string>& says, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.exit_code, status) << r.err;
  EXPECT_NE(r.exit_code, 0);
  expect_one_error_line(r);
  for (const std::string& s : says) EXPECT_NE(r.err.find(s), std::string::npos) << "expected '" << s << "' in: " << r.err;
  EXPECT_EQ(r.out, "") << "a refusal printed on stdout";
}

nlohmann::json show(const std::string& kek) { return keyhold_json({"kek", "show", kek}); }

nlohmann::json version_of(const nlohmann::json& kek, int version) {
  for (const auto& v : kek["versions"]) {
    if (v["version"] == version) return v;
  }
  ADD_FAILURE() << "no version " << version << " in " << kek.dump();
  return nlohmann::json::object();
}

std::uint64_t encryptions(const std::string& kek, int version) {
  return version_of(show(kek), version)["encryptions"].get<std::uint64_t>();
}

std::string token_objects() {
  ProcessResult objects = run_process(testing::pkcs11_tool({"--list-objects"}), testing::with_softhsm_conf());
  EXPECT_EQ(objects.exit_code, 0) << objects.err;
  return objects.out;
}

bool token_has(const std::string& label) {
  return token_objects().find("label:      " + label + "\n") != std::string::npos;
}

std::time_t parse_utc(const std::string& text) {
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  EXPECT_TRUE(end != nullptr && *end == '\0') << "not a UTC timestamp: " << text;
  return ::timegm(&tm);
}

const std::regex kTimestamp("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z");

// ---------------------------------------------------------------------------
// 1. Round trips

TEST(EnvelopeRoundTrip, DataKeysInEveryOutputFormDecryptToTheirPlaintext) {
  create_kek("dk");
  // Text: the ciphertext line, then the data key in base64.
  ProcessResult text = keyhold({"datakey", "generate", "--kek", "dk"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  std::vector<std::string> lines = lines_of(text.out);
  ASSERT_EQ(lines.size(), 2u) << text.out;
  EXPECT_EQ(lines[0].rfind("kh1:", 0), 0u) << text.out;
  std::string key = decode64(lines[1], kBase64);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(encode64(key, kBase64, true), lines[1]) << "standard base64 with padding";
  EXPECT_EQ(binary_of(lines[0]).size(), 33u + 32u + 16u);
  expect_decrypts(lines[0], {}, key);

  ProcessResult small = keyhold({"datakey", "generate", "--kek", "dk", "--bytes", "16"});
  ASSERT_EQ(small.exit_code, 0) << small.err;
  std::vector<std::string> small_lines = lines_of(small.out);
  ASSERT_EQ(small_lines.size(), 2u) << small.out;
  std::string small_key = decode64(small_lines[1], kBase64);
  EXPECT_EQ(small_key.size(), 16u);
  EXPECT_EQ(binary_of(small_lines[0]).size(), 33u + 16u + 16u);
  expect_decrypts(small_lines[0], {}, small_key);

  // --json: ciphertext, plaintext (base64), kek_version.
  for (std::size_t bytes : {32u, 16u}) {
    Args args = {"datakey", "generate", "--kek", "dk", "--context", "app=billing"};
    if (bytes == 16) args.insert(args.end(), {"--bytes", "16"});
    nlohmann::json j = keyhold_json(args);
    ASSERT_TRUE(j.contains("ciphertext") && j.contains("plaintext")) << j.dump();
    EXPECT_EQ(j["kek_version"], 1);
    std::string json_key = decode64(j["plaintext"].get<std::string>(), kBase64);
    EXPECT_EQ(json_key.size(), bytes);
    expect_decrypts(j["ciphertext"], {"app=billing"}, json_key);
    EXPECT_NE(decrypt(j["ciphertext"]).exit_code, 0) << "a data key made with a context needs it";
  }

  // --no-plaintext: the ciphertext only.
  ProcessResult bare = keyhold({"datakey", "generate", "--kek", "dk", "--no-plaintext"});
  ASSERT_EQ(bare.exit_code, 0) << bare.err;
  ASSERT_EQ(lines_of(bare.out).size(), 1u) << bare.out;
  EXPECT_EQ(bare.out.rfind("kh1:", 0), 0u);
  EXPECT_EQ(decrypt(bare.out).out.size(), 32u);
  nlohmann::json bare_json = keyhold_json({"datakey", "generate", "--kek", "dk", "--no-plaintext"});
  EXPECT_FALSE(bare_json.contains("plaintext")) << bare_json.dump();
  EXPECT_TRUE(bare_json.contains("ciphertext"));

  // --plaintext-out FILE: the raw key in a 0600 file, only the ciphertext on stdout.
  std::string dir = fresh_dir("datakey");
  for (std::size_t bytes : {32u, 16u}) {
    std::string file = dir + "/key" + std::to_string(bytes);
    Args args = {"datakey", "generate", "--kek", "dk", "--plaintext-out", file, "--context", "k=v"};
    if (bytes == 16) args.insert(args.end(), {"--bytes", "16"});
    ProcessResult r = keyhold(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(lines_of(r.out).size(), 1u) << r.out;
    std::string raw = read_file(file);
    EXPECT_EQ(raw.size(), bytes);
    EXPECT_EQ(mode_of(file), 0600u);
    expect_decrypts(r.out, {"k=v"}, raw);
  }
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"key16", "key32"})) << "no temporary file left";

  // Two data keys are two random keys.
  EXPECT_NE(key, decode64(lines_of(keyhold({"datakey", "generate", "--kek", "dk"}).out).at(1), kBase64));
}

TEST(EnvelopeRoundTrip, EncryptFromStdinOrFileDecryptsToStdoutOrFileInTextOrBinaryForm) {
  create_kek("rt");
  std::string dir = fresh_dir("roundtrip");
  std::string plaintext = random_bytes(300);
  plaintext[7] = '\0';  // binary plaintext, NUL included
  Args context = {"tenant=acme", "purpose=db-password"};
  Args reordered = {"purpose=db-password", "tenant=acme"};

  std::string from_stdin = encrypt("rt", plaintext, context);
  write_file(dir + "/plain", plaintext);
  ProcessResult from_file = keyhold(with_context({"encrypt", "--kek", "rt", "--in", dir + "/plain"}, context));
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_NE(trim(from_file.out), from_stdin) << "a fresh IV for every encryption";
  EXPECT_EQ(binary_of(from_stdin).size(), 33u + plaintext.size() + 16u);

  // To stdout, with the context items in another order (the canonical context sorts them).
  expect_decrypts(from_stdin, reordered, plaintext);
  expect_decrypts(from_file.out, context, plaintext);

  // --in FILE (text, with its newline) and --out FILE (0600, nothing on stdout).
  write_file(dir + "/ct.txt", from_file.out);
  ProcessResult to_file = keyhold(with_context({"decrypt", "--in", dir + "/ct.txt", "--out", dir + "/out"}, context));
  ASSERT_EQ(to_file.exit_code, 0) << to_file.err;
  EXPECT_EQ(to_file.out, "");
  EXPECT_EQ(read_file(dir + "/out"), plaintext);
  EXPECT_EQ(mode_of(dir + "/out"), 0600u);

  // The binary form, decoded here from the text: from a file and from stdin.
  std::string binary = binary_of(from_stdin);
  ASSERT_EQ(static_cast<std::uint8_t>(binary.at(0)), 1u);
  write_file(dir + "/ct.bin", binary);
  ProcessResult bin_file = keyhold(with_context({"decrypt", "--in", dir + "/ct.bin"}, context));
  EXPECT_EQ(bin_file.exit_code, 0) << bin_file.err;
  EXPECT_EQ(bin_file.out, plaintext);
  expect_decrypts(binary, context, plaintext);
  EXPECT_EQ(text_of(binary), from_stdin) << "the test's base64url agrees with keyhold's";

  // The largest plaintext (the smallest, empty, has a test of its own below).
  std::string largest = random_bytes(4096);
  std::string big = encrypt("rt", largest);
  EXPECT_EQ(binary_of(big).size(), 4145u);
  expect_decrypts(big, {}, largest);
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"ct.bin", "ct.txt", "out", "plain"}));
}

// The format allows a plaintext of 0 bytes (docs/ciphertext-format.md: "0 to
// 4096", a 49-byte ciphertext). keyhold once handed the token a null pointer
// for it, which SoftHSM refused (CKR_ARGUMENTS_BAD).
TEST(EnvelopeRoundTrip, AnEmptyPlaintextEncryptsToA49ByteCiphertextAndDecrypts) {
  create_kek("empty");
  ProcessResult r = keyhold({"encrypt", "--kek", "empty"}, input(""));
  ASSERT_EQ(r.exit_code, 0) << "an empty plaintext is refused: " << r.err;
  EXPECT_EQ(binary_of(r.out).size(), 49u);
  expect_decrypts(r.out, {}, "");
  std::string dir = fresh_dir("empty");
  write_file(dir + "/empty", "");
  ProcessResult from_file = keyhold({"encrypt", "--kek", "empty", "--in", dir + "/empty"});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  ProcessResult to_file = keyhold({"decrypt", "--out", dir + "/out"}, input(from_file.out));
  ASSERT_EQ(to_file.exit_code, 0) << to_file.err;
  EXPECT_EQ(read_file(dir + "/out"), "");
  EXPECT_EQ(mode_of(dir + "/out"), 0600u);
}

TEST(EnvelopeRoundTrip, RewrapMovesToThePrimaryVersionAndCanChangeTheContext) {
  create_kek("rw");
  std::string plaintext = "rewrap me " + hex(random_bytes(8));
  std::string original = encrypt("rw", plaintext, {"a=1"});
  ASSERT_EQ(kek_version_of(binary_of(original)), 1u);
  ASSERT_EQ(keyhold({"kek", "rotate", "rw"}).exit_code, 0);
  nlohmann::json kek = show("rw");
  ASSERT_EQ(kek["primary_version"], 2);

  ProcessResult r = keyhold({"--json", "rewrap", "--context", "a=1"}, input(original));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json rewrapped = nlohmann::json::parse(r.out);
  EXPECT_EQ(rewrapped["kek_version"], 2);
  std::string moved = rewrapped["ciphertext"];
  std::string binary = binary_of(moved);
  EXPECT_EQ(kek_version_of(binary), 2u) << "the version in the ciphertext itself";
  EXPECT_EQ(hex(binary.substr(1, 16)), kek["kek_id"].get<std::string>());
  EXPECT_EQ(binary.substr(1, 16), binary_of(original).substr(1, 16)) << "same KEK";
  expect_decrypts(moved, {"a=1"}, plaintext);
  expect_decrypts(original, {"a=1"}, plaintext);  // version 1 still decrypts
  EXPECT_EQ(version_of(show("rw"), 2)["encryptions"], 1) << "rewrap encrypts once under the primary";

  // Text output: one line, the new ciphertext.
  ProcessResult plain_text = keyhold({"rewrap", "--context", "a=1"}, input(original));
  ASSERT_EQ(plain_text.exit_code, 0) << plain_text.err;
  EXPECT_EQ(lines_of(plain_text.out).size(), 1u) << plain_text.out;
  EXPECT_EQ(kek_version_of(binary_of(plain_text.out)), 2u);

  // --new-context: the old context fails, the new one works.
  ProcessResult changed = keyhold({"rewrap", "--context", "a=1", "--new-context", "b=2", "--new-context", "c=3"},
                                  input(original));
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  expect_refused(decrypt(changed.out, {"a=1"}), 2, {"does not match"}, "old context after --new-context");
  expect_refused(decrypt(changed.out, {"b=2"}), 2, {"does not match"}, "part of the new context");
  expect_decrypts(changed.out, {"c=3", "b=2"}, plaintext);

  // Rewrap needs the right context too, and prints nothing when refused.
  expect_refused(keyhold({"rewrap", "--context", "a=2"}, input(original)), 2, {"does not match"}, "rewrap, wrong context");
}

TEST(EnvelopeRoundTrip, CiphertextsOfEveryVersionDecryptAfterThreeRotations) {
  create_kek("rot");
  std::vector<std::string> ciphertexts;
  for (int v = 1; v <= 4; ++v) {
    ciphertexts.push_back(encrypt("rot", "made under version " + std::to_string(v), {"v=" + std::to_string(v)}));
    if (v < 4) {
      ASSERT_EQ(keyhold({"kek", "rotate", "rot"}).exit_code, 0);
    }
  }
  nlohmann::json kek = show("rot");
  EXPECT_EQ(kek["primary_version"], 4);
  EXPECT_EQ(kek["versions"].size(), 4u);
  for (int v = 1; v <= 4; ++v) {
    const std::string& c = ciphertexts[static_cast<std::size_t>(v - 1)];
    EXPECT_EQ(kek_version_of(binary_of(c)), static_cast<std::uint32_t>(v));
    expect_decrypts(c, {"v=" + std::to_string(v)}, "made under version " + std::to_string(v));
    EXPECT_EQ(version_of(kek, v)["encryptions"], 1);
    EXPECT_EQ(version_of(kek, v)["primary"], v == 4);
  }
}

// ---------------------------------------------------------------------------
// 2. kek show / list, versions and their states

TEST(EnvelopeKek, ShowAndListReportVersionsStatesPrimaryCountsAndNextRotation) {
  ProcessResult created = keyhold({"--json", "kek", "create", "shown", "--rotation-period", "12h", "--max-encryptions", "1000"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  nlohmann::json k = nlohmann::json::parse(created.out);
  EXPECT_EQ(k["name"], "shown");
  EXPECT_EQ(k["primary_version"], 1);
  EXPECT_EQ(k["rotation_period_seconds"], 12 * 3600);
  EXPECT_EQ(k["max_encryptions"], 1000);
  EXPECT_EQ(k["rotation_due"], false);
  EXPECT_TRUE(std::regex_match(k["kek_id"].get<std::string>(), std::regex("[0-9a-f]{32}"))) << k.dump();
  ASSERT_EQ(k["versions"].size(), 1u);
  EXPECT_EQ(k["versions"][0]["state"], "enabled");
  EXPECT_EQ(k["versions"][0]["primary"], true);
  EXPECT_EQ(k["versions"][0]["encryptions"], 0);
  EXPECT_TRUE(k["versions"][0]["state_changed_at"].is_null());
  EXPECT_EQ(parse_utc(k["next_rotation_due"]), parse_utc(k["versions"][0]["created_at"]) + 12 * 3600);

  // Each encryption under the primary counts once; decryption does not.
  std::string c = encrypt("shown", "one");
  EXPECT_EQ(encryptions("shown", 1), 1u);
  ASSERT_EQ(keyhold({"datakey", "generate", "--kek", "shown"}).exit_code, 0);
  EXPECT_EQ(encryptions("shown", 1), 2u);
  expect_decrypts(c, {}, "one");
  EXPECT_EQ(encryptions("shown", 1), 2u) << "decryption is not an encryption";
  std::string dir = fresh_dir("shown");
  write_file(dir + "/file", "sealed content");
  ASSERT_EQ(keyhold({"seal", "--kek", "shown", "--in", dir + "/file", "--out", dir + "/file.sealed"}).exit_code, 0);
  EXPECT_EQ(encryptions("shown", 1), 3u) << "seal wraps one data key";
  ASSERT_EQ(keyhold({"rewrap"}, input(c)).exit_code, 0);
  EXPECT_EQ(encryptions("shown", 1), 4u);

  ASSERT_EQ(keyhold({"kek", "rotate", "shown"}).exit_code, 0);
  encrypt("shown", "two");
  nlohmann::json j = show("shown");
  EXPECT_EQ(j["primary_version"], 2);
  ASSERT_EQ(j["versions"].size(), 2u);
  EXPECT_EQ(version_of(j, 1)["primary"], false);
  EXPECT_EQ(version_of(j, 1)["encryptions"], 4);
  EXPECT_EQ(version_of(j, 2)["primary"], true);
  EXPECT_EQ(version_of(j, 2)["encryptions"], 1);
  EXPECT_EQ(version_of(j, 1)["state"], "enabled");
  EXPECT_NE(version_of(j, 1)["key_id"], version_of(j, 2)["key_id"]) << "a new token key per version";
  std::string due = j["next_rotation_due"];
  EXPECT_EQ(parse_utc(due), parse_utc(version_of(j, 2)["created_at"]) + 12 * 3600) << "counted from the new primary";

  // Text.
  ProcessResult text = keyhold({"kek", "show", "shown"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("KEK 'shown' (id " + j["kek_id"].get<std::string>() + ")", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("primary version:  2\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rotation period:  12h\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("max encryptions:  1000 per version\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("next rotation:    " + due + "\n"), std::string::npos) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\n    v1 +enabled +encryptions 4 +created [0-9T:Z-]+\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\n    v2 +enabled +encryptions 1 +created [0-9T:Z-]+  \\(primary\\)\n")))
      << text.out;

  // list: text and JSON.
  ProcessResult list = keyhold({"kek", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.rfind("NAME", 0), 0u) << list.out;
  EXPECT_TRUE(std::regex_search(list.out, std::regex("\nshown +v2 +2 +12h +" + due + "\n"))) << list.out;
  nlohmann::json all = keyhold_json({"kek", "list"});
  ASSERT_TRUE(all.is_array());
  bool found = false;
  for (const auto& entry : all) {
    if (entry["name"] != "shown") continue;
    found = true;
    EXPECT_EQ(entry, j) << "list --json shows each KEK as show --json does";
  }
  EXPECT_TRUE(found) << all.dump();

  // No rotation period: rotation by count only.
  ASSERT_EQ(keyhold({"kek", "create", "manual", "--rotation-period", "none"}).exit_code, 0);
  nlohmann::json manual = show("manual");
  EXPECT_TRUE(manual["next_rotation_due"].is_null()) << manual.dump();
  EXPECT_EQ(manual["rotation_period_seconds"], 0);
  EXPECT_NE(keyhold({"kek", "show", "manual"}).out.find("next rotation:    by count only\n"), std::string::npos);
  EXPECT_TRUE(std::regex_search(keyhold({"kek", "list"}).out, std::regex("\nmanual +v1 +1 +none +by count only\n")));
}

TEST(EnvelopeKek, ADisabledVersionRefusesToDecryptUntilEnabledAgain) {
  create_kek("dis");
  std::string old_ct = encrypt("dis", "under v1", {"k=v"});
  ASSERT_EQ(keyhold({"kek", "rotate", "dis"}).exit_code, 0);
  std::string new_ct = encrypt("dis", "under v2", {"k=v"});

  ProcessResult disabled = keyhold({"--json", "kek", "disable-version", "dis", "1"});
  ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  nlohmann::json j = nlohmann::json::parse(disabled.out);
  EXPECT_EQ(version_of(j, 1)["state"], "disabled");
  EXPECT_TRUE(std::regex_match(version_of(j, 1)["state_changed_at"].get<std::string>(), kTimestamp)) << j.dump();
  EXPECT_EQ(version_of(show("dis"), 1)["state"], "disabled") << "stored, not only printed";
  EXPECT_TRUE(std::regex_search(keyhold({"kek", "show", "dis"}).out, std::regex("\n    v1 +disabled +encryptions 1 .*, disabled [0-9T:Z-]+\n")));

  // FailedPrecondition: status 1 (src/cli/main.cpp exit_status_for).
  std::string dir = fresh_dir("disabled");
  expect_refused(keyhold({"decrypt", "--context", "k=v", "--out", dir + "/out"}, input(old_ct)), 1,
                 {"KEK 'dis'", "version 1", "disabled"}, "decrypt under a disabled version");
  EXPECT_EQ(entries(dir), std::vector<std::string>{}) << "no output file";
  expect_refused(decrypt(old_ct, {"k=v"}), 1, {"KEK 'dis'", "version 1", "disabled"}, "to stdout");
  expect_refused(keyhold({"rewrap", "--context", "k=v"}, input(old_ct)), 1, {"disabled"}, "rewrap under a disabled version");
  expect_decrypts(new_ct, {"k=v"}, "under v2");

  expect_refused(keyhold({"kek", "disable-version", "dis", "1"}), 1, {"KEK 'dis' version 1 is already disabled"}, "twice");

  ProcessResult enabled = keyhold({"kek", "enable-version", "dis", "1"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
  EXPECT_EQ(version_of(show("dis"), 1)["state"], "enabled");
  expect_decrypts(old_ct, {"k=v"}, "under v1");
  expect_refused(keyhold({"kek", "enable-version", "dis", "1"}), 1, {"KEK 'dis' version 1 is already enabled"}, "twice");
}

TEST(EnvelopeKek, DestroyingAVersionNeedsYesThenRemovesItsTokenObjectForEver) {
  create_kek("gone");
  std::string old_ct = encrypt("gone", "under v1");
  ASSERT_EQ(keyhold({"kek", "rotate", "gone"}).exit_code, 0);
  std::string new_ct = encrypt("gone", "under v2");
  ASSERT_TRUE(token_has("kek.gone.v1"));

  // Without --yes: refused, nothing changes.
  expect_refused(keyhold({"kek", "destroy-version", "gone", "1"}), 2, {"--yes", "KEK 'gone' version 1"}, "no --yes");
  EXPECT_EQ(version_of(show("gone"), 1)["state"], "enabled");
  EXPECT_TRUE(token_has("kek.gone.v1"));
  expect_decrypts(old_ct, {}, "under v1");

  ProcessResult destroyed = keyhold({"kek", "destroy-version", "gone", "1", "--yes"});
  ASSERT_EQ(destroyed.exit_code, 0) << destroyed.err;
  std::string objects = token_objects();
  EXPECT_EQ(objects.find("label:      kek.gone.v1\n"), std::string::npos) << "the token object is gone:\n" << objects;
  EXPECT_NE(objects.find("label:      kek.gone.v2\n"), std::string::npos) << objects;

  nlohmann::json j = show("gone");
  nlohmann::json v1 = version_of(j, 1);
  EXPECT_EQ(v1["state"], "destroyed");
  ASSERT_TRUE(v1["state_changed_at"].is_string()) << j.dump();
  std::string at = v1["state_changed_at"];
  EXPECT_TRUE(std::regex_match(at, kTimestamp)) << at;
  EXPECT_EQ(version_of(j, 2)["state"], "enabled");
  ProcessResult text = keyhold({"kek", "show", "gone"});
  EXPECT_NE(text.out.find(", destroyed " + at + "\n"), std::string::npos) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\n    v1 +destroyed +encryptions 1 "))) << text.out;

  std::string dir = fresh_dir("destroyed");
  expect_refused(keyhold({"decrypt", "--out", dir + "/out"}, input(old_ct)), 1,
                 {"KEK 'gone' version 1 was destroyed at " + at}, "decrypt under a destroyed version");
  EXPECT_EQ(entries(dir), std::vector<std::string>{});
  // Destruction is final: enabling or destroying again is refused, and decryption keeps failing.
  ProcessResult enable = keyhold({"kek", "enable-version", "gone", "1"});
  EXPECT_NE(enable.exit_code, 0) << enable.out;
  expect_one_error_line(enable);
  EXPECT_EQ(version_of(show("gone"), 1)["state"], "destroyed");
  expect_refused(decrypt(old_ct), 1, {"destroyed at " + at}, "after enable-version was refused");
  expect_refused(keyhold({"kek", "destroy-version", "gone", "1", "--yes"}), 1, {"was destroyed at " + at}, "twice");
  expect_decrypts(new_ct, {}, "under v2");
}

TEST(EnvelopeKek, ThePrimaryVersionCanBeNeitherDisabledNorDestroyed) {
  create_kek("prim");
  expect_refused(keyhold({"kek", "disable-version", "prim", "1"}), 1, {"KEK 'prim' version 1", "primary", "cannot be disabled"},
                 "disable the primary");
  expect_refused(keyhold({"kek", "destroy-version", "prim", "1", "--yes"}), 1,
                 {"KEK 'prim' version 1", "primary", "cannot be destroyed"}, "destroy the primary");
  EXPECT_EQ(version_of(show("prim"), 1)["state"], "enabled");
  EXPECT_TRUE(token_has("kek.prim.v1"));
  expect_decrypts(encrypt("prim", "still works"), {}, "still works");

  // After a rotation the new primary is protected and the old one is not.
  ASSERT_EQ(keyhold({"kek", "rotate", "prim"}).exit_code, 0);
  expect_refused(keyhold({"kek", "disable-version", "prim", "2"}), 1, {"cannot be disabled"}, "new primary");
  expect_refused(keyhold({"kek", "destroy-version", "prim", "2", "--yes"}), 1, {"cannot be destroyed"}, "new primary");
  EXPECT_EQ(keyhold({"kek", "disable-version", "prim", "1"}).exit_code, 0);
  // No such version / no such KEK: NotFound, status 4.
  expect_refused(keyhold({"kek", "disable-version", "prim", "9"}), 4, {"has no version 9"}, "unknown version");
  expect_refused(keyhold({"kek", "show", "nope"}), 4, {"no KEK named 'nope'"}, "unknown KEK");
}

// ---------------------------------------------------------------------------
// 3. keyhold maintain

bool rotated(const nlohmann::json& report, const std::string& kek) {
  for (const auto& r : report["rotated_keks"]) {
    if (r["kek"] == kek) return true;
  }
  return false;
}

TEST(EnvelopeMaintain, RotatesAKekAtItsMaxEncryptionsAndNotBeforeAndLeavesAYoungOneAlone) {
  create_kek("count2", {"--max-encryptions", "2"});
  create_kek("young", {"--rotation-period", "1d"});
  encrypt("young", "x");

  encrypt("count2", "first");
  EXPECT_EQ(show("count2")["rotation_due"], false);
  nlohmann::json report = keyhold_json({"maintain"});
  EXPECT_FALSE(rotated(report, "count2")) << "one encryption of two: " << report.dump();
  EXPECT_FALSE(rotated(report, "young")) << report.dump();
  EXPECT_EQ(show("count2")["primary_version"], 1);

  encrypt("count2", "second");
  nlohmann::json due = show("count2");
  EXPECT_EQ(due["rotation_due"], true);
  EXPECT_NE(due["due_reason"].get<std::string>().find("2 encryptions"), std::string::npos) << due.dump();
  EXPECT_NE(keyhold({"kek", "show", "count2"}).out.find("next rotation:    due now: "), std::string::npos);

  report = keyhold_json({"maintain"});
  ASSERT_TRUE(rotated(report, "count2")) << report.dump();
  for (const auto& r : report["rotated_keks"]) {
    if (r["kek"] != "count2") continue;
    EXPECT_EQ(r["new_version"], 2);
    EXPECT_NE(r["reason"].get<std::string>().find("max-encryptions 2"), std::string::npos) << r.dump();
  }
  EXPECT_FALSE(rotated(report, "young")) << report.dump();
  nlohmann::json after = show("count2");
  EXPECT_EQ(after["primary_version"], 2);
  EXPECT_EQ(after["rotation_due"], false);
  EXPECT_EQ(version_of(after, 2)["encryptions"], 0);
  EXPECT_EQ(show("young")["primary_version"], 1);

  // Once rotated, nothing is due until the new version has done its two.
  EXPECT_FALSE(rotated(keyhold_json({"maintain"}), "count2"));
  EXPECT_EQ(show("count2")["primary_version"], 2);
  encrypt("count2", "third");
  EXPECT_FALSE(rotated(keyhold_json({"maintain"}), "count2"));
  encrypt("count2", "fourth");
  // Text mode: the rotation is reported on stderr.
  ProcessResult text = keyhold({"maintain"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.err.find("rotated KEK 'count2' to version 3: "), std::string::npos) << text.err;
  EXPECT_EQ(text.out, "");
  EXPECT_EQ(show("count2")["primary_version"], 3);
  EXPECT_EQ(show("young")["primary_version"], 1);
}

// ---------------------------------------------------------------------------
// 4. Bad input: one error line, a non-zero status, no output

TEST(EnvelopeBadInput, EncryptRefusesAPlaintextOver4KiBAndCountsNothing) {
  create_kek("limit");
  IgnoreSigpipe ignore_sigpipe;
  std::string dir = fresh_dir("limit");
  write_file(dir + "/big", std::string(4097, 'a'));
  std::uint64_t before = encryptions("limit", 1);
  expect_refused(keyhold({"encrypt", "--kek", "limit"}, input(std::string(4097, 'a'))), 2, {"larger than 4096 bytes"},
                 "4097 bytes on stdin");
  expect_refused(keyhold({"encrypt", "--kek", "limit", "--in", dir + "/big"}), 2, {"larger than 4 KiB"}, "4097 bytes in a file");
  expect_refused(keyhold({"encrypt", "--kek", "limit"}, input(std::string(1 << 20, 'a'))), 2, {"larger than 4096 bytes"},
                 "1 MiB on stdin");
  EXPECT_EQ(encryptions("limit", 1), before) << "nothing was encrypted";
  expect_decrypts(encrypt("limit", std::string(4096, 'a')), {}, std::string(4096, 'a'));
}

TEST(EnvelopeBadInput, EveryBadCiphertextIsRefusedWithOneLineAndNoOutput) {
  create_kek("victim");
  IgnoreSigpipe ignore_sigpipe;
  create_kek("other");
  std::string plaintext = "the secret " + hex(random_bytes(8));
  std::string good = encrypt("victim", plaintext, {"app=a"});
  std::string binary = binary_of(good);
  ASSERT_FALSE(binary.empty());
  std::string kek_id_changed = binary;
  kek_id_changed[5] = static_cast<char>(kek_id_changed[5] ^ 0x40);
  std::string version2 = binary;
  version2[0] = 2;
  std::string version99 = binary;
  version99[20] = 99;
  std::string version0 = binary;
  version0[20] = 0;

  struct Case {
    std::string what;
    std::string ciphertext;
    Args args;
    int status;
    std::vector<std::string> says;
  };
  std::vector<Case> cases = {
      {"wrong context", good, {"--context", "app=b"}, 2, {"does not match"}},
      {"missing context", good, {}, 2, {"does not match"}},
      {"extra context item", good, {"--context", "app=a", "--context", "more=1"}, 2, {"does not match"}},
      {"changed KEK id", text_of(kek_id_changed), {"--context", "app=a"}, 4, {"KEK id " + hex(kek_id_changed.substr(1, 16)), "no KEK"}},
      {"changed KEK id, binary", kek_id_changed, {"--context", "app=a"}, 4, {"no KEK"}},
      {"--kek of another KEK", good, {"--context", "app=a", "--kek", "other"}, 2, {"not made under KEK 'other'", "it names another KEK"}},
      // Not NotFound (status 4) like `encrypt --kek nope`: the service compares the name with the ciphertext's KEK.
      {"--kek nope", good, {"--context", "app=a", "--kek", "nope"}, 2, {"'nope'"}},
      {"KEK version that does not exist", text_of(version99), {"--context", "app=a"}, 4, {"KEK 'victim' has no version 99"}},
      {"KEK version 0", version0, {"--context", "app=a"}, 2, {"version 0"}},
      {"kh2: text", "kh2:" + good.substr(4), {"--context", "app=a"}, 2, {"unknown ciphertext format version 2"}},
      {"binary with version byte 2", version2, {"--context", "app=a"}, 2, {"unknown ciphertext format version 2"}},
      {"kh1: with version byte 2 inside", text_of(version2), {"--context", "app=a"}, 2, {"format version 2"}},
      {"base64 garbage", "kh1:!!!!not*base64", {"--context", "app=a"}, 2, {"base64url"}},
      {"standard base64 instead of base64url", "kh1:" + encode64(binary, kBase64, true), {"--context", "app=a"}, 2, {}},
      {"whitespace inside", good.substr(0, 20) + " " + good.substr(20), {"--context", "app=a"}, 2, {}},
      {"not a ciphertext at all", "hello world\n", {"--context", "app=a"}, 2, {}},
      {"empty input", "", {"--context", "app=a"}, 2, {}},
      {"text truncated to 40 characters (30 bytes)", good.substr(0, 4 + 40), {"--context", "app=a"}, 2, {"truncated"}},
      {"text truncated to an impossible length", good.substr(0, 4 + 49), {"--context", "app=a"}, 2, {"impossible length"}},
      {"text missing its last character", good.substr(0, good.size() - 1), {"--context", "app=a"}, 2, {}},
      {"binary truncated to 48 bytes", binary.substr(0, 48), {"--context", "app=a"}, 2, {"truncated"}},
      {"binary missing its last byte", binary.substr(0, binary.size() - 1), {"--context", "app=a"}, 2, {}},
      {"binary with a byte appended", binary + "x", {"--context", "app=a"}, 2, {}},
  };
  std::string dir = fresh_dir("bad-ciphertexts");
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // To stdout, ciphertext on stdin.
    Args args = {"decrypt"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    expect_refused(keyhold(args, input(c.ciphertext)), c.status, c.says, c.what + " (stdin to stdout)");
    // From --in FILE to --out FILE: no output file, no temporary file.
    std::string in = dir + "/in" + std::to_string(++n);
    write_file(in, c.ciphertext);
    std::string out_dir = dir + "/out" + std::to_string(n);
    fs::create_directories(out_dir);
    Args file_args = args;
    file_args.insert(file_args.end(), {"--in", in, "--out", out_dir + "/plain"});
    expect_refused(keyhold(file_args), c.status, c.says, c.what + " (--in to --out)");
    EXPECT_EQ(entries(out_dir), std::vector<std::string>{}) << "left behind: " << joined(entries(out_dir));
    // rewrap refuses it too, printing no ciphertext.
    Args rewrap_args = args;
    rewrap_args[0] = "rewrap";
    ProcessResult rewrap = keyhold(rewrap_args, input(c.ciphertext));
    EXPECT_NE(rewrap.exit_code, 0);
    EXPECT_EQ(rewrap.out, "");
    expect_one_error_line(rewrap);
  }
  // And the good one does decrypt, so the refusals above are about the damage.
  expect_decrypts(good, {"app=a"}, plaintext);
  expect_decrypts(binary, {"app=a"}, plaintext);

  // An unknown KEK name for the commands that take one: NotFound, status 4.
  expect_refused(keyhold({"encrypt", "--kek", "nope"}, input("x")), 4, {"no KEK named 'nope'"}, "encrypt --kek nope");
  expect_refused(keyhold({"datakey", "generate", "--kek", "nope", "--plaintext-out", dir + "/dk"}), 4, {"no KEK named 'nope'"},
                 "datakey generate --kek nope");
  EXPECT_FALSE(fs::exists(dir + "/dk"));
  write_file(dir + "/small", "small");
  expect_refused(keyhold({"seal", "--kek", "nope", "--in", dir + "/small", "--out", dir + "/small.sealed"}), 4,
                 {"no KEK named 'nope'"}, "seal --kek nope");
  EXPECT_FALSE(fs::exists(dir + "/small.sealed"));
  expect_refused(keyhold({"kek", "rotate", "nope"}), 4, {"no KEK named 'nope'"}, "kek rotate nope");
}

TEST(EnvelopeBadInput, BadContextItemsAreRefusedByPositionWithoutEchoingThem) {
  create_kek("ctx");
  std::string good = encrypt("ctx", "x", {"a=1"});
  std::string dir = fresh_dir("bad-context");
  write_file(dir + "/plain", "plain");
  std::string sealed = dir + "/sealed";
  ASSERT_EQ(keyhold({"seal", "--kek", "ctx", "--context", "a=1", "--in", dir + "/plain", "--out", sealed}).exit_code, 0);
  std::uint64_t before = encryptions("ctx", 1);
  auto new_context = [](const Args& items) {
    Args args = {"rewrap", "--context", "a=1"};
    for (const std::string& item : items) args.insert(args.end(), {"--new-context", item});
    return args;
  };

  struct Bad {
    Args items;
    std::string says;
  };
  // The values must never appear in the message: they may be secret-ish.
  std::vector<Bad> bad = {
      {{"s3cretvalue"}, "context item 1 has no '='"},
      {{"a=1", "=s3cretvalue"}, "context item 2 has an empty key"},
      {{"a=s3cretvalue", "a=s3cretvalue2"}, "context key 'a' is given more than once"},
  };
  for (const Bad& b : bad) {
    std::string out = dir + "/out";
    std::vector<std::pair<std::string, ProcessResult>> runs = {
        {"encrypt", keyhold(with_context({"encrypt", "--kek", "ctx"}, b.items), input("x"))},
        {"decrypt", keyhold(with_context({"decrypt", "--out", out}, b.items), input(good))},
        {"datakey", keyhold(with_context({"datakey", "generate", "--kek", "ctx", "--plaintext-out", out}, b.items))},
        {"rewrap", keyhold(with_context({"rewrap"}, b.items), input(good))},
        {"rewrap --new-context", keyhold(new_context(b.items), input(good))},
        {"seal", keyhold(with_context({"seal", "--kek", "ctx", "--in", dir + "/plain", "--out", out}, b.items))},
        {"unseal", keyhold(with_context({"unseal", "--in", sealed, "--out", out}, b.items))},
    };
    for (const auto& [what, r] : runs) {
      expect_refused(r, 2, {b.says}, what + " " + b.items.back());
      EXPECT_EQ(r.err.find("s3cretvalue"), std::string::npos) << "the item was echoed: " << r.err;
      EXPECT_FALSE(fs::exists(out)) << what;
    }
  }
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"plain", "sealed"})) << "no temporary file left";
  EXPECT_EQ(encryptions("ctx", 1), before) << "a bad context fails before the token encrypts";
}

// ---------------------------------------------------------------------------
// Sealed files

std::uint32_t be32(const std::string& bytes, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = at; i < at + 4; ++i) v = (v << 8) | static_cast<std::uint8_t>(bytes.at(i));
  return v;
}

TEST(EnvelopeSeal, FilesAndStreamsRoundTripWithTheDocumentedLayout) {
  create_kek("sealer");
  std::string dir = fresh_dir("seal-roundtrip");
  for (std::size_t size : {std::size_t{0}, std::size_t{1000}, kSegment, 2 * kSegment + 5}) {
    SCOPED_TRACE(size);
    std::string plaintext = random_bytes(size);
    std::string in = dir + "/plain", sealed = dir + "/sealed", out = dir + "/out";
    write_file(in, plaintext);
    ProcessResult s = keyhold({"seal", "--kek", "sealer", "--context", "f=1", "--in", in, "--out", sealed});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    EXPECT_EQ(s.out, "sealed " + std::to_string(size) + " bytes under KEK 'sealer' version 1 to " + sealed + "\n");
    std::string bytes = read_file(sealed);
    ASSERT_GE(bytes.size(), 23u);
    EXPECT_EQ(bytes.substr(0, 8), std::string("KHSEAL\0\1", 8));
    EXPECT_EQ(be32(bytes, 8), kSegment);
    std::size_t header = 23 + be32(bytes, 19);
    EXPECT_EQ(bytes.size(), header + size + kSealTag * (size / kSegment + 1)) << "H + P + 16 * (P / S + 1)";
    // The wrapped key is a kh1 binary ciphertext under the KEK.
    EXPECT_EQ(kek_version_of(bytes.substr(23)), 1u);

    ProcessResult u = keyhold({"unseal", "--context", "f=1", "--in", sealed, "--out", out});
    ASSERT_EQ(u.exit_code, 0) << u.err;
    EXPECT_EQ(u.out, "unsealed " + std::to_string(size) + " bytes (KEK 'sealer' version 1) to " + out + "\n");
    EXPECT_EQ(read_file(out), plaintext);
    EXPECT_EQ(mode_of(out), 0600u);

    // stdin to stdout, both ways.
    ProcessResult piped = keyhold({"seal", "--kek", "sealer"}, input(plaintext));
    ASSERT_EQ(piped.exit_code, 0) << piped.err;
    ProcessResult back = keyhold({"unseal"}, input(piped.out));
    ASSERT_EQ(back.exit_code, 0) << back.err;
    EXPECT_TRUE(back.out == plaintext) << "unsealed stream differs (" << back.out.size() << " bytes)";
    EXPECT_EQ(back.err, "");
    fs::remove(out);
  }
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"plain", "sealed"}));
}

// With the data on stdout, a JSON summary there would corrupt it (keyhold
// once appended it to the sealed stream, which then failed to unseal): --json
// needs --out FILE, and with it the summary is the only thing on stdout.
TEST(EnvelopeSeal, JsonIsRefusedWhenTheDataGoesToStdoutAndSummarisesOtherwise) {
  create_kek("jsonseal");
  std::string plaintext = "json and stdout " + hex(random_bytes(8));
  std::string dir = fresh_dir("jsonseal");
  ProcessResult plain_sealed = keyhold({"seal", "--kek", "jsonseal"}, input(plaintext));
  ASSERT_EQ(plain_sealed.exit_code, 0) << plain_sealed.err;
  std::uint64_t before = encryptions("jsonseal", 1);
  for (const Args& out : {Args{}, Args{"--out", "-"}}) {
    Args seal = {"--json", "seal", "--kek", "jsonseal"};
    seal.insert(seal.end(), out.begin(), out.end());
    expect_refused(keyhold(seal, input(plaintext)), 2, {"--json needs --out FILE"}, "--json seal to stdout");
    Args unseal = {"--json", "unseal"};
    unseal.insert(unseal.end(), out.begin(), out.end());
    expect_refused(keyhold(unseal, input(plain_sealed.out)), 2, {"--json needs --out FILE"}, "--json unseal to stdout");
  }
  EXPECT_EQ(encryptions("jsonseal", 1), before) << "refused before a data key was made";

  write_file(dir + "/plain", plaintext);
  ProcessResult sealed = keyhold({"--json", "seal", "--kek", "jsonseal", "--in", dir + "/plain", "--out", dir + "/sealed"});
  ASSERT_EQ(sealed.exit_code, 0) << sealed.err;
  nlohmann::json s = nlohmann::json::parse(sealed.out);
  EXPECT_EQ(s["plaintext_bytes"], plaintext.size());
  EXPECT_EQ(s["kek_version"], 1);
  EXPECT_EQ(s["out"], dir + "/sealed");
  ProcessResult unsealed = keyhold({"--json", "unseal", "--in", dir + "/sealed", "--out", dir + "/out"});
  ASSERT_EQ(unsealed.exit_code, 0) << unsealed.err;
  nlohmann::json u = nlohmann::json::parse(unsealed.out);
  EXPECT_EQ(u["plaintext_bytes"], plaintext.size());
  EXPECT_EQ(u["kek"], "jsonseal");
  EXPECT_EQ(u["kek_version"], 1);
  EXPECT_EQ(read_file(dir + "/out"), plaintext);
}

TEST(EnvelopeSeal, DamagedSealedFilesAreRefusedAndNothingIsWritten) {
  create_kek("tamper");
  IgnoreSigpipe ignore_sigpipe;
  std::string dir = fresh_dir("seal-damage");
  // Three full segments and a short last one.
  std::string plaintext = random_bytes(3 * kSegment + 1000);
  write_file(dir + "/plain", plaintext);
  ASSERT_EQ(keyhold({"seal", "--kek", "tamper", "--context", "f=1", "--in", dir + "/plain", "--out", dir + "/good"}).exit_code,
            0);
  std::string good = read_file(dir + "/good");
  std::size_t h = 23 + be32(good, 19);
  ASSERT_EQ(good.size(), h + 3 * kFullSegment + 1000 + kSealTag);
  auto segment = [&](std::size_t i) {
    std::size_t at = h + i * kFullSegment;
    return good.substr(at, std::min(kFullSegment, good.size() - at));
  };
  auto flip = [&](std::size_t byte, int bit) {
    std::string s = good;
    s[byte] = static_cast<char>(s[byte] ^ (1 << bit));
    return s;
  };
  auto with_byte = [&](std::size_t at, char value) {
    std::string s = good;
    s[at] = value;
    return s;
  };
  std::string swapped01 = good.substr(0, h) + segment(1) + segment(0) + segment(2) + segment(3);
  std::string swapped12 = good.substr(0, h) + segment(0) + segment(2) + segment(1) + segment(3);
  std::string wrapped_kek_id_flipped = flip(23 + 3, 0);  // inside the wrapped key's KEK id

  struct Case {
    std::string what;
    std::string bytes;
    int status;
    std::string says;
  };
  std::vector<Case> cases = {
      {"truncated at the boundary after 3 segments", good.substr(0, h + 3 * kFullSegment), 2, "ends after 3 segments"},
      {"truncated at the boundary after 2 segments", good.substr(0, h + 2 * kFullSegment), 2, "ends after 2 segments"},
      {"truncated at the boundary after 1 segment", good.substr(0, h + kFullSegment), 2, "ends after 1 segments"},
      {"truncated right after the header", good.substr(0, h), 2, "ends after 0 segments"},
      {"truncated inside segment 1", good.substr(0, h + kFullSegment + 500), 2, "failed authentication at segment 1"},
      {"truncated inside the last tag", good.substr(0, good.size() - 1), 2, "failed authentication at segment 3"},
      {"truncated inside the header", good.substr(0, h - 5), 2, "header is truncated"},
      {"segments 0 and 1 swapped", swapped01, 2, "failed authentication at segment 0"},
      {"segments 1 and 2 swapped", swapped12, 2, "failed authentication at segment 1"},
      {"segment 2 dropped", good.substr(0, h) + segment(0) + segment(1) + segment(3), 2, "failed authentication at segment 2"},
      {"segment 1 duplicated", good.substr(0, h) + segment(0) + segment(1) + segment(1) + segment(2) + segment(3), 2,
       "failed authentication at segment 2"},
      {"one byte appended", good + "x", 2, "failed authentication at segment 3"},
      {"last segment appended again", good + segment(3), 2, "failed authentication at segment 3"},
      {"the file appended to itself", good + good, 2, "failed authentication at segment 3"},
      {"nonce prefix bit flipped", flip(12, 0), 2, "failed authentication at segment 0"},
      {"segment size bit flipped", flip(11, 0), 2, ""},
      {"wrapped key length bit flipped", flip(22, 1), 2, ""},
      {"wrapped key tag bit flipped", flip(h - 1, 7), 2, "does not match"},
      {"wrapped key's KEK id bit flipped", wrapped_kek_id_flipped, 4, "no KEK"},
      {"magic bit flipped", flip(0, 5), 2, "not a keyhold sealed file"},
      {"format version 2", with_byte(7, 2), 2, "format version 2"},
      {"format version bit flipped (3)", flip(7, 1), 2, "format version 3"},
      {"segment 0 ciphertext bit flipped", flip(h + 100, 3), 2, "failed authentication at segment 0"},
      {"last segment tag bit flipped", flip(good.size() - 1, 0), 2, "failed authentication at segment 3"},
      {"wrong context", good, 2, "does not match"},
  };
  std::string tmp = dir + "/tmp";
  fs::create_directories(tmp);
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string in = dir + "/damaged" + std::to_string(++n);
    write_file(in, c.bytes);
    Args context = {"--context", c.what == "wrong context" ? "f=2" : "f=1"};
    // --out FILE: FILE never appears, and no temporary file is left in its directory.
    std::string out_dir = dir + "/out" + std::to_string(n);
    fs::create_directories(out_dir);
    Args args = {"unseal", "--in", in, "--out", out_dir + "/plain"};
    args.insert(args.end(), context.begin(), context.end());
    expect_refused(keyhold(args), c.status, {c.says}, c.what + " (--out FILE)");
    EXPECT_FALSE(fs::exists(out_dir + "/plain"));
    EXPECT_EQ(entries(out_dir), std::vector<std::string>{}) << "left behind: " << joined(entries(out_dir));
    // stdin to stdout (spooled in TMPDIR): nothing on stdout, nothing left in TMPDIR.
    ProcessOptions piped = input(c.bytes);
    piped.env["TMPDIR"] = tmp;
    expect_refused(keyhold({"unseal", context[0], context[1]}, piped), c.status, {c.says}, c.what + " (stdout)");
    EXPECT_EQ(entries(tmp), std::vector<std::string>{}) << joined(entries(tmp));
  }
  // An existing output file is left as it was by a refusal.
  std::string existing = dir + "/existing";
  write_file(existing, "keep me");
  expect_refused(keyhold({"unseal", "--context", "f=1", "--in", dir + "/damaged2", "--out", existing}), 2, {"truncated"},
                 "over an existing file");
  EXPECT_EQ(read_file(existing), "keep me");
  // The undamaged file does unseal, so each refusal above is about its damage.
  ProcessResult ok = keyhold({"unseal", "--context", "f=1", "--in", dir + "/good", "--out", dir + "/unsealed"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(read_file(dir + "/unsealed") == plaintext);
}

// ---------------------------------------------------------------------------
// 5. Every bit of a binary ciphertext is checked

TEST(EnvelopeBitFlips, FlippingAnyBitOfABinaryCiphertextMakesDecryptFailAndPrintNothing) {
  create_kek("flip");
  std::string good = encrypt("flip", "Z", {"t=1"});
  std::string binary = binary_of(good);
  ASSERT_EQ(binary.size(), 50u) << "header 33 + 1 byte + tag 16";
  std::string dir = fresh_dir("bitflip");
  std::string file = dir + "/ct.bin";
  write_file(file, binary);
  ProcessResult baseline = keyhold({"decrypt", "--in", file, "--context", "t=1"});
  ASSERT_EQ(baseline.exit_code, 0) << baseline.err;
  ASSERT_EQ(baseline.out, "Z");

  // All 400 bits, one keyhold run each: about 11 s here (2 cores), so no
  // thinning of the sweep is needed.
  auto start = std::chrono::steady_clock::now();
  int failures_seen = 0;
  for (std::size_t bit = 0; bit < binary.size() * 8; ++bit) {
    std::string flipped = binary;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    write_file(file, flipped);
    ProcessResult r = keyhold({"decrypt", "--in", file, "--context", "t=1"});
    EXPECT_NE(r.exit_code, 0) << "bit " << bit << " flipped and it still decrypted";
    EXPECT_EQ(r.out, "") << "bit " << bit << ": stdout not empty";
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "bit " << bit << ": " << r.err;
    EXPECT_EQ(r.err.rfind("keyhold: error: ", 0), 0u) << "bit " << bit << ": " << r.err;
    if (r.exit_code != 0) ++failures_seen;
  }
  EXPECT_EQ(failures_seen, 400);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("bitflip_seconds", std::to_string(seconds));
  EXPECT_LT(seconds, 60.0) << "the sweep is meant to take well under 20 s";
}

// ---------------------------------------------------------------------------
// 6. A 1 GiB stream sealed and unsealed in constant memory

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST(EnvelopeSeal, AOneGibStreamRoundTripsThroughPipesInConstantMemory) {
  create_kek("stream");
  std::string dir = fresh_dir("stream");
  std::string tmp = dir + "/tmp";
  fs::create_directories(tmp);
  std::string bin = shell_quote(testing::keyhold_binary());
  std::string script = "head -c 1073741824 /dev/zero | " + bin + " seal --kek stream | " + bin + " unseal | sha256sum";
  ProcessOptions options;
  // As keyhold() sets it, plus TMPDIR for unseal's spool file.
  options.env["KEYHOLD_CONFIG"] = testing::DevSetup::get().config.string();
  options.env["KEYHOLD_PIN"] = std::nullopt;
  options.env["KEYHOLD_LOG"] = std::nullopt;
  options.env["TMPDIR"] = tmp;

  // getrusage(RUSAGE_CHILDREN) is the maximum over every child waited for so
  // far, so the pipeline runs in a fresh child of this test: its children are
  // only the pipeline (sh waits for each of its members).
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(report[0]);
    std::string message;
    try {
      ProcessResult r = run_process({"sh", "-c", script}, options);
      rusage usage{};
      ::getrusage(RUSAGE_CHILDREN, &usage);
      message = std::to_string(r.exit_code) + "\n" + std::to_string(usage.ru_maxrss) + "\n" + trim(r.out) + "\n" + r.err;
    } catch (const std::exception& e) {
      message = "-1\n0\n\nexception: " + std::string(e.what());
    }
    std::size_t written = 0;
    while (written < message.size()) {
      ssize_t w = ::write(report[1], message.data() + written, message.size() - written);
      if (w <= 0) break;
      written += static_cast<std::size_t>(w);
    }
    ::_exit(0);
  }
  ::close(report[1]);
  // The reference hash meanwhile (a child of this process, not of the forked one).
  ProcessResult expected = run_process({"sh", "-c", "head -c 1073741824 /dev/zero | sha256sum"});
  std::string message;
  char buffer[4096];
  for (;;) {
    ssize_t r = ::read(report[0], buffer, sizeof buffer);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    message.append(buffer, static_cast<std::size_t>(r));
  }
  ::close(report[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<std::string> parts = lines_of(message);
  ASSERT_GE(parts.size(), 3u) << message;
  std::string err;
  for (std::size_t i = 3; i < parts.size(); ++i) err += parts[i] + "\n";
  EXPECT_EQ(parts[0], "0") << err;
  EXPECT_EQ(err, "") << "the pipeline wrote to stderr";
  long max_rss_kib = std::stol(parts[1]);

  ASSERT_EQ(expected.exit_code, 0) << expected.err;
  EXPECT_EQ(parts[2], trim(expected.out)) << "1 GiB of zeros, sealed and unsealed, hashes as itself";
  EXPECT_GT(max_rss_kib, 0);
  // And the keyhold processes were counted: one keyhold with its token module
  // alone is about 17 MiB here, while head, sha256sum and sh stay under 2 MiB.
  EXPECT_GT(max_rss_kib, 8 * 1024) << "the measurement missed the keyhold processes";
  EXPECT_LT(max_rss_kib, 64 * 1024) << "peak RSS of the pipeline's processes, KiB";
  EXPECT_EQ(entries(tmp), std::vector<std::string>{}) << "the spool file is anonymous";
  RecordProperty("stream_seconds", std::to_string(seconds));
  RecordProperty("stream_max_rss_kib", std::to_string(max_rss_kib));
  std::cout << "1 GiB seal | unseal: " << seconds << " s, peak RSS " << max_rss_kib << " KiB\n";
  EXPECT_LT(seconds, 50.0);
}

// ---------------------------------------------------------------------------
// 7. Secrets stay out of the store and the logs

TEST(EnvelopeSecrets, NoDataKeyOrPlaintextReachesTheStoreOrStderrEvenAtTraceLevel) {
  ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  std::vector<ProcessResult> runs;
  auto run = [&](const Args& args, const std::string& in = "") {
    ProcessOptions o = trace;
    o.input = in;
    runs.push_back(keyhold(args, o));
    EXPECT_EQ(runs.back().exit_code, 0) << runs.back().err;
    return runs.back();
  };
  run({"kek", "create", "store-probe"});
  std::string dir = fresh_dir("secrets");
  std::vector<std::string> secrets;
  for (int i = 0; i < 3; ++i) {
    ProcessResult r = run({"datakey", "generate", "--kek", "store-probe", "--context", "n=" + std::to_string(i)});
    std::vector<std::string> lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    secrets.push_back(decode64(lines[1], kBase64));
  }
  ProcessResult small = run({"datakey", "generate", "--kek", "store-probe", "--bytes", "16"});
  ASSERT_EQ(lines_of(small.out).size(), 2u);
  secrets.push_back(decode64(lines_of(small.out)[1], kBase64));
  for (const char* bytes : {"32", "16"}) {
    std::string file = dir + "/key" + bytes;
    ProcessResult r = run({"datakey", "generate", "--kek", "store-probe", "--bytes", bytes, "--plaintext-out", file});
    secrets.push_back(read_file(file));
    ProcessResult back = run({"decrypt"}, r.out);
    EXPECT_EQ(back.out, secrets.back());
  }
  std::string known = "known plaintext " + hex(random_bytes(16));
  ProcessResult c = run({"encrypt", "--kek", "store-probe"}, known);
  EXPECT_EQ(run({"decrypt"}, c.out).out, known);
  for (const std::string& s : secrets) ASSERT_GE(s.size(), 16u);
  secrets.push_back(known);

  // Every form a secret could take.
  std::vector<std::pair<std::string, std::string>> forms;
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    const std::string& s = secrets[i];
    std::string name = i + 1 == secrets.size() ? "the known plaintext" : "data key " + std::to_string(i);
    forms.push_back({name + " (raw)", s});
    forms.push_back({name + " (base64)", encode64(s, kBase64, false)});
    forms.push_back({name + " (base64url)", encode64(s, kBase64Url, false)});
    forms.push_back({name + " (hex)", hex(s)});
    forms.push_back({name + " (HEX)", hex(s, true)});
  }

  std::string store;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::string path = path_in_setup(std::string("keyhold.db") + suffix);
    if (fs::exists(path)) store += read_file(path);
  }
  // The probe reads the right files: the KEK's name and id are there.
  ASSERT_NE(store.find("store-probe"), std::string::npos) << "the store files do not hold the KEK at all";
  for (const auto& [what, bytes] : forms) {
    EXPECT_EQ(store.find(bytes), std::string::npos) << what << " is in the store";
  }
  bool traced = false;
  for (const ProcessResult& r : runs) {
    traced = traced || r.err.find("keyhold: trace: pkcs11 C_Encrypt") != std::string::npos;
    for (const auto& [what, bytes] : forms) {
      EXPECT_EQ(r.err.find(bytes), std::string::npos) << what << " is on stderr:\n" << r.err;
    }
  }
  EXPECT_TRUE(traced) << "KEYHOLD_LOG=trace did not trace: the stderr check would prove nothing";
}

}  // namespace
}  // namespace keyhold
