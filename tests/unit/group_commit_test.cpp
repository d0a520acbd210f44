// store::GroupCommit over a real SQLite file: work that arrives while a
// commit is running shares the next one, and a failing piece fails alone.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "keyhold/core/error.hpp"
#include "keyhold/store/group_commit.hpp"
#include "support/token_fixture.hpp"

namespace keyhold::store {
namespace {

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_directory("keyhold-group");
    store_ = open_sqlite_store(dir_ / "keyhold.db");
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  KeyRecord key(int i) {
    KeyRecord r;
    r.name = "k" + std::to_string(i);
    r.token_object_id = {static_cast<std::uint8_t>(i), 0x42};
    r.key_type = "ec-p256";
    r.purpose = "sign";
    return r;
  }
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(GroupCommitTest, WorkArrivingDuringACommitSharesTheNextOne) {
  GroupCommit group(*store_);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread leader([&] {
    group.run([&] {
      KeyRecord r = key(0);
      store_->keys().insert(r);
      released.wait();  // hold the first commit open while others queue up
    });
  });
  // The leader has taken its own piece once nothing waits and no commit happened yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(group.waiting(), 0u);
  std::vector<std::thread> followers;
  for (int i = 1; i <= 5; ++i) {
    followers.emplace_back([&, i] {
      KeyRecord r = key(i);
      group.run([&] { store_->keys().insert(r); });
    });
  }
  while (group.waiting() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  release.set_value();
  leader.join();
  for (auto& t : followers) t.join();
  EXPECT_EQ(group.pieces(), 6u);
  EXPECT_EQ(group.commits(), 2u) << "the five followers shared one commit";
  EXPECT_EQ(store_->keys().list(false).size(), 6u);
}

TEST_F(GroupCommitTest, AFailingPieceFailsOnlyItsOwnCaller) {
  KeyRecord existing = key(7);
  store_->keys().insert(existing);
  GroupCommit group(*store_);
  std::atomic<int> failures{0}, successes{0};
  std::vector<std::thread> threads;
  for (int i = 1; i <= 8; ++i) {
    threads.emplace_back([&, i] {
      KeyRecord r = key(i);  // key(7) collides with the existing row
      try {
        group.run([&] { store_->keys().insert(r); });
        ++successes;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::AlreadyExists);
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 1);
  EXPECT_EQ(successes.load(), 7);
  EXPECT_EQ(store_->keys().list(false).size(), 8u);
}

}  // namespace
}  // namespace keyhold::store
