#include "keyhold/pki/renewal.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <memory>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::pki {
namespace {

using X509Ptr = CPtr<X509, &X509_free>;
using ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;

[[noreturn]] void invalid(const std::string& message) {
  ERR_clear_error();
  throw Error(ErrorCode::InvalidArgument, message);
}

X509Ptr certificate_of(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  X509Ptr certificate(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!certificate || p != der.data() + der.size()) invalid("the current certificate does not parse");
  return certificate;
}

ReqPtr request_of(std::string_view text) {
  CPtr<BIO, &BIO_free> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  ReqPtr request(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!request) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    request.reset(d2i_X509_REQ(nullptr, &p, static_cast<long>(text.size())));
  }
  if (!request) invalid("the certificate request (CSR) does not parse");
  return request;
}

std::vector<unsigned char> der_of_name(const X509_NAME* name) {
  unsigned char* out = nullptr;
  int length = i2d_X509_NAME(name, &out);
  std::vector<unsigned char> der;
  if (length > 0) der.assign(out, out + length);
  OPENSSL_free(out);
  return der;
}

// The DER of the subjectAltName extension's value, empty when absent.
std::vector<unsigned char> san_of_certificate(X509* certificate) {
  int at = X509_get_ext_by_NID(certificate, NID_subject_alt_name, -1);
  if (at < 0) return {};
  ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(certificate, at));
  return {data->data, data->data + data->length};
}

void free_extensions(STACK_OF(X509_EXTENSION) * extensions) {
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
}

std::vector<unsigned char> san_of_request(X509_REQ* request) {
  CPtr<STACK_OF(X509_EXTENSION), &free_extensions> extensions(X509_REQ_get_extensions(request));
  if (!extensions) return {};
  int at = X509v3_get_ext_by_NID(extensions.get(), NID_subject_alt_name, -1);
  if (at < 0) return {};
  ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(sk_X509_EXTENSION_value(extensions.get(), at));
  return {data->data, data->data + data->length};
}

}  // namespace

std::string serial_of(std::span<const std::uint8_t> der) {
  X509Ptr certificate = certificate_of(der);
  CPtr<BIGNUM, &BN_free> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate.get()), nullptr));
  if (!serial) invalid("the current certificate's serial does not parse");
  char* hex = BN_bn2hex(serial.get());
  std::string text = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::size_t first = text.find_first_not_of('0');
  return first == std::string::npos ? "0" : text.substr(first);
}

void check_renewal_request(std::string_view csr, std::span<const std::uint8_t> current_der) {
  X509Ptr current = certificate_of(current_der);
  ReqPtr request = request_of(csr);
  EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
  if (key == nullptr || X509_REQ_verify(request.get(), key) != 1) invalid("the certificate request's signature does not verify");
  if (der_of_name(X509_REQ_get_subject_name(request.get())) != der_of_name(X509_get_subject_name(current.get()))) {
    invalid("a renewal keeps the subject of the current certificate: the request names another");
  }
  if (san_of_request(request.get()) != san_of_certificate(current.get())) {
    invalid("a renewal keeps the subject alternative names of the current certificate: the request names others");
  }
  ERR_clear_error();
}

}  // namespace keyhold::pki
