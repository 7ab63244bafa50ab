// The server's security surface end to end, against real in-process servers on loopback:
//  - TLS on the gRPC port (certificates made with the openssl CLI at test time: a CA, a server
//    certificate for localhost / 127.0.0.1, client certificates from that CA and from another one):
//    streams over TLS match the offline reference; plaintext clients, clients that do not trust the
//    server's CA or expect another name are refused; with a client CA (mutual TLS) only clients
//    holding a certificate from that CA get in.
//  - Bearer-token auth on every gRPC service (native streaming, OIP) and the admin HTTP routes,
//    with the health probes left open, token rotation (two tokens in the file), /metrics open or
//    not, and no model work for a refused request.
//  - The admin HTTP bind address (http_host) apart from the gRPC one, and Start failing for an
//    address that is not local.
//  - The real sluice-client binary streaming over TLS with a token file.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/lib/streaming_client.h"
#include "inference/grpc_service.grpc.pb.h"
#include "server/admin/metrics.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/command_testing.h"
#include "tests/server/server_fixture.h"

#ifndef SLUICE_CLIENT_BIN
#error "SLUICE_CLIENT_BIN must name the sluice-client binary (tests/server/CMakeLists.txt)"
#endif

namespace sluice::server_testing {
namespace {

using command_testing::CommandResult;
using command_testing::Curl;
using command_testing::CurlGet;
using command_testing::HaveTool;
using command_testing::HttpRequestSpec;
using command_testing::HttpResult;
using command_testing::RunCommand;
using command_testing::SampleValue;
using model_testing::LoadReferenceModel;
using model_testing::ReferenceModel;

constexpr char kOldToken[] = "old-token-3f9a0c";
constexpr char kNewToken[] = "new-token-81d2e7";

// ---- certificates ----

// PEM files made by the openssl CLI: a CA, a server certificate from it (CN localhost, SAN
// DNS:localhost and IP:127.0.0.1), a client certificate from it, and another CA with a client
// certificate of its own.
struct Certificates {
  std::string dir;
  std::string ca, ca_key;
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca, other_ca_key;
  std::string other_client_cert, other_client_key;
};

::testing::AssertionResult Run(const std::string& command) {
  const CommandResult result = RunCommand(absl::StrCat(command, " 2>&1"));
  if (result.exit_code != 0) {
    return ::testing::AssertionFailure()
           << "`" << command << "` exited with " << result.exit_code << ":\n"
           << result.output;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult MakeCa(const std::string& dir, const std::string& name,
                                  const std::string& cn) {
  return Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -keyout '",
      dir, "/", name, ".key' -out '", dir, "/", name, ".pem' -subj '/CN=", cn,
      "' -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,"
      "cRLSign'"));
}

::testing::AssertionResult MakeLeaf(const std::string& dir, const std::string& name,
                                    const std::string& ca, const std::string& cn,
                                    const std::string& extensions) {
  const std::string ext_file = absl::StrCat(dir, "/", name, ".ext");
  command_testing::WriteFile(ext_file, extensions);
  auto made = Run(absl::StrCat(
      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '", dir,
      "/", name, ".key' -out '", dir, "/", name, ".csr' -subj '/CN=", cn, "'"));
  if (!made) return made;
  return Run(absl::StrCat("openssl x509 -req -days 2 -in '", dir, "/", name, ".csr' -CA '", dir,
                          "/", ca, ".pem' -CAkey '", dir, "/", ca,
                          ".key' -CAcreateserial -CAserial '", dir, "/", ca, ".srl' -out '", dir,
                          "/", name, ".pem' -extfile '", ext_file, "'"));
}

::testing::AssertionResult MakeCertificates(Certificates* certs) {
  if (!HaveTool("openssl", "version")) {
    return ::testing::AssertionFailure()
           << "openssl is not installed (Debian package openssl; scripts/setup.sh installs it)";
  }
  const std::string dir = command_testing::MakeTempDir("sluice-tls");
  certs->dir = dir;
  const std::string client_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
      "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:sluice-test-client\n";
  for (auto made : {MakeCa(dir, "ca", "sluice test CA"),
                    MakeLeaf(dir, "server", "ca", "localhost",
                             "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                             "keyEncipherment\nextendedKeyUsage=serverAuth\n"
                             "subjectAltName=DNS:localhost,IP:127.0.0.1\n"),
                    MakeLeaf(dir, "client", "ca", "sluice-test-client", client_ext),
                    MakeCa(dir, "other_ca", "some other CA"),
                    MakeLeaf(dir, "other_client", "other_ca", "sluice-test-client", client_ext)}) {
    if (!made) return made;
  }
  auto path = [&](const std::string& file) { return absl::StrCat(dir, "/", file); };
  certs->ca = path("ca.pem");
  certs->ca_key = path("ca.key");
  certs->server_cert = path("server.pem");
  certs->server_key = path("server.key");
  certs->client_cert = path("client.pem");
  certs->client_key = path("client.key");
  certs->other_ca = path("other_ca.pem");
  certs->other_ca_key = path("other_ca.key");
  certs->other_client_cert = path("other_client.pem");
  certs->other_client_key = path("other_client.key");
  return ::testing::AssertionSuccess();
}

// ---- servers and channels ----

server::ServerOptions BaseOptions(const std::string& repository) {
  server::ServerOptions options;
  options.model_repository = repository;
  options.host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = 0;
  options.max_sessions = 200;
  return options;
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const std::string& ca,
                                                         const std::string& cert = "",
                                                         const std::string& key = "") {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = command_testing::ReadFile(ca);
  if (!cert.empty()) {
    ssl.pem_cert_chain = command_testing::ReadFile(cert);
    ssl.pem_private_key = command_testing::ReadFile(key);
  }
  return grpc::SslCredentials(ssl);
}

std::shared_ptr<grpc::Channel> Channel(int port,
                                       const std::shared_ptr<grpc::ChannelCredentials>& creds,
                                       const std::string& host = "127.0.0.1",
                                       const std::string& server_name = "") {
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(absl::StrCat(host, ":", port), creds, args);
}

void SetDeadline(grpc::ClientContext* context, int seconds = 10) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

void SetToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

grpc::Status CallListModels(v1::Streaming::Stub& stub, const std::string& authorization = "",
                            v1::ListModelsResponse* out = nullptr) {
  grpc::ClientContext context;
  SetDeadline(&context);
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::ListModelsResponse response;
  const grpc::Status status = stub.ListModels(&context, {}, &response);
  if (out != nullptr) *out = response;
  return status;
}

grpc::Status CallModelInfo(v1::Streaming::Stub& stub, const std::string& name,
                           const std::string& authorization = "") {
  grpc::ClientContext context;
  SetDeadline(&context);
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::ModelInfoRequest request;
  request.set_name(name);
  v1::ModelInfoResponse response;
  return stub.ModelInfo(&context, request, &response);
}

// Opens a stream (with the given "authorization" value, none when empty), sends Open and a few
// frames, half-closes, reads everything and returns how the stream ended and whether Opened came.
grpc::Status OpenStream(v1::Streaming::Stub& stub, const std::string& authorization,
                        bool* opened = nullptr) {
  grpc::ClientContext context;
  SetDeadline(&context);
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  auto stream = stub.Stream(&context);
  stream->Write(OpenRequest("lstm2"));
  stream->Write(
      FramesRequest({std::vector<float>(10, 0.5f), std::vector<float>(10, -0.5f)}, {1, 10}));
  v1::StreamRequest close;
  close.mutable_close();
  stream->Write(close);
  stream->WritesDone();
  v1::StreamResponse response;
  bool got_opened = false;
  while (stream->Read(&response)) got_opened = got_opened || response.has_opened();
  if (opened != nullptr) *opened = got_opened;
  return stream->Finish();
}

#define EXPECT_STATUS(status, code, prefix)                                                   \
  do {                                                                                        \
    const grpc::Status& s_ = (status);                                                        \
    EXPECT_EQ(s_.error_code(), (code)) << s_.error_message();                                 \
    EXPECT_TRUE(absl::StartsWith(s_.error_message(), (prefix)))                               \
        << "message '" << s_.error_message() << "' does not start with '" << (prefix) << "'"; \
  } while (0)

// Streams row `row` of `model` (served as `served`) through a session of the client library in
// chunks of 3 frames, and checks that the outputs come in seq order and equal the offline ones.
void StreamRowWithClient(client::StreamingClient& client, const std::string& served,
                         const ReferenceModel& model, int64_t row) {
  auto session = client.NewSession();
  absl::StatusOr<v1::Opened> opened = session->Open(served, "security-test");
  ASSERT_TRUE(opened.ok()) << opened.status();
  const streaming::StreamSpec& in = model.program->input;
  const streaming::StreamSpec& out = model.program->outputs[0];
  for (int64_t t = 0; t < model.frames(); t += 3) {
    const int count = static_cast<int>(std::min<int64_t>(3, model.frames() - t));
    std::vector<float> frames;
    for (int i = 0; i < count; ++i) {
      const auto frame = model_testing::ExtractFrame(model.input, in, t + i, row);
      frames.insert(frames.end(), frame.begin(), frame.end());
    }
    ASSERT_TRUE(session->SendFrames(frames.data(), count).ok());
  }
  ASSERT_TRUE(session->Close().ok());
  int64_t next = model.program->warmup_frames;
  while (true) {
    auto response = session->Next(absl::Seconds(30));
    ASSERT_TRUE(response.ok()) << response.status();
    if (!response->has_value()) break;
    const v1::StreamResponse& r = **response;
    ASSERT_TRUE(r.has_outputs()) << r.DebugString();
    const float* got = reinterpret_cast<const float*>(r.outputs().tensors(0).data().data());
    for (uint32_t i = 0; i < r.outputs().count(); ++i) {
      ASSERT_EQ(r.outputs().first_seq() + i, static_cast<uint64_t>(next)) << "out of order";
      const auto want = model_testing::ExtractFrame(model.expected, out,
                                                    next - model.program->warmup_frames, row);
      for (size_t e = 0; e < want.size(); ++e) {
        ASSERT_NEAR(got[i * out.frame_size + e], want[e], 1e-4f + 1e-4f * std::fabs(want[e]))
            << served << " row " << row << " seq " << next;
      }
      ++next;
    }
  }
  EXPECT_EQ(next, model.frames()) << "missing outputs";
  EXPECT_TRUE(session->Finish().ok());
}

// An OIP ModelInfer request for frames [0, count) of row `row` of lstm2 ([T,B,C] = [k,1,10]).
inference::ModelInferRequest Lstm2InferRequest(const ReferenceModel& model, int64_t row,
                                               int64_t count) {
  inference::ModelInferRequest request;
  request.set_model_name("lstm2");
  auto* input = request.add_inputs();
  input->set_name(model.program->input.name);
  input->set_datatype("FP32");
  input->add_shape(count);
  input->add_shape(1);
  input->add_shape(10);
  std::string* raw = request.add_raw_input_contents();
  for (int64_t t = 0; t < count; ++t) {
    const auto frame = model_testing::ExtractFrame(model.input, model.program->input, t, row);
    raw->append(reinterpret_cast<const char*>(frame.data()), frame.size() * sizeof(float));
  }
  return request;
}

std::string RepositoryWithLstm2() { return MakeRepository({{"lstm2", "lstm2", ""}}); }

// ============================== TLS ==============================

class SecurityTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new Certificates();
    ASSERT_TRUE(MakeCertificates(certs_));
    repository_ = new std::string(RepositoryWithLstm2());
    server::ServerOptions options = BaseOptions(*repository_);
    options.tls_cert_file = certs_->server_cert;
    options.tls_key_file = certs_->server_key;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (repository_ != nullptr) std::filesystem::remove_all(*repository_);
    if (certs_ != nullptr) std::filesystem::remove_all(certs_->dir);
    delete repository_;
    delete certs_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static Certificates* certs_;
  static std::string* repository_;
  static server::SluiceServer* server_;
};

Certificates* SecurityTlsTest::certs_ = nullptr;
std::string* SecurityTlsTest::repository_ = nullptr;
server::SluiceServer* SecurityTlsTest::server_ = nullptr;

TEST_F(SecurityTlsTest, StreamsOverTlsMatchTheOfflineReference) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  // Raw stubs on the IP address (the certificate's IP SAN) and on "localhost" (its DNS SAN),
  // two rows each, concurrently.
  auto by_ip = v1::Streaming::NewStub(Channel(server_->grpc_port(), TlsCredentials(certs_->ca)));
  auto by_name = v1::Streaming::NewStub(
      Channel(server_->grpc_port(), TlsCredentials(certs_->ca), "127.0.0.1", "localhost"));
  std::vector<std::thread> threads;
  for (int64_t row = 0; row < 4; ++row) {
    threads.emplace_back([&, row] {
      StreamRowAndCheck(row % 2 == 0 ? *by_ip : *by_name, "lstm2", *model, row,
                        static_cast<uint32_t>(row + 11));
    });
  }
  for (auto& thread : threads) thread.join();

