// The published CRLs and KRLs of pki::Authority and ssh::Authority over a
// real token and store: signed once, served from the store until a
// revocation or the due time, one signature between concurrent callers, seen
// by another process's authority, and the CA versions and expiry marks that
// keyhold maintain works through.
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "keyhold/core/encoding.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/ssh/authority.hpp"
#include "keyhold/ssh/krl.hpp"
#include "support/call_counter.hpp"
#include "support/store_testing.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;
using testing::CallCounter;
using testing::ThrowawayToken;

pki::Profile open_profile() {
  pki::Profile p;
  p.name = "server";
  p.dns = {"*"};
  p.subject_fields = {"CN"};
  return p;
}

struct ParsedCrl {
  std::int64_t number = 0;
  std::set<std::string> serials;  // lowercase hex, as the store writes them
  Clock::time_point this_update, next_update;
};

ParsedCrl parse_crl(const std::vector<std::uint8_t>& der) {
  const unsigned char* p = der.data();
  X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  EXPECT_NE(crl, nullptr);
  ParsedCrl out;
  if (crl == nullptr) return out;
  auto* number = static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr));
  if (number != nullptr) {
    out.number = ASN1_INTEGER_get(number);
    ASN1_INTEGER_free(number);
  }
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    const ASN1_INTEGER* serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i));
    std::string hex = to_hex(std::span(ASN1_STRING_get0_data(serial), static_cast<std::size_t>(ASN1_STRING_length(serial))));
    out.serials.insert(hex.substr(std::min(hex.find_first_not_of('0'), hex.size() - 1)));
  }
  auto time_of = [](const ASN1_TIME* t) {
    struct tm tm {};
    ASN1_TIME_to_tm(t, &tm);
    return Clock::from_time_t(timegm(&tm));
  };
  out.this_update = time_of(X509_CRL_get0_lastUpdate(crl));
  out.next_update = time_of(X509_CRL_get0_nextUpdate(crl));
  X509_CRL_free(crl);
  return out;
}

class PublicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "pub" + std::to_string(counter_++);
    dir_ = testing::make_temp_directory("keyhold-publication");
    store_ = store::open_sqlite_store(dir_ / "keyhold.db");
    token_ = ThrowawayToken::get().open();
    ring_ = crypto::make_token_key_ring(token_);
    keys_ = std::make_unique<service::KeyService>(*ring_, *store_);
    authority_ = make_authority(*store_, *keys_);
  }
  void TearDown() override {
    authority_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<pki::Authority> make_authority(store::Store& store, service::KeyService& keys,
                                                 std::function<Clock::time_point()> now = [] { return Clock::now(); }) {
    pki::AuthoritySettings settings;
    settings.profiles["server"] = open_profile();
    settings.crl_next_update = 2h;
    settings.now = std::move(now);
    return std::make_unique<pki::Authority>(keys, store, settings);
  }

  void create_root(pki::Authority& authority, const std::string& name) {
    pki::NewCa root{name, crypto::KeyType::EcP256, "CN=" + name, 3650, std::nullopt, std::nullopt, {}};
    authority.create_ca(root);
  }

  pki::IssuedCertificate issue(pki::Authority& authority, const std::string& ca, const std::string& host,
                               std::optional<int> days = std::nullopt) {
    pki::IssueRequest r;
    r.ca = ca;
    r.profile = "server";
    r.generate_key = crypto::KeyType::EcP256;
    r.common_name = host;
    r.days = days;
    return authority.issue(r);
  }

  std::string name_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::unique_ptr<service::KeyService> keys_;
  std::unique_ptr<pki::Authority> authority_;
  static inline int counter_ = 0;
};

