#include "tests/client/fake_streaming_service.h"

#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/lib/session.h"

namespace sluice::testing {
namespace {

v1::StreamResponse ErrorResponse(grpc::StatusCode code, const std::string& message, uint64_t seq) {
  v1::StreamResponse response;
  response.mutable_error()->mutable_status()->set_code(static_cast<int>(code));
  response.mutable_error()->mutable_status()->set_message(message);
  response.mutable_error()->set_seq(seq);
  return response;
}

// Frame-major values of a Frames request in the fake layout (STACKED [1,3] or [k,1,3]; OFFLINE
// [1,3,k]), or empty with *k = 0.
std::vector<float> DecodeFrames(const v1::Frames& frames, int64_t* k) {
  const v1::Tensor& tensor = frames.tensor();
  const auto& shape = tensor.shape();
  *k = 0;
  bool offline = false;
  if (frames.layout() == v1::Frames::OFFLINE) {
    if (shape.size() == 3 && shape[0] == 1 && shape[1] == kFakeChannels && shape[2] >= 1) {
      *k = shape[2];
      offline = true;
    }
  } else if (shape.size() == 2 && shape[0] == 1 && shape[1] == kFakeChannels) {
    *k = 1;
  } else if (shape.size() == 3 && shape[0] >= 1 && shape[1] == 1 && shape[2] == kFakeChannels) {
    *k = shape[0];
  }
  const int64_t n = *k * kFakeChannels;
  const int64_t elem = tensor.dtype() == v1::FLOAT32 ? 4 : tensor.dtype() == v1::INT16 ? 2 : 0;
  if (*k == 0 || elem == 0 || static_cast<int64_t>(tensor.data().size()) != n * elem) {
    *k = 0;
    return {};
  }
  std::vector<float> raw(n);
  if (elem == 4) {
    std::memcpy(raw.data(), tensor.data().data(), n * 4);
  } else {
    std::vector<int16_t> pcm(n);
    std::memcpy(pcm.data(), tensor.data().data(), n * 2);
    for (int64_t i = 0; i < n; ++i) raw[i] = static_cast<float>(pcm[i]) / 32768.f;
  }
  if (!offline) return raw;
  std::vector<float> frames_major(n);
  for (int64_t c = 0; c < kFakeChannels; ++c) {
    for (int64_t t = 0; t < *k; ++t) frames_major[t * kFakeChannels + c] = raw[c * *k + t];
  }
  return frames_major;
}

}  // namespace

v1::TensorSpec FakeStreamingService::Spec(const std::string& name) {
  v1::TensorSpec spec;
  spec.set_name(name);
  spec.set_dtype(v1::FLOAT32);
  spec.add_offline_shape(1);
  spec.add_offline_shape(kFakeChannels);
  spec.add_offline_shape(-1);
  spec.set_time_axis(2);
  spec.add_frame_shape(1);
  spec.add_frame_shape(kFakeChannels);
  return spec;
}

grpc::Status FakeStreamingService::Stream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) {
  v1::StreamRequest request;
  if (!stream->Read(&request)) return grpc::Status::OK;
  if (!request.has_open()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the first request must be Open");
  }
  const std::string model = request.open().model();
  if (model == "full") {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many sessions");
  }
  if (model == "refuse") {
    stream->Write(ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, "refused", 0));
  } else if (model != "double") {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no model '", model, "'"));
  } else {
    v1::StreamResponse opened;
    opened.mutable_opened()->set_session_id("s-1");
    opened.mutable_opened()->set_model(model);
    opened.mutable_opened()->set_session_tag(request.open().session_tag());
    *opened.mutable_opened()->mutable_input() = Spec("x");
    *opened.mutable_opened()->add_outputs() = Spec("y");
    opened.mutable_opened()->set_warmup_frames(kFakeWarmup);
    opened.mutable_opened()->set_state_bytes(24);
    opened.mutable_opened()->set_backend("fake");
    stream->Write(opened);
  }
  uint64_t seq = 0;
  uint64_t warm_until = kFakeWarmup;
  while (stream->Read(&request)) {
    if (request.has_close()) {
      // As the real server: every frame was answered, so the stream names the next seq.
      context->AddTrailingMetadata(client::kServedThroughTrailer, absl::StrCat(seq));
      return grpc::Status::OK;
    }
    if (request.has_reset()) {
      warm_until = seq + kFakeWarmup;
      v1::StreamResponse done;
      done.mutable_reset_done()->set_next_seq(seq);
      stream->Write(done);
      continue;
    }
    if (!request.has_frames()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "unexpected request");
    }
    const v1::Frames& frames = request.frames();
    for (const std::string& tag : frames.tags()) {
      if (tag == "die") return grpc::Status(grpc::StatusCode::DATA_LOSS, "told to die");
    }
    int64_t k = 0;
    std::vector<float> values = DecodeFrames(frames, &k);
    if (k == 0 || (frames.tags_size() != 0 && frames.tags_size() != k)) {
      stream->Write(ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, "bad frame shape", seq));
      continue;
    }
    const uint64_t first = std::max<uint64_t>(seq, warm_until);
    const int64_t n = static_cast<int64_t>(seq + k) - static_cast<int64_t>(first);
    if (n > 0) {
      v1::StreamResponse response;
      v1::Outputs* outputs = response.mutable_outputs();
      outputs->set_first_seq(first);
      outputs->set_count(static_cast<uint32_t>(n));
      v1::Tensor* y = outputs->add_tensors();
      y->set_dtype(v1::FLOAT32);
      y->add_shape(n);
      y->add_shape(1);
      y->add_shape(kFakeChannels);
      std::vector<float> out(n * kFakeChannels);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = static_cast<int64_t>(first - seq) + i;
        for (int c = 0; c < kFakeChannels; ++c) {
          out[i * kFakeChannels + c] = 2.f * values[t * kFakeChannels + c];
        }
        if (frames.tags_size() > 0) outputs->add_tags(frames.tags(t));
      }
      y->set_data(out.data(), out.size() * sizeof(float));
      if (!stream->Write(response)) break;
    }
    seq += k;
  }
  if (context->IsCancelled()) cancelled_streams_.fetch_add(1);
  return grpc::Status::OK;
}

grpc::Status FakeStreamingService::ListModels(grpc::ServerContext* /*context*/,
                                              const v1::ListModelsRequest* /*request*/,
                                              v1::ListModelsResponse* response) {
  v1::ModelSummary* ready = response->add_models();
  ready->set_name("double");
  ready->set_ready(true);
  ready->set_state("ready");
  v1::ModelSummary* loading = response->add_models();
  loading->set_name("loading");
  loading->set_ready(false);
  loading->set_state("loading");
  return grpc::Status::OK;
}

grpc::Status FakeStreamingService::ModelInfo(grpc::ServerContext* /*context*/,
                                             const v1::ModelInfoRequest* request,
                                             v1::ModelInfoResponse* response) {
  if (request->name() != "double") {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no model '", request->name(), "'"));
  }
  response->mutable_summary()->set_name("double");
  response->mutable_summary()->set_ready(true);
  response->mutable_summary()->set_state("ready");
  *response->mutable_input() = Spec("x");
  *response->add_outputs() = Spec("y");
  response->set_warmup_frames(kFakeWarmup);
  response->set_backend("fake");
  response->set_max_batch(8);
  return grpc::Status::OK;
}

FakeStreamingServer::FakeStreamingServer() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
}

FakeStreamingServer::~FakeStreamingServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

std::string FakeStreamingServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

void FakeStreamingServer::SetServing(bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(serving);
}

}  // namespace sluice::testing