  // The client library with ClientOptions::tls_ca_file and tls_server_name.
  client::ClientOptions options;
  options.tls_ca_file = certs_->ca;
  options.tls_server_name = "localhost";
  auto client =
      client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()), options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto models = (*client)->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->models_size(), 1);
  EXPECT_TRUE(models->models(0).ready());
  auto health = (*client)->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, client::ServingStatus::kServing);
  StreamRowWithClient(**client, "lstm2", *model, 5);
}

TEST_F(SecurityTlsTest, PlaintextClientIsRefused) {
  auto stub =
      v1::Streaming::NewStub(Channel(server_->grpc_port(), grpc::InsecureChannelCredentials()));
  const grpc::Status list = CallListModels(*stub);
  EXPECT_EQ(list.error_code(), grpc::StatusCode::UNAVAILABLE) << list.error_message();
  bool opened = true;
  const grpc::Status stream = OpenStream(*stub, "", &opened);
  EXPECT_EQ(stream.error_code(), grpc::StatusCode::UNAVAILABLE) << stream.error_message();
  EXPECT_FALSE(opened);
  // The client library without a CA is plaintext too.
  auto client = client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()));
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->ListModels().status().code(), absl::StatusCode::kUnavailable);
  // And a refused client did not open a session.
  EXPECT_EQ(server_->metrics().ForModel("lstm2")->sessions_active.load(), 0);
}