TEST_F(PublicationTest, ACrlIsSignedOnceAndServedFromTheStoreUntilARevocation) {
  create_root(*authority_, name_);
  pki::IssuedCertificate leaf = issue(*authority_, name_, "a.example.test");

  pki::PublishedCrl first = authority_->published_crl(name_);
  EXPECT_TRUE(first.published);
  EXPECT_EQ(first.reason, "none published yet");
  EXPECT_EQ(first.crl.version, 1);
  EXPECT_EQ(first.crl.revoked, 0u);
  ParsedCrl parsed = parse_crl(first.crl.der);
  EXPECT_EQ(parsed.number, first.crl.number);
  EXPECT_EQ(format_utc(parsed.this_update), first.crl.this_update);
  EXPECT_EQ(format_utc(parsed.next_update), first.crl.next_update);
  EXPECT_EQ(parsed.next_update - parsed.this_update, 2h);
  // Due with half of crl_next_update left.
  EXPECT_EQ(first.due_at, format_utc(parsed.next_update - 1h));

  {
    CallCounter calls(*ThrowawayToken::get().module());
    for (int i = 0; i < 5; ++i) {
      pki::PublishedCrl again = authority_->published_crl(name_);
      EXPECT_FALSE(again.published);
      EXPECT_EQ(again.reason, "");
      EXPECT_EQ(again.crl.number, first.crl.number);
      EXPECT_EQ(again.crl.der, first.crl.der);
    }
    EXPECT_EQ(calls["C_Sign"], 0);
  }

  authority_->revoke(name_, leaf.record.serial, pki::RevocationReason::KeyCompromise);
  pki::PublishedCrl after = authority_->published_crl(name_);
  EXPECT_TRUE(after.published);
  EXPECT_EQ(after.reason, "certificates revoked since CRL " + std::to_string(first.crl.number));
  EXPECT_EQ(after.crl.number, first.crl.number + 1);
  EXPECT_EQ(after.crl.revoked, 1u);
  EXPECT_EQ(parse_crl(after.crl.der).serials, std::set<std::string>{leaf.record.serial});
  EXPECT_FALSE(authority_->published_crl(name_).published);
}

TEST_F(PublicationTest, ACrlIsRepublishedOnceLessThanHalfOfItsNextUpdatePeriodIsLeft) {
  create_root(*authority_, name_);
  pki::PublishedCrl first = authority_->published_crl(name_);
  Clock::time_point next_update = *parse_utc(first.crl.next_update);
  pki::PublicationCheck before;
  before.now = next_update - 1h - 1s;
  EXPECT_FALSE(authority_->published_crl(name_, std::nullopt, before).published);
  pki::PublicationCheck past;
  past.now = next_update - 1h;
  pki::PublishedCrl due = authority_->published_crl(name_, std::nullopt, past);
  EXPECT_TRUE(due.published);
  EXPECT_EQ(due.reason, "CRL " + std::to_string(first.crl.number) + " was due at " + first.due_at);
  EXPECT_EQ(due.crl.number, first.crl.number + 1);
  // What is signed takes the clock, not the time the decision was made at.
  Clock::time_point this_update = *parse_utc(due.crl.this_update);
  EXPECT_LT(std::chrono::abs(this_update - Clock::now()), 5min);
  // Judged at the clock, the new one is not due.
  EXPECT_FALSE(authority_->published_crl(name_).published);
}

TEST_F(PublicationTest, AnotherProcessSeesThePublishedCrlAndTheRevocationsMadeThroughIt) {
  create_root(*authority_, name_);
  pki::IssuedCertificate leaf = issue(*authority_, name_, "b.example.test");
  pki::PublishedCrl first = authority_->published_crl(name_);

  // Another connection and authority on the same file: another process, or a replica.
  auto other_store = store::open_sqlite_store(dir_ / "keyhold.db");
  service::KeyService other_keys(*ring_, *other_store);
  auto other = make_authority(*other_store, other_keys);
  {
    CallCounter calls(*ThrowawayToken::get().module());
    pki::PublishedCrl seen = other->published_crl(name_);
    EXPECT_FALSE(seen.published);
    EXPECT_EQ(seen.crl.der, first.crl.der);
    EXPECT_EQ(calls["C_Sign"], 0);
  }
  other->revoke(name_, leaf.record.serial, pki::RevocationReason::Superseded);
  pki::PublishedCrl fresh = authority_->published_crl(name_);
  EXPECT_TRUE(fresh.published);
  EXPECT_EQ(fresh.crl.revoked, 1u);
  // ... and the other one serves that new CRL without signing again.
  CallCounter calls(*ThrowawayToken::get().module());
  EXPECT_EQ(other->published_crl(name_).crl.der, fresh.crl.der);
  EXPECT_EQ(calls["C_Sign"], 0);
}

