// Starts a real SluiceServer in-process on ephemeral loopback ports with a repository built
// from the reference models, and drives raw gRPC streams against it.
#ifndef SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_
#define SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
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

inline v1::StreamRequest CloseRequest() {
  v1::StreamRequest request;
  request.mutable_close();
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

// Streams row `row` of a reference model through one session (random chunk sizes, concurrent
// reader) and checks every output and its seq against model.expected within atol + rtol * |x|.
inline void StreamRowAndCheck(v1::Streaming::Stub& stub, const std::string& served_name,
                              const model_testing::ReferenceModel& model, int64_t row,
                              uint32_t seed, float atol = 1e-4f, float rtol = 1e-4f) {
  auto s = StartStream(stub);
  ASSERT_TRUE(s->Write(OpenRequest(served_name)));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened()) << response.DebugString();
  EXPECT_EQ(response.opened().warmup_frames(), model.program->warmup_frames);

  const streaming::StreamSpec& in = model.program->input;
  const streaming::StreamSpec& out = model.program->outputs[0];
  NpyArray actual = model_testing::NanArrayLike(model.expected);
  std::vector<uint64_t> seqs;
  std::thread reader([&] {
    v1::StreamResponse r;
    while (s->Read(&r)) {
      if (!r.has_outputs()) continue;
      const v1::Outputs& outputs = r.outputs();
      const v1::Tensor& tensor = outputs.tensors(0);
      for (uint32_t i = 0; i < outputs.count(); ++i) {
        const uint64_t seq = outputs.first_seq() + i;
        seqs.push_back(seq);
        std::vector<float> frame(out.frame_size);
        std::memcpy(frame.data(), tensor.data().data() + i * out.frame_size * sizeof(float),
                    out.frame_size * sizeof(float));
        const int64_t t = static_cast<int64_t>(seq) - model.program->warmup_frames;
        if (t >= 0 && t < model.out_frames()) {
          model_testing::ScatterFrame(frame, out, t, row, &actual);
        }
      }
    }
  });
  std::mt19937 rng(seed);
  int64_t t = 0;
  while (t < model.frames()) {
    const int64_t chunk = std::min<int64_t>(1 + rng() % 7, model.frames() - t);
    std::vector<std::vector<float>> frames;
    for (int64_t i = 0; i < chunk; ++i) {
      frames.push_back(model_testing::ExtractFrame(model.input, in, t + i, row));
    }
    ASSERT_TRUE(s->Write(FramesRequest(frames, in.frame_shape)));
    t += chunk;
  }
  v1::StreamRequest close;
  close.mutable_close();
  ASSERT_TRUE(s->Write(close));
  s->stream->WritesDone();
  reader.join();
  const grpc::Status status = s->stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(static_cast<int64_t>(seqs.size()), model.out_frames());
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(seqs[i], i + model.program->warmup_frames) << "outputs out of order";
  }
  // Compare only this row.
  for (int64_t tt = 0; tt < model.out_frames(); ++tt) {
    const auto got = model_testing::ExtractFrame(actual, out, tt, row);
    const auto want = model_testing::ExtractFrame(model.expected, out, tt, row);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_LE(std::fabs(got[i] - want[i]), atol + rtol * std::fabs(want[i]))
          << served_name << " row " << row << " frame " << tt << " element " << i;
    }
  }
}

}  // namespace sluice::server_testing

#endif  // SLUICE_TESTS_SERVER_SERVER_FIXTURE_H_