TEST_F(SecurityTlsTest, ClientThatDoesNotTrustTheServersCaIsRefused) {
  auto stub =
      v1::Streaming::NewStub(Channel(server_->grpc_port(), TlsCredentials(certs_->other_ca)));
  EXPECT_EQ(CallListModels(*stub).error_code(), grpc::StatusCode::UNAVAILABLE);
  bool opened = true;
  EXPECT_EQ(OpenStream(*stub, "", &opened).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(opened);
}

TEST_F(SecurityTlsTest, ClientExpectingAnotherServerNameIsRefused) {
  auto stub = v1::Streaming::NewStub(Channel(server_->grpc_port(), TlsCredentials(certs_->ca),
                                             "127.0.0.1", "not-this-server.example"));
  EXPECT_EQ(CallListModels(*stub).error_code(), grpc::StatusCode::UNAVAILABLE);
  client::ClientOptions options;
  options.tls_ca_file = certs_->ca;
  options.tls_server_name = "not-this-server.example";
  auto client =
      client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()), options);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->ListModels().status().code(), absl::StatusCode::kUnavailable);
}

// ============================== mutual TLS ==============================

class SecurityMutualTlsTest : public SecurityTlsTest {
 protected:
  static void SetUpTestSuite() {
    certs_ = new Certificates();
    ASSERT_TRUE(MakeCertificates(certs_));
    repository_ = new std::string(RepositoryWithLstm2());
    server::ServerOptions options = BaseOptions(*repository_);
    options.tls_cert_file = certs_->server_cert;
    options.tls_key_file = certs_->server_key;
    options.tls_client_ca_file = certs_->ca;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
};

TEST_F(SecurityMutualTlsTest, ClientWithoutACertificateIsRefused) {
  const int64_t sessions_before = server_->metrics().ForModel("lstm2")->sessions_total.load();
  auto stub = v1::Streaming::NewStub(Channel(server_->grpc_port(), TlsCredentials(certs_->ca)));
  EXPECT_EQ(CallListModels(*stub).error_code(), grpc::StatusCode::UNAVAILABLE);
  bool opened = true;
  EXPECT_EQ(OpenStream(*stub, "", &opened).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(opened);
  client::ClientOptions options;
  options.tls_ca_file = certs_->ca;
  auto client =
      client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()), options);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->ListModels().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->metrics().ForModel("lstm2")->sessions_total.load(), sessions_before);
}