TEST_F(PublicationTest, ConcurrentCallersThatFindTheCrlStaleSignOneBetweenThem) {
  create_root(*authority_, name_);
  pki::IssuedCertificate leaf = issue(*authority_, name_, "c.example.test");
  pki::PublishedCrl first = authority_->published_crl(name_);
  authority_->revoke(name_, leaf.record.serial, pki::RevocationReason::Unspecified);

  CallCounter calls(*ThrowawayToken::get().module());
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<pki::PublishedCrl> results(kThreads);
  std::atomic<bool> go{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      results[t] = authority_->published_crl(name_);
    });
  }
  go = true;
  for (std::thread& t : threads) t.join();
  int published = 0;
  for (const pki::PublishedCrl& r : results) {
    published += r.published ? 1 : 0;
    EXPECT_EQ(r.crl.number, first.crl.number + 1);
    EXPECT_EQ(r.crl.der, results[0].crl.der);
  }
  EXPECT_EQ(published, 1);
  EXPECT_EQ(calls["C_Sign"], 1);
}

TEST_F(PublicationTest, ComparingTheRevokedSetCatchesARevocationThatBypassedTheStore) {
  create_root(*authority_, name_);
  pki::IssuedCertificate leaf = issue(*authority_, name_, "d.example.test");
  pki::PublishedCrl first = authority_->published_crl(name_);
  {
    testing::RawDb raw(dir_ / "keyhold.db");
    ASSERT_EQ(raw.exec("UPDATE certificates SET status = 'revoked', revoked_at = '2026-01-01T00:00:00Z', "
                       "revocation_reason = 'superseded' WHERE serial = '" + leaf.record.serial + "'"),
              SQLITE_OK);
  }
  // The server's cheap check trusts the stale mark, which a raw writer did not set...
  EXPECT_FALSE(authority_->published_crl(name_).published);
  // ... keyhold maintain's comparison does not.
  pki::PublicationCheck compare;
  compare.compare_revoked = true;
  pki::PublishedCrl fixed = authority_->published_crl(name_, std::nullopt, compare);
  EXPECT_TRUE(fixed.published);
  EXPECT_EQ(fixed.reason, "the revoked set differs from CRL " + std::to_string(first.crl.number) + "'s");
  EXPECT_EQ(fixed.crl.revoked, 1u);
  EXPECT_FALSE(authority_->published_crl(name_, std::nullopt, compare).published);
}

TEST_F(PublicationTest, PublishCrlForcesOneAndCaCrlSignsWithoutTouchingThePublishedOne) {
  create_root(*authority_, name_);
  pki::PublishedCrl first = authority_->published_crl(name_);
  pki::PublishedCrl forced = authority_->publish_crl(name_);
  EXPECT_TRUE(forced.published);
  EXPECT_EQ(forced.reason, "forced");
  EXPECT_EQ(forced.crl.number, first.crl.number + 1);
  pki::CrlResult adhoc = authority_->crl(name_);
  EXPECT_EQ(adhoc.number, forced.crl.number + 1);
  EXPECT_EQ(parse_crl(adhoc.der).number, adhoc.number);
  EXPECT_FALSE(adhoc.this_update.empty());
  pki::PublishedCrl published = authority_->published_crl(name_);
  EXPECT_FALSE(published.published);
  EXPECT_EQ(published.crl.number, forced.crl.number);
  // The next published one still gets a higher number than every CRL so far.
  EXPECT_EQ(authority_->publish_crl(name_).crl.number, adhoc.number + 1);
}

