// Secrets in webhook bodies: which fields bear them and how they are redacted.
#include "core/redact.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

using Paths = std::vector<std::vector<std::string>>;

TEST(Redact, SecretFieldNamesInBothSpellings) {
    for (const char* name : {"turnPassword", "turn_password", "streamKey", "stream_key",
                             "accessKey", "secret", "sessionToken", "credentials", "accountKey",
                             "password", "signingKey", "assumeRoleExternalId", "TOKEN"})
        EXPECT_TRUE(is_secret_field(name)) << name;
    for (const char* name : {"name", "identity", "metadata", "sid", "pageToken", "nextPageToken",
                             "passwords", "secretary", "", "turn"})
        EXPECT_FALSE(is_secret_field(name)) << name;
}

TEST(Redact, RoomTurnPasswordOfTheRealFixture) {
    auto body = nlohmann::json::parse(
        R"({"event":"participant_joined","room":{"sid":"RM_1","name":"session-456",)"
        R"("turnPassword":"qSzKooWjtOLLXdWuBVT4vNrYlioPMhEYNnn7Ql64Zic"},)"
        R"("participant":{"sid":"PA_1","identity":"user-12","name":"أحمد"}})");
    auto before = body;
    Paths paths = redact_secrets(body);
    EXPECT_EQ(paths, (Paths{{"room", "turnPassword"}}));
    EXPECT_EQ(body["room"]["turnPassword"], kRedacted);
    // nothing else changes
    body["room"]["turnPassword"] = before["room"]["turnPassword"];
    EXPECT_EQ(body, before);
}

TEST(Redact, NestedEgressCredentialsInArraysAndWholeObjects) {
    auto body = nlohmann::json::parse(
        R"({"event":"egress_ended","egressInfo":{"roomComposite":{"fileOutputs":[)"
        R"({"filepath":"a.mp4","s3":{"accessKey":"AK","secret":"SK","sessionToken":"","bucket":"b"}},)"
        R"({"gcp":{"credentials":{"type":"service_account"}}}]},)"
        R"("streamKey":null}})");
    Paths paths = redact_secrets(body);
    EXPECT_EQ(paths,
              (Paths{{"egressInfo", "roomComposite", "fileOutputs", "0", "s3", "accessKey"},
                     {"egressInfo", "roomComposite", "fileOutputs", "0", "s3", "secret"},
                     {"egressInfo", "roomComposite", "fileOutputs", "1", "gcp", "credentials"}}));
    const auto& s3 = body["egressInfo"]["roomComposite"]["fileOutputs"][0]["s3"];
    EXPECT_EQ(s3["accessKey"], kRedacted);
    EXPECT_EQ(s3["sessionToken"], "");  // empty: nothing to hide, kept as sent
    EXPECT_EQ(s3["bucket"], "b");
    EXPECT_EQ(body["egressInfo"]["roomComposite"]["fileOutputs"][1]["gcp"]["credentials"],
              kRedacted);
    EXPECT_TRUE(body["egressInfo"]["streamKey"].is_null());
}

TEST(Redact, BodyWithoutSecretsIsUntouched) {
    auto body =
        nlohmann::json::parse(R"({"event":"room_finished","room":{"name":"x"},"list":[1,[2]]})");
    auto before = body;
    EXPECT_TRUE(redact_secrets(body).empty());
    EXPECT_EQ(body, before);
}

}  // namespace
}  // namespace attendance::core