TEST_F(SecurityMutualTlsTest, ClientCertificateFromTheCaIsAccepted) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  auto stub = v1::Streaming::NewStub(Channel(
      server_->grpc_port(), TlsCredentials(certs_->ca, certs_->client_cert, certs_->client_key)));
  ASSERT_TRUE(CallListModels(*stub).ok());
  StreamRowAndCheck(*stub, "lstm2", *model, 1, 5);

  client::ClientOptions options;
  options.tls_ca_file = certs_->ca;
  options.tls_cert_file = certs_->client_cert;
  options.tls_key_file = certs_->client_key;
  auto client =
      client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()), options);
  ASSERT_TRUE(client.ok()) << client.status();
  StreamRowWithClient(**client, "lstm2", *model, 6);
}

TEST_F(SecurityMutualTlsTest, ClientCertificateFromAnotherCaIsRefused) {
  const int64_t sessions_before = server_->metrics().ForModel("lstm2")->sessions_total.load();
  auto stub = v1::Streaming::NewStub(
      Channel(server_->grpc_port(),
              TlsCredentials(certs_->ca, certs_->other_client_cert, certs_->other_client_key)));
  EXPECT_EQ(CallListModels(*stub).error_code(), grpc::StatusCode::UNAVAILABLE);
  bool opened = true;
  EXPECT_EQ(OpenStream(*stub, "", &opened).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(opened);
  EXPECT_EQ(server_->metrics().ForModel("lstm2")->sessions_total.load(), sessions_before);
}

// ============================== bearer tokens ==============================

// Plaintext gRPC with auth on; two tokens in the file (rotation), plus a comment and blank lines.
class SecurityAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(command_testing::MakeTempDir("sluice-auth"));
    token_file_ = new std::string(absl::StrCat(*dir_, "/tokens"));
    command_testing::WriteFile(*token_file_, absl::StrCat("# rotated 2024-05: old then new\n\n",
                                                          kOldToken, "\n   ", kNewToken, "  \n"));
    repository_ = new std::string(RepositoryWithLstm2());
    server::ServerOptions options = BaseOptions(*repository_);
    options.auth_token_file = *token_file_;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (repository_ != nullptr) std::filesystem::remove_all(*repository_);
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete repository_;
    delete dir_;
    delete token_file_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(HaveTool("curl", "--version"))
        << "curl is not installed (Debian package curl; scripts/setup.sh installs it)";
  }

  std::unique_ptr<v1::Streaming::Stub> NewStub() {
    return v1::Streaming::NewStub(
        Channel(server_->grpc_port(), grpc::InsecureChannelCredentials()));
  }
  std::unique_ptr<inference::GRPCInferenceService::Stub> NewOipStub() {
    return inference::GRPCInferenceService::NewStub(
        Channel(server_->grpc_port(), grpc::InsecureChannelCredentials()));
  }
  std::unique_ptr<client::StreamingClient> NewClient(const std::string& token) {
    client::ClientOptions options;
    options.auth_token = token;
    auto client =
        client::StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static std::string* dir_;
  static std::string* token_file_;
  static std::string* repository_;
  static server::SluiceServer* server_;
};

std::string* SecurityAuthTest::dir_ = nullptr;
std::string* SecurityAuthTest::token_file_ = nullptr;
std::string* SecurityAuthTest::repository_ = nullptr;
server::SluiceServer* SecurityAuthTest::server_ = nullptr;

constexpr char kMissing[] = "missing 'authorization: Bearer <token>' metadata";
constexpr char kInvalid[] = "invalid bearer token";
constexpr char kMalformed[] = "the authorization must be 'Bearer <token>'";

TEST_F(SecurityAuthTest, StreamWithoutAWrongOrAMalformedTokenIsUnauthenticated) {
  auto stub = NewStub();
  bool opened = true;
  EXPECT_STATUS(OpenStream(*stub, "", &opened), grpc::StatusCode::UNAUTHENTICATED, kMissing);
  EXPECT_FALSE(opened);
  EXPECT_STATUS(OpenStream(*stub, "Bearer not-a-token", &opened), grpc::StatusCode::UNAUTHENTICATED,
                kInvalid);
  EXPECT_FALSE(opened);
  // A token that is a prefix or an extension of a real one is no token.
  EXPECT_STATUS(OpenStream(*stub, absl::StrCat("Bearer ", kOldToken, "x"), &opened),
                grpc::StatusCode::UNAUTHENTICATED, kInvalid);
  EXPECT_STATUS(OpenStream(*stub, "Bearer old-token", &opened), grpc::StatusCode::UNAUTHENTICATED,
                kInvalid);
  EXPECT_STATUS(OpenStream(*stub, absl::StrCat("Basic ", kOldToken), &opened),
                grpc::StatusCode::UNAUTHENTICATED, kMalformed);
  EXPECT_STATUS(OpenStream(*stub, "Bearer ", &opened), grpc::StatusCode::UNAUTHENTICATED,
                kMalformed);
  EXPECT_STATUS(OpenStream(*stub, kOldToken, &opened), grpc::StatusCode::UNAUTHENTICATED,
                kMalformed);
  // The comment line of the token file is not a token.
  EXPECT_STATUS(OpenStream(*stub, "Bearer # rotated 2024-05: old then new", &opened),
                grpc::StatusCode::UNAUTHENTICATED, kInvalid);
  EXPECT_FALSE(opened);

  // Through the client library: Open reports the stream's status.
  auto client = NewClient("wrong-token");
  ASSERT_NE(client, nullptr);
  auto session = client->NewSession();
  auto open = session->Open("lstm2");
  EXPECT_EQ(open.status().code(), absl::StatusCode::kUnauthenticated) << open.status();
  EXPECT_TRUE(absl::StartsWith(open.status().message(), kInvalid)) << open.status();
}