TEST_F(PublicationTest, EachVersionPublishesItsOwnCrlAndOldVersionsOnlyWhileTheirCertificatesLast) {
  create_root(*authority_, name_);
  pki::IssuedCertificate old_leaf = issue(*authority_, name_, "old.example.test", 30);
  authority_->rotate(name_);
  Clock::time_point now = Clock::now();
  EXPECT_EQ(authority_->crl_versions(name_, now), (std::vector<int>{1, 2}));
  // Once the old version's last certificate has expired, only the current one.
  EXPECT_EQ(authority_->crl_versions(name_, now + std::chrono::days(31)), std::vector<int>{2});

  authority_->revoke(name_, old_leaf.record.serial, pki::RevocationReason::Superseded);
  pki::PublishedCrl v1 = authority_->published_crl(name_, 1);
  pki::PublishedCrl v2 = authority_->published_crl(name_);
  EXPECT_EQ(v1.crl.version, 1);
  EXPECT_EQ(v2.crl.version, 2);
  EXPECT_EQ(v1.crl.revoked, 1u);
  EXPECT_EQ(v2.crl.revoked, 0u);
  EXPECT_EQ(v2.crl.number, v1.crl.number + 1);  // one sequence per CA
  EXPECT_FALSE(authority_->published_crl(name_, 1).published);
  EXPECT_THROW(authority_->published_crl(name_, 7), Error);
  EXPECT_THROW(authority_->published_crl("no-such-ca"), Error);

  // A CA that never rotated has its one version.
  create_root(*authority_, name_ + "b");
  EXPECT_EQ(authority_->crl_versions(name_ + "b", now), std::vector<int>{1});
}

TEST_F(PublicationTest, ACaWhoseKeyIsGoneFailsToPublishAndLeavesThePublishedCrlAndNumbersAlone) {
  create_root(*authority_, name_);
  pki::PublishedCrl first = authority_->published_crl(name_);
  std::vector<std::uint8_t> key = store_->cas().current_version(store_->cas().find(name_)->id)->key_object_id;
  ring_->destroy(key);
  // A new process: nothing cached.
  auto fresh = make_authority(*store_, *keys_);
  EXPECT_THROW(fresh->publish_crl(name_), Error);
  pki::PublishedCrl still = fresh->published_crl(name_);
  EXPECT_FALSE(still.published);
  EXPECT_EQ(still.crl.der, first.crl.der);
  // Once due, publishing fails; the last published CRL is still there for a server to fall back on.
  pki::PublicationCheck due;
  due.now = *parse_utc(first.due_at);
  EXPECT_THROW(fresh->published_crl(name_, std::nullopt, due), Error);
  std::optional<pki::PublishedCrl> last = fresh->last_published_crl(name_);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->crl.der, first.crl.der);
  EXPECT_FALSE(last->published);
  create_root(*fresh, name_ + "-none");
  EXPECT_FALSE(fresh->last_published_crl(name_ + "-none").has_value());
  EXPECT_EQ(store_->cas().find_version(store_->cas().current_version(store_->cas().find(name_)->id)->id)->crl_number,
            first.crl.number);
}

TEST_F(PublicationTest, MarkExpiredMarksEachExpiredCertificateOnceWithItsCa) {
  // A CA and certificates made 100 days ago, one of them for 30 days.
  Clock::time_point then = Clock::now() - std::chrono::days(100);
  auto past = make_authority(*store_, *keys_, [then] { return then; });
  create_root(*past, name_);
  pki::IssuedCertificate expired = issue(*past, name_, "gone.example.test", 30);
  pki::IssuedCertificate alive = issue(*past, name_, "alive.example.test", 365);

  std::vector<pki::ExpiredCertificate> marked = authority_->mark_expired(Clock::now());
  ASSERT_EQ(marked.size(), 1u);
  EXPECT_EQ(marked[0].ca, name_);
  EXPECT_EQ(marked[0].ca_version, 1);
  EXPECT_EQ(marked[0].record.serial, expired.record.serial);
  EXPECT_TRUE(store_->certificates().expired_marked_at(expired.record.serial).has_value());
  EXPECT_EQ(store_->certificates().find(expired.record.serial)->status, "valid");
  EXPECT_TRUE(authority_->mark_expired(Clock::now()).empty());
  // The filters still judge expiry from not_after.
  store::CertificateFilter filter;
  filter.status = "expired";
  EXPECT_EQ(authority_->certificates(name_, filter).size(), 1u);
  filter.status = "valid";
  ASSERT_EQ(authority_->certificates(name_, filter).size(), 1u);
  EXPECT_EQ(authority_->certificates(name_, filter)[0].serial, alive.record.serial);
}

