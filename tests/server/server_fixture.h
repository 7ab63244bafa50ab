// Starts a real SluiceServer in-process on ephemeral loopback ports with a repository built
// from the reference models, and drives raw gRPC streams against it.
#ifndef SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_
#define SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/server.h"
#include "sluice/v1/streaming.grpc.pb.h"
#include "tests/runtime/model_testing.h"

namespace sluice::server_testing {

using Stream = grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>;

// A model folder in the test repository: a reference model plus a config.pbtxt.
struct RepoModel {
  std::string name;
  std::string source;  // Reference model name under tests/models ("" = write garbage bytes).
  std::string config;
};

inline std::string MakeRepository(const std::vector<RepoModel>& models) {
  char pattern[] = "/tmp/sluice-repo-XXXXXX";
  const std::string root = mkdtemp(pattern);
  for (const RepoModel& model : models) {
    const std::filesystem::path dir = std::filesystem::path(root) / model.name;
    std::filesystem::create_directories(dir);
    if (model.source.empty()) {
      std::ofstream(dir / "model.onnx") << "definitely not an onnx model";
    } else {
      std::filesystem::create_symlink(
          model_testing::SourcePath(absl::StrCat("tests/models/", model.source, "/model.onnx")),
          dir / "model.onnx");
    }
    if (!model.config.empty()) std::ofstream(dir / "config.pbtxt") << model.config;
  }
  return root;
}

// One client stream with its own context.
struct TestStream {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream;

  bool Write(const v1::StreamRequest& request) { return stream->Write(request); }
  bool Read(v1::StreamResponse* response) { return stream->Read(response); }
};

inline std::unique_ptr<TestStream> StartStream(v1::Streaming::Stub& stub) {
  auto s = std::make_unique<TestStream>();
  s->stream = stub.Stream(&s->context);
  return s;
}

inline v1::StreamRequest OpenRequest(const std::string& model) {
  v1::StreamRequest request;
  request.mutable_open()->set_model(model);
  return request;
}

// Frames [k, frame...] stacked, float32.
inline v1::StreamRequest FramesRequest(const std::vector<std::vector<float>>& frames,
                                       const std::vector<int64_t>& frame_shape) {
  v1::StreamRequest request;
  v1::Tensor* tensor = request.mutable_frames()->mutable_tensor();
  tensor->set_dtype(v1::FLOAT32);
  tensor->add_shape(static_cast<int64_t>(frames.size()));
  for (int64_t d : frame_shape) tensor->add_shape(d);
  for (const auto& frame : frames) {
    tensor->mutable_data()->append(reinterpret_cast<const char*>(frame.data()),
                                   frame.size() * sizeof(float));
  }
  return request;
}

}  // namespace sluice::server_testing

#endif  // SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_