TEST_F(SecurityAuthTest, ListModelsAndModelInfoNeedAToken) {
  auto stub = NewStub();
  EXPECT_STATUS(CallListModels(*stub), grpc::StatusCode::UNAUTHENTICATED, kMissing);
  EXPECT_STATUS(CallListModels(*stub, "Bearer nope"), grpc::StatusCode::UNAUTHENTICATED, kInvalid);
  EXPECT_STATUS(CallModelInfo(*stub, "lstm2"), grpc::StatusCode::UNAUTHENTICATED, kMissing);
  EXPECT_STATUS(CallModelInfo(*stub, "lstm2", "Bearer nope"), grpc::StatusCode::UNAUTHENTICATED,
                kInvalid);
  // Even for a model that does not exist: auth comes before any lookup.
  EXPECT_STATUS(CallModelInfo(*stub, "no_such_model"), grpc::StatusCode::UNAUTHENTICATED, kMissing);
  for (const char* token : {kOldToken, kNewToken}) {
    v1::ListModelsResponse models;
    const grpc::Status list = CallListModels(*stub, absl::StrCat("Bearer ", token), &models);
    ASSERT_TRUE(list.ok()) << token << ": " << list.error_message();
    ASSERT_EQ(models.models_size(), 1);
    EXPECT_EQ(models.models(0).name(), "lstm2");
    EXPECT_TRUE(CallModelInfo(*stub, "lstm2", absl::StrCat("Bearer ", token)).ok()) << token;
    // The scheme is case-insensitive, as HTTP's.
    EXPECT_TRUE(CallListModels(*stub, absl::StrCat("bearer ", token)).ok()) << token;
  }
  auto client = NewClient("");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->ListModels().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client->ModelInfo("lstm2").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(SecurityAuthTest, EitherTokenOfTheFileStreamsCorrectly) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  int64_t row = 0;
  for (const char* token : {kOldToken, kNewToken}) {
    auto client = NewClient(token);
    ASSERT_NE(client, nullptr);
    auto models = client->ListModels();
    ASSERT_TRUE(models.ok()) << models.status();
    StreamRowWithClient(*client, "lstm2", *model, row++);
  }
}

TEST_F(SecurityAuthTest, HealthServiceStaysOpenWithoutAToken) {
  auto client = NewClient("");
  ASSERT_NE(client, nullptr);
  auto health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, client::ServingStatus::kServing);
  auto model_health = client->Health("lstm2");
  ASSERT_TRUE(model_health.ok()) << model_health.status();
  EXPECT_EQ(*model_health, client::ServingStatus::kServing);
}

TEST_F(SecurityAuthTest, OipLivenessIsOpenAndEverythingElseNeedsAToken) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  auto oip = NewOipStub();
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    inference::ServerLiveResponse live;
    const grpc::Status status = oip->ServerLive(&context, {}, &live);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(live.live());
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    inference::ServerReadyResponse ready;
    const grpc::Status status = oip->ServerReady(&context, {}, &ready);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(ready.ready());
  }
  for (const std::string& token : {std::string(), std::string("wrong")}) {
    SCOPED_TRACE(token.empty() ? "no token" : "wrong token");
    const char* message = token.empty() ? kMissing : kInvalid;
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      SetToken(&context, token);
      inference::ModelMetadataRequest request;
      request.set_name("lstm2");
      inference::ModelMetadataResponse response;
      EXPECT_STATUS(oip->ModelMetadata(&context, request, &response),
                    grpc::StatusCode::UNAUTHENTICATED, message);
    }
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      SetToken(&context, token);
      inference::ModelReadyRequest request;
      request.set_name("lstm2");
      inference::ModelReadyResponse response;
      EXPECT_STATUS(oip->ModelReady(&context, request, &response),
                    grpc::StatusCode::UNAUTHENTICATED, message);
    }
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      SetToken(&context, token);
      inference::ServerMetadataResponse response;
      EXPECT_STATUS(oip->ServerMetadata(&context, {}, &response), grpc::StatusCode::UNAUTHENTICATED,
                    message);
    }
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      SetToken(&context, token);
      inference::ModelInferResponse response;
      EXPECT_STATUS(oip->ModelInfer(&context, Lstm2InferRequest(*model, 0, 4), &response),
                    grpc::StatusCode::UNAUTHENTICATED, message);
    }
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      SetToken(&context, token);
      auto stream = oip->ModelStreamInfer(&context);
      stream->Write(Lstm2InferRequest(*model, 0, 4));
      stream->WritesDone();
      inference::ModelStreamInferResponse response;
      int responses = 0;
      while (stream->Read(&response)) ++responses;
      EXPECT_EQ(responses, 0);
      EXPECT_STATUS(stream->Finish(), grpc::StatusCode::UNAUTHENTICATED, message);
    }
  }
  // With a token, ModelInfer runs the sequence and matches the reference.
  grpc::ClientContext context;
  SetDeadline(&context);
  SetToken(&context, kNewToken);
  inference::ModelInferResponse response;
  const grpc::Status status = oip->ModelInfer(&context, Lstm2InferRequest(*model, 2, 6), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  const float* got = reinterpret_cast<const float*>(response.raw_output_contents(0).data());
  const streaming::StreamSpec& out = model->program->outputs[0];
  ASSERT_EQ(response.raw_output_contents(0).size(), 6 * out.frame_size * sizeof(float));
  for (int64_t t = 0; t < 6; ++t) {
    const auto want = model_testing::ExtractFrame(model->expected, out, t, 2);
    for (size_t e = 0; e < want.size(); ++e) {
      // [T,1,C] offline layout: frame t is contiguous.
      ASSERT_NEAR(got[t * out.frame_size + e], want[e], 1e-4f + 1e-4f * std::fabs(want[e]));
    }
  }
}