// ---- SSH KRLs ----

class KrlPublicationTest : public PublicationTest {
 protected:
  void SetUp() override {
    PublicationTest::SetUp();
    ssh_ = std::make_unique<ssh::Authority>(*keys_, *store_, ssh::AuthoritySettings{});
    ssh_->create_ca(name_, crypto::KeyType::Ed25519);
  }
  void TearDown() override {
    ssh_.reset();
    PublicationTest::TearDown();
  }
  std::unique_ptr<ssh::Authority> ssh_;
};

TEST_F(KrlPublicationTest, AKrlIsMadeOnceAndAgainOnlyAfterARevocation) {
  ssh::PublishedKrl first = ssh_->published_krl(name_);
  EXPECT_TRUE(first.published);
  EXPECT_EQ(first.reason, "none published yet");
  EXPECT_EQ(first.krl.version, 1);
  EXPECT_EQ(first.krl.key_ids, 0u);
  EXPECT_FALSE(first.krl.generated_at.empty());
  for (int i = 0; i < 3; ++i) {
    ssh::PublishedKrl again = ssh_->published_krl(name_);
    EXPECT_FALSE(again.published);
    EXPECT_EQ(again.krl.krl, first.krl.krl);
    EXPECT_EQ(again.krl.version, 1);
  }
  ssh_->revoke_key_id(name_, "mallory");
  ssh::PublishedKrl after = ssh_->published_krl(name_);
  EXPECT_TRUE(after.published);
  EXPECT_EQ(after.reason, "revocations since KRL 1");
  EXPECT_EQ(after.krl.version, 2);
  EXPECT_EQ(after.krl.key_ids, 1u);
  EXPECT_EQ(ssh::parse_krl(after.krl.krl).key_ids, std::vector<std::string>{"mallory"});

  // Another process reads it back, counts included, without making one.
  auto other_store = store::open_sqlite_store(dir_ / "keyhold.db");
  service::KeyService other_keys(*ring_, *other_store);
  ssh::Authority other(other_keys, *other_store, ssh::AuthoritySettings{});
  ssh::PublishedKrl seen = other.published_krl(name_);
  EXPECT_FALSE(seen.published);
  EXPECT_EQ(seen.krl.krl, after.krl.krl);
  EXPECT_EQ(seen.krl.key_ids, 1u);
  EXPECT_EQ(seen.krl.version, 2);

  // ssh krl makes one with a new version and leaves the published one alone.
  ssh::KrlResult adhoc = ssh_->krl(name_);
  EXPECT_EQ(adhoc.version, 3);
  EXPECT_EQ(ssh_->published_krl(name_).krl.version, 2);
  ssh::PublishedKrl forced = ssh_->publish_krl(name_);
  EXPECT_EQ(forced.reason, "forced");
  EXPECT_EQ(forced.krl.version, 4);
  EXPECT_THROW(ssh_->published_krl("no-such-ssh-ca"), Error);
}

TEST_F(KrlPublicationTest, ComparingTheRevocationsCatchesAnEntryThatBypassedTheStore) {
  ssh::PublishedKrl first = ssh_->published_krl(name_);
  {
    testing::RawDb raw(dir_ / "keyhold.db");
    ASSERT_EQ(raw.exec("INSERT INTO ssh_revocations (ca_id, kind, key_id, revoked_at) VALUES (" +
                       std::to_string(store_->ssh_cas().find(name_)->id) + ", 'key_id', 'eve', '2026-01-01T00:00:00Z')"),
              SQLITE_OK);
  }
  EXPECT_FALSE(ssh_->published_krl(name_).published);
  ssh::PublishedKrl fixed = ssh_->published_krl(name_, true);
  EXPECT_TRUE(fixed.published);
  EXPECT_EQ(fixed.reason, "the revocations differ from KRL 1's");
  EXPECT_EQ(fixed.krl.key_ids, 1u);
  EXPECT_FALSE(ssh_->published_krl(name_, true).published);
}

}  // namespace
}  // namespace keyhold
