#include "client/cli/stream_runner.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/lib/frame_layout.h"
#include "client/lib/status_util.h"
#include "runtime/common/frame_layout.h"
#include "runtime/common/status_macros.h"

namespace sluice::client {
namespace {

std::vector<int64_t> RowMajorStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d) {
    strides[d] = strides[d + 1] * shape[d + 1];
  }
  return strides;
}

absl::Status CheckInput(const NpyArray& x, const v1::TensorSpec& spec, int batch_axis) {
  const std::string want = absl::StrCat("[", absl::StrJoin(spec.offline_shape(), ","),
                                        "] (-1 = time, batch axis ", batch_axis, ")");
  if (x.shape.size() != static_cast<size_t>(spec.offline_shape_size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("input has rank ", x.shape.size(), "; the model takes ", want));
  }
  for (int d = 0; d < static_cast<int>(x.shape.size()); ++d) {
    if (d == spec.time_axis() || d == batch_axis) continue;
    if (x.shape[d] != spec.offline_shape(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("input dim ", d, " is ", x.shape[d], "; the model takes ", want));
    }
  }
  return absl::OkStatus();
}

// Reads one session's responses until the stream ends; fills out[j][t * frame_size_j ...].
absl::Status Collect(Session& session, int64_t warmup, int64_t out_steps,
                     std::vector<std::vector<float>>& out) {
  const v1::Opened& opened = session.opened();
  int64_t received = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::optional<v1::StreamResponse> response, session.Next());
    if (!response) break;
    if (response->has_error()) {
      const v1::Error& error = response->error();
      const absl::Status status = FromWireStatus(error.status());
      return absl::Status(status.ok() ? absl::StatusCode::kUnknown : status.code(),
                          absl::StrCat("frame seq ", error.seq(), ": ", status.message()));
    }
    if (!response->has_outputs()) continue;
    const v1::Outputs& outputs = response->outputs();
    if (outputs.tensors_size() != opened.outputs_size()) {
      return absl::InternalError(absl::StrCat("Outputs at seq ", outputs.first_seq(), " has ",
                                              outputs.tensors_size(), " tensors; the model has ",
                                              opened.outputs_size(), " outputs"));
    }
    const int64_t first = static_cast<int64_t>(outputs.first_seq()) - warmup;
    if (first < 0 || first + outputs.count() > out_steps) {
      return absl::InternalError(absl::StrCat("Outputs for seq ", outputs.first_seq(), " + ",
                                              outputs.count(), " outside the expected ", warmup,
                                              " .. ", warmup + out_steps));
    }
    for (int j = 0; j < outputs.tensors_size(); ++j) {
      int64_t count = 0;
      ASSIGN_OR_RETURN(std::vector<float> frames,
                       UnpackFrames(opened.outputs(j), outputs.tensors(j), &count));
      if (count != outputs.count()) {
        return absl::InternalError(absl::StrCat("Outputs at seq ", outputs.first_seq(), ": tensor ",
                                                j, " holds ", count, " frames, count says ",
                                                outputs.count()));
      }
      std::copy(frames.begin(), frames.end(),
                out[j].begin() + first * FrameSize(opened.outputs(j)));
    }
    received += outputs.count();
  }
  if (received != out_steps) {
    return absl::DataLossError(
        absl::StrCat("the stream ended after ", received, " of ", out_steps, " outputs"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<NpyArray>> StreamArray(StreamingClient& client, const NpyArray& x,
                                                  const StreamRunOptions& options) {
  if (options.chunk < 1) return absl::InvalidArgumentError("chunk must be at least 1");
  SessionOptions session_options;
  session_options.stream_timeout = options.stream_timeout;
  std::vector<std::unique_ptr<Session>> sessions;
  sessions.push_back(client.NewSession(session_options));
  ASSIGN_OR_RETURN(const v1::Opened opened,
                   sessions[0]->Open(options.model, "row-0", options.open_timeout));
  const v1::TensorSpec& in = opened.input();
  const int batch_axis = BatchAxis(in);
  RETURN_IF_ERROR(CheckInput(x, in, batch_axis));
  const int64_t rows = batch_axis >= 0 ? x.shape[batch_axis] : 1;
  const int64_t steps = x.shape[in.time_axis()];
  const int64_t warmup = opened.warmup_frames();
  const int64_t out_steps = std::max<int64_t>(0, steps - warmup);
  for (int j = 0; j < opened.outputs_size(); ++j) {
    if (rows > 1 && BatchAxis(opened.outputs(j)) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output ", opened.outputs(j).name(), " has no batch axis to stack ", rows, " rows on"));
    }
  }
  for (int64_t r = 1; r < rows; ++r) {
    sessions.push_back(client.NewSession(session_options));
    RETURN_IF_ERROR(
        sessions[r]->Open(options.model, absl::StrCat("row-", r), options.open_timeout).status());
  }

  // Send every row's chunks, interleaved across rows, then close each session.
  const int64_t frame_size = FrameSize(in);
  const std::vector<int64_t> x_strides = RowMajorStrides(x.shape);
  const int64_t time_stride = x_strides[in.time_axis()];
  std::vector<float> chunk(static_cast<size_t>(options.chunk) * frame_size);
  std::vector<std::vector<int64_t>> offsets(rows);
  for (int64_t r = 0; r < rows; ++r) {
    offsets[r] = sluice::FrameOffsets(x.shape, in.time_axis(), batch_axis, 0, r);
  }
  for (int64_t t0 = 0; t0 < steps; t0 += options.chunk) {
    const int64_t k = std::min<int64_t>(options.chunk, steps - t0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t t = 0; t < k; ++t) {
        float* dst = chunk.data() + t * frame_size;
        for (int64_t i = 0; i < frame_size; ++i) {
          dst[i] = x.data[offsets[r][i] + (t0 + t) * time_stride];
        }
      }
      RETURN_IF_ERROR(
          sessions[r]->SendFrames(chunk.data(), static_cast<int>(k), {}, options.layout));
    }
  }
  for (auto& session : sessions) RETURN_IF_ERROR(session->Close());

  // Per output j: [row][out_step][frame].
  std::vector<std::vector<std::vector<float>>> results(rows);
  for (int64_t r = 0; r < rows; ++r) {
    results[r].resize(opened.outputs_size());
    for (int j = 0; j < opened.outputs_size(); ++j) {
      results[r][j].assign(out_steps * FrameSize(opened.outputs(j)), 0.f);
    }
    absl::Status status = Collect(*sessions[r], warmup, out_steps, results[r]);
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("row ", r, ": ", status.message()));
    }
  }

  std::vector<NpyArray> arrays;
  for (int j = 0; j < opened.outputs_size(); ++j) {
    const v1::TensorSpec& spec = opened.outputs(j);
    const int out_batch_axis = BatchAxis(spec);
    const int64_t size = FrameSize(spec);
    NpyArray y;
    y.shape = ChunkShape(spec, out_steps);
    if (out_batch_axis >= 0) y.shape[out_batch_axis] = rows;
    y.data.assign(rows * out_steps * size, 0.f);
    const int64_t y_time_stride = RowMajorStrides(y.shape)[spec.time_axis()];
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<int64_t> y_offsets =
          sluice::FrameOffsets(y.shape, spec.time_axis(), out_batch_axis, 0, r);
      for (int64_t t = 0; t < out_steps; ++t) {
        const float* src = results[r][j].data() + t * size;
        for (int64_t i = 0; i < size; ++i) y.data[y_offsets[i] + t * y_time_stride] = src[i];
      }
    }
    arrays.push_back(std::move(y));
  }
  return arrays;
}

}  // namespace sluice::client