TEST_F(SecurityAuthTest, AdminProbesAreOpenModelRoutesNeedAToken) {
  const int port = server_->http_port();
  for (const char* path : {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}) {
    const HttpResult r = CurlGet(port, path);
    EXPECT_EQ(r.code, 200) << path << ": " << r.body;
  }
  // /metrics is open by default (for scrapers).
  const HttpResult metrics = CurlGet(port, "/metrics");
  EXPECT_EQ(metrics.code, 200) << metrics.body;
  EXPECT_NE(metrics.body.find("sluice_sessions_total"), std::string::npos);

  for (const char* path : {"/v2/models/lstm2", "/v2/models/lstm2/ready", "/v2",
                           "/v2/models/lstm2/config", "/v2/models/lstm2/stats"}) {
    SCOPED_TRACE(path);
    const HttpResult none = CurlGet(port, path);
    EXPECT_EQ(none.code, 401) << none.body;
    EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer");
    EXPECT_EQ(none.body, absl::StrCat("{\"error\":\"", kMissing, "\"}"));
    const HttpResult wrong = CurlGet(port, path, "wrong");
    EXPECT_EQ(wrong.code, 401) << wrong.body;
    EXPECT_EQ(wrong.body, absl::StrCat("{\"error\":\"", kInvalid, "\"}"));
    for (const char* token : {kOldToken, kNewToken}) {
      const HttpResult ok = CurlGet(port, path, token);
      EXPECT_EQ(ok.code, 200) << token << ": " << ok.body;
    }
  }
  const HttpResult model = CurlGet(port, "/v2/models/lstm2", kNewToken);
  EXPECT_NE(model.body.find("\"name\":\"lstm2\""), std::string::npos) << model.body;

  // JSON inference: 401 without a token, the outputs with one.
  HttpRequestSpec infer;
  infer.method = "POST";
  infer.url = absl::StrCat("http://127.0.0.1:", port, "/v2/models/lstm2/infer");
  infer.body =
      R"({"inputs":[{"name":"x","shape":[1,1,10],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0]}]})";
  const HttpResult refused = Curl(infer);
  EXPECT_EQ(refused.code, 401) << refused.body;
  infer.headers.push_back(absl::StrCat("Authorization: Bearer ", kOldToken));
  const HttpResult answered = Curl(infer);
  EXPECT_EQ(answered.code, 200) << answered.body;
  EXPECT_NE(answered.body.find("\"outputs\""), std::string::npos) << answered.body;
}

TEST_F(SecurityAuthTest, UnauthenticatedRequestsDoNoModelWork) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  server::ModelMetrics* m = server_->metrics().ForModel("lstm2");
  const int64_t sessions_before = m->sessions_total.load();
  const int64_t frames_before = m->frames_in.load();
  const HttpResult metrics_before = CurlGet(server_->http_port(), "/metrics");
  ASSERT_EQ(metrics_before.code, 200);
  const double scraped_before =
      SampleValue(metrics_before.body, "sluice_sessions_total{model=\"lstm2\"}");
  ASSERT_GE(scraped_before, 0) << metrics_before.body;

  auto stub = NewStub();
  auto oip = NewOipStub();
  for (int i = 0; i < 5; ++i) {
    for (const std::string& authorization : {std::string(), std::string("Bearer wrong")}) {
      bool opened = true;
      EXPECT_EQ(OpenStream(*stub, authorization, &opened).error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_FALSE(opened);
      grpc::ClientContext context;
      SetDeadline(&context);
      if (!authorization.empty()) context.AddMetadata("authorization", authorization);
      inference::ModelInferResponse response;
      EXPECT_EQ(oip->ModelInfer(&context, Lstm2InferRequest(*model, 0, 3), &response).error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
    }
    HttpRequestSpec infer;
    infer.method = "POST";
    infer.url = absl::StrCat("http://127.0.0.1:", server_->http_port(), "/v2/models/lstm2/infer");
    infer.body = R"({"parameters":{"sequence_id":5,"sequence_start":true},"inputs":[{"name":"x",)"
                 R"("shape":[1,1,10],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0]}]})";
    EXPECT_EQ(Curl(infer).code, 401);
  }
  EXPECT_EQ(m->sessions_total.load(), sessions_before);
  EXPECT_EQ(m->frames_in.load(), frames_before);
  EXPECT_EQ(m->sessions_active.load(), 0);
  const HttpResult metrics_after = CurlGet(server_->http_port(), "/metrics");
  EXPECT_EQ(SampleValue(metrics_after.body, "sluice_sessions_total{model=\"lstm2\"}"),
            scraped_before);

  // The counter is live: one authenticated session moves it by exactly one.
  bool opened = false;
  const grpc::Status ok = OpenStream(*stub, absl::StrCat("Bearer ", kOldToken), &opened);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_TRUE(opened);
  EXPECT_EQ(m->sessions_total.load(), sessions_before + 1);
  EXPECT_EQ(m->frames_in.load(), frames_before + 2);
}

// /metrics behind the token.
class SecurityMetricsAuthTest : public SecurityAuthTest {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(command_testing::MakeTempDir("sluice-auth"));
    token_file_ = new std::string(absl::StrCat(*dir_, "/tokens"));
    command_testing::WriteFile(*token_file_, absl::StrCat(kOldToken, "\n", kNewToken, "\n"));
    repository_ = new std::string(RepositoryWithLstm2());
    server::ServerOptions options = BaseOptions(*repository_);
    options.auth_token_file = *token_file_;
    options.metrics_require_auth = true;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
};

TEST_F(SecurityMetricsAuthTest, MetricsNeedTheTokenAndProbesStayOpen) {
  const int port = server_->http_port();
  const HttpResult none = CurlGet(port, "/metrics");
  EXPECT_EQ(none.code, 401) << none.body;
  EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(none.body.find("sluice_"), std::string::npos) << "metrics leaked: " << none.body;
  EXPECT_EQ(CurlGet(port, "/metrics", "wrong").code, 401);
  for (const char* token : {kOldToken, kNewToken}) {
    const HttpResult ok = CurlGet(port, "/metrics", token);
    EXPECT_EQ(ok.code, 200) << ok.body;
    EXPECT_NE(ok.body.find("sluice_sessions_total"), std::string::npos);
  }
  for (const char* path : {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}) {
    EXPECT_EQ(CurlGet(port, path).code, 200) << path;
  }
}

// ============================== configuration errors ==============================

class SecurityConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MakeCertificates(&certs_));
    repository_ = RepositoryWithLstm2();
  }
  void TearDown() override {
    std::filesystem::remove_all(repository_);
    std::filesystem::remove_all(certs_.dir);
  }

  absl::Status StartStatus(const server::ServerOptions& options) {
    auto server = server::SluiceServer::Start(options);
    return server.status();
  }

  Certificates certs_;
  std::string repository_;
};

