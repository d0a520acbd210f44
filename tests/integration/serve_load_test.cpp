// keyhold serve under load (concurrency, audit accounting, signals, slow clients):
// the real binary with the DevSetup token.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/dev_setup.hpp"
#include "support/serve_fixture.hpp"

namespace keyhold::testing {
namespace {

TEST(Serve, HealthAnswersUnderTheAdminCertificate) {
  auto server = ServeProcess::start(DevSetup::get().config);
  HttpReply reply = reply_of(curl(admin_identity(), server->url() + "/v1/health"));
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(nlohmann::json::parse(reply.body)["status"], "ok");
}

}  // namespace
}  // namespace keyhold::testing
