#pragma once
// What keyhold renew reads and makes on the machine itself (OpenSSL, in
// software): the current X.509 or SSH certificate's lifetime and identity,
// new X.509 keys and CSRs, and the checks that a new certificate matches its
// key and chain before anything is renamed into place. Errors are
// keyhold::Error (InvalidArgument for unreadable input).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/core/secret.hpp"
#include "keyhold/renew/renewal.hpp"

namespace keyhold::renew {

struct X509Details {
  CurrentValidity validity;  // serial in lower-case hex
  std::string subject;       // one line, RFC 2253
  std::vector<std::string> names;  // DNS names and IP addresses of the subjectAltName, in order
};

// The first certificate of a PEM text / file.
X509Details read_x509(std::string_view pem);
// nullopt when the file does not exist.
std::optional<X509Details> read_x509_file(const std::filesystem::path& path);

// A new private key (PKCS#8 PEM): "ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096".
SecretBytes generate_x509_key(std::string_view key_type);

// A CSR signed by key_pem. Subject and names: those of `identity`'s
// certificate (PEM) when given -- the same identity, for remote renewal --,
// else CN = names[0] and a subjectAltName of names (IP addresses as such).
std::string make_csr(const SecretBytes& key_pem, const std::vector<std::string>& names,
                     std::optional<std::string_view> identity);

// Throws FailedPrecondition, saying which, unless the certificate (first of
// cert_pem) is for the private key (a signature made with the key verifies
// with the certificate's public key) and, when chain_pem is not empty, was
// issued by the chain's first certificate.
void check_x509_set(std::string_view cert_pem, const SecretBytes& key_pem, std::string_view chain_pem);

// ---- SSH ---------------------------------------------------------------------

struct SshDetails {
  CurrentValidity validity;  // serial in decimal
  bool host = false;
  std::string key_id;
  std::vector<std::string> principals;
  std::vector<std::uint8_t> subject_blob;  // the certified public key
};

SshDetails read_ssh_certificate(std::string_view line);
std::optional<SshDetails> read_ssh_certificate_file(const std::filesystem::path& path);
// The public key blob of an authorized_keys line (KEY.pub).
std::vector<std::uint8_t> ssh_public_key_blob(std::string_view line);
// The public key blob stored in an unencrypted or encrypted OpenSSH private
// key file ("openssh-key-v1", OpenSSH's PROTOCOL.key).
std::vector<std::uint8_t> openssh_private_key_public_blob(std::string_view private_key_file);
// Throws FailedPrecondition unless the certificate line certifies the key
// of the OpenSSH private key file and of the public key line.
void check_ssh_set(std::string_view certificate_line, std::string_view private_key_file, std::string_view public_key_line);

}  // namespace keyhold::renew