#define EXPECT_ABSL_STATUS(status, want_code, want_prefix)                                   \
  do {                                                                                       \
    const absl::Status s_ = (status);                                                        \
    EXPECT_EQ(s_.code(), (want_code)) << s_;                                                 \
    EXPECT_TRUE(absl::StartsWith(s_.message(), (want_prefix)))                               \
        << "message '" << s_.message() << "' does not start with '" << (want_prefix) << "'"; \
  } while (0)

TEST_F(SecurityConfigTest, BadTlsAndTokenSettingsFailStart) {
  server::ServerOptions options = BaseOptions(repository_);
  options.tls_cert_file = certs_.server_cert;
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kInvalidArgument,
                     "TLS needs both --tls_cert and --tls_key");

  options = BaseOptions(repository_);
  options.tls_client_ca_file = certs_.ca;
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kInvalidArgument,
                     "--tls_client_ca needs --tls_cert and --tls_key");

  options = BaseOptions(repository_);
  options.tls_cert_file = absl::StrCat(certs_.dir, "/no-such.pem");
  options.tls_key_file = certs_.server_key;
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kNotFound,
                     "cannot read the TLS certificate ");

  options = BaseOptions(repository_);
  options.tls_cert_file = absl::StrCat(certs_.dir, "/server.ext");  // Not PEM.
  options.tls_key_file = certs_.server_key;
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kInvalidArgument,
                     "the TLS certificate ");

  options = BaseOptions(repository_);
  options.auth_token_file = absl::StrCat(certs_.dir, "/no-such-tokens");
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kNotFound,
                     "cannot read the auth token file ");

  const std::string empty_tokens = absl::StrCat(certs_.dir, "/empty-tokens");
  command_testing::WriteFile(empty_tokens, "# nothing here\n\n   \n");
  options = BaseOptions(repository_);
  options.auth_token_file = empty_tokens;
  EXPECT_ABSL_STATUS(StartStatus(options), absl::StatusCode::kInvalidArgument,
                     absl::StrCat("the auth token file ", empty_tokens, " has no token"));
}

// A key that does not belong to the certificate cannot serve TLS: Start must fail rather than
// serve a port on which every handshake fails.
TEST_F(SecurityConfigTest, KeyThatDoesNotMatchTheCertificateFailsStart) {
  server::ServerOptions options = BaseOptions(repository_);
  options.tls_cert_file = certs_.server_cert;
  options.tls_key_file = certs_.client_key;
  auto server = server::SluiceServer::Start(options);
  EXPECT_FALSE(server.ok()) << "Start accepted a key that does not match the certificate";
}

// ============================== bind addresses ==============================

class SecurityBindAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(HaveTool("curl", "--version"))
        << "curl is not installed (Debian package curl; scripts/setup.sh installs it)";
    repository_ = RepositoryWithLstm2();
  }
  void TearDown() override { std::filesystem::remove_all(repository_); }

  static grpc::Status ListModelsAt(const std::string& host, int port) {
    auto stub = v1::Streaming::NewStub(Channel(port, grpc::InsecureChannelCredentials(), host));
    grpc::ClientContext context;
    SetDeadline(&context, 5);
    v1::ListModelsResponse response;
    return stub->ListModels(&context, {}, &response);
  }

  std::string repository_;
};

TEST_F(SecurityBindAddressTest, GrpcAndAdminOnLoopbackBothServe) {
  server::ServerOptions options = BaseOptions(repository_);
  options.host = "127.0.0.1";
  options.http_host = "127.0.0.1";
  auto server = server::SluiceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->grpc_port(), 0);
  ASSERT_GT((*server)->http_port(), 0);
  EXPECT_NE((*server)->grpc_port(), (*server)->http_port());
  const grpc::Status list = ListModelsAt("127.0.0.1", (*server)->grpc_port());
  EXPECT_TRUE(list.ok()) << list.error_message();
  const HttpResult health = CurlGet((*server)->http_port(), "/healthz");
  EXPECT_EQ(health.code, 200);
  EXPECT_EQ(health.body, "ok");
}

// 127.0.0.2 is a loopback address too, but a socket bound to 127.0.0.1 does not take connections
// to it: that tells which port honours which bind address.
TEST_F(SecurityBindAddressTest, AdminBindsItsOwnAddressApartFromGrpc) {
  {
    server::ServerOptions options = BaseOptions(repository_);
    options.host = "0.0.0.0";
    options.http_host = "127.0.0.1";
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_TRUE(ListModelsAt("127.0.0.2", (*server)->grpc_port()).ok());
    EXPECT_EQ(CurlGet((*server)->http_port(), "/healthz").code, 200);
    const HttpResult elsewhere = CurlGet((*server)->http_port(), "/healthz", "", "127.0.0.2");
    EXPECT_EQ(elsewhere.code, 0) << "the admin port answered on 127.0.0.2: " << elsewhere.body;
    EXPECT_EQ(elsewhere.curl_exit, 7) << "curl: expected 'could not connect'";
  }
  {
    server::ServerOptions options = BaseOptions(repository_);
    options.host = "127.0.0.1";
    options.http_host = "0.0.0.0";
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ(CurlGet((*server)->http_port(), "/healthz", "", "127.0.0.2").code, 200);
    EXPECT_TRUE(ListModelsAt("127.0.0.1", (*server)->grpc_port()).ok());
    EXPECT_EQ(ListModelsAt("127.0.0.2", (*server)->grpc_port()).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  {
    // Empty http_host: the admin port follows `host`.
    server::ServerOptions options = BaseOptions(repository_);
    options.host = "127.0.0.1";
    options.http_host = "";
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ(CurlGet((*server)->http_port(), "/healthz").code, 200);
    EXPECT_EQ(CurlGet((*server)->http_port(), "/healthz", "", "127.0.0.2").curl_exit, 7);
  }
}

TEST_F(SecurityBindAddressTest, AddressThatIsNotLocalFailsStartWithUnavailable) {
  // 203.0.113.7 is TEST-NET-3 (RFC 5737): never an address of this machine.
  server::ServerOptions options = BaseOptions(repository_);
  options.http_host = "203.0.113.7";
  auto server = server::SluiceServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_ABSL_STATUS(server.status(), absl::StatusCode::kUnavailable,
                     "admin HTTP server cannot listen on 203.0.113.7:0");

  options = BaseOptions(repository_);
  options.host = "203.0.113.7";
  options.http_port = -1;
  server = server::SluiceServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_ABSL_STATUS(server.status(), absl::StatusCode::kUnavailable,
                     "cannot listen for gRPC on 203.0.113.7:0");

  // A failed Start leaves nothing bound: a good server starts right after.
  auto good = server::SluiceServer::Start(BaseOptions(repository_));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(ListModelsAt("127.0.0.1", (*good)->grpc_port()).ok());
}

// ============================== the sluice-client binary ==============================

class SecurityClientBinaryTest : public SecurityTlsTest {
 protected:
  static void SetUpTestSuite() {
    certs_ = new Certificates();
    ASSERT_TRUE(MakeCertificates(certs_));
    repository_ = new std::string(RepositoryWithLstm2());
    token_file_ = new std::string(absl::StrCat(certs_->dir, "/server-tokens"));
    command_testing::WriteFile(*token_file_, absl::StrCat(kOldToken, "\n", kNewToken, "\n"));
    server::ServerOptions options = BaseOptions(*repository_);
    options.tls_cert_file = certs_->server_cert;
    options.tls_key_file = certs_->server_key;
    options.auth_token_file = *token_file_;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    SecurityTlsTest::TearDownTestSuite();
    delete token_file_;
  }
  static std::string* token_file_;
};

std::string* SecurityClientBinaryTest::token_file_ = nullptr;

TEST_F(SecurityClientBinaryTest, SluiceClientStreamsOverTlsWithATokenFile) {
  ASSERT_TRUE(std::filesystem::exists(SLUICE_CLIENT_BIN)) << SLUICE_CLIENT_BIN;
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string client_token = absl::StrCat(certs_->dir, "/client-token");
  command_testing::WriteFile(client_token, absl::StrCat(kNewToken, "\n"));
  const std::string output = absl::StrCat(certs_->dir, "/y.npy");
  const std::string base =
      absl::StrCat("'", SLUICE_CLIENT_BIN, "' stream --server 127.0.0.1:", server_->grpc_port(),
                   " --model lstm2 --input '", model->row.DataPath("input.npy"), "' --output '",
                   output, "' --chunk 4 --tls_ca '", certs_->ca, "'");

  const CommandResult run = RunCommand(absl::StrCat(base, " --auth_token_file '", client_token,
                                                    "' --tls_server_name localhost 2>&1"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto y = ReadNpy(output);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_TRUE(model_testing::AllClose(*y, model->expected));

  // Without the token the server refuses it, and the CLI says why.
  std::filesystem::remove(output);
  const CommandResult refused = RunCommand(absl::StrCat(base, " 2>&1"));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("UNAUTHENTICATED"), std::string::npos) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(output));
  // Without the CA it speaks plaintext to a TLS port: unavailable.
  const CommandResult plaintext = RunCommand(
      absl::StrCat("'", SLUICE_CLIENT_BIN, "' stream --server 127.0.0.1:", server_->grpc_port(),
                   " --model lstm2 --input '", model->row.DataPath("input.npy"), "' --output '",
                   output, "' --auth_token_file '", client_token, "' --rpc_timeout 5s 2>&1"));
  EXPECT_EQ(plaintext.exit_code, 1) << plaintext.output;
  EXPECT_NE(plaintext.output.find("UNAVAILABLE"), std::string::npos) << plaintext.output;
}

}  // namespace
}  // namespace sluice::server_testing
