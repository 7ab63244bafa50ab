#include "tests/common/stream_oracle.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "runtime/backend.h"
#include "runtime/streaming/program.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::stream_testing {
namespace {

// An output the session computes alone.
struct ExpectedOutput {
  uint64_t seq = 0;
  std::vector<float> values;
  std::optional<std::string> tag;
};

// What the replay on the reference backend gives.
struct Replay {
  std::vector<ExpectedOutput> outputs;
  std::vector<uint64_t> resets;  // The next_seq of each ResetDone, in order.
};

absl::Status WithContext(const absl::Status& status, const std::string& context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

absl::Status StepAll(Backend& reference, SlotId slot, absl::Span<const Accepted> accepted,
                     Replay* replay) {
  const streaming::Program& program = reference.program();
  std::vector<float> out(program.outputs[0].frame_size);
  float* outs[1] = {out.data()};
  for (const Accepted& item : accepted) {
    if (item.reset) {
      const absl::Status reset = reference.ResetSlot(slot);
      if (!reset.ok()) {
        return WithContext(reset, absl::StrCat("reference ResetSlot at seq ", item.seq));
      }
      replay->resets.push_back(item.seq);
      continue;
    }
    // Step reads input.frame_size floats from the frame.
    if (static_cast<int64_t>(item.frame.size()) != program.input.frame_size) {
      return absl::InvalidArgumentError(absl::StrCat("accepted frame of seq ", item.seq, " has ",
                                                     item.frame.size(), " floats, the input ",
                                                     program.input.frame_size));
    }
    const StepItem batch[1] = {{slot, item.frame.data()}};
    uint8_t ready[1];
    const absl::Status stepped = reference.Step(batch, outs, ready);
    if (!stepped.ok()) {
      return WithContext(stepped, absl::StrCat("reference Step at seq ", item.seq));
    }
    if (ready[0]) replay->outputs.push_back({item.seq, out, item.tag});
  }
  return absl::OkStatus();
}

// Steps the accepted frames one by one in a fresh slot of `reference`, as a session alone.
absl::StatusOr<Replay> ReplayAlone(Backend& reference, absl::Span<const Accepted> accepted) {
  const absl::StatusOr<SlotId> slot = reference.AllocateSlot();
  if (!slot.ok()) return WithContext(slot.status(), "reference AllocateSlot");
  Replay replay;
  const absl::Status stepped = StepAll(reference, *slot, accepted, &replay);
  // Freed on every path: the reference serves the next stream.
  const absl::Status freed = reference.FreeSlot(*slot);
  if (!stepped.ok()) return stepped;
  if (!freed.ok()) return WithContext(freed, "reference FreeSlot");
  return replay;
}

// A short description of a response for failure messages (Outputs without their bytes).
std::string Describe(const v1::StreamResponse& response) {
  if (response.has_outputs()) {
    const v1::Outputs& outputs = response.outputs();
    return absl::StrCat("Outputs of seqs [", outputs.first_seq(), ", ",
                        outputs.first_seq() + outputs.count(), ")");
  }
  return response.ShortDebugString().substr(0, 200);
}

absl::Status Mismatch(size_t index, const v1::StreamResponse& response, const std::string& what) {
  return absl::InternalError(
      absl::StrCat("response ", index, " (", Describe(response), "): ", what));
}

uint32_t BitsOf(const char* bytes) {
  uint32_t bits;
  std::memcpy(&bits, bytes, sizeof(bits));
  return bits;
}

float FloatOf(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// Checks one Outputs response against the expected outputs from *next_output on, and advances
// *next_output past the ones it carries. The message does not name the response.
absl::Status CheckOutputs(const v1::Outputs& outputs, const streaming::StreamSpec& spec,
                          const std::vector<ExpectedOutput>& expected, size_t* next_output) {
  if (outputs.count() == 0 || outputs.tensors_size() != 1) {
    return absl::InternalError(absl::StrCat("count ", outputs.count(), " with ",
                                            outputs.tensors_size(), " tensors, expected 1"));
  }
  const v1::Tensor& tensor = outputs.tensors(0);
  if (tensor.dtype() != v1::FLOAT32) {
    return absl::InternalError(
        absl::StrCat("dtype ", v1::DataType_Name(tensor.dtype()), ", expected FLOAT32"));
  }
  bool shape_ok = tensor.shape_size() == 1 + static_cast<int>(spec.frame_shape.size()) &&
                  tensor.shape(0) == outputs.count();
  for (size_t d = 0; shape_ok && d < spec.frame_shape.size(); ++d) {
    shape_ok = tensor.shape(static_cast<int>(1 + d)) == spec.frame_shape[d];
  }
  if (!shape_ok) {
    std::string shape;
    for (int64_t d : tensor.shape()) absl::StrAppend(&shape, shape.empty() ? "" : ", ", d);
    std::string want = absl::StrCat(outputs.count());
    for (int64_t d : spec.frame_shape) absl::StrAppend(&want, ", ", d);
    return absl::InternalError(absl::StrCat("shape [", shape, "], expected [", want, "]"));
  }
  const size_t frame_bytes = static_cast<size_t>(spec.frame_size) * sizeof(float);
  if (tensor.data().size() != outputs.count() * frame_bytes) {
    return absl::InternalError(
        absl::StrCat(tensor.data().size(), " bytes, expected ", outputs.count() * frame_bytes));
  }
  // Tags come for every frame of a response or for none (tagged and untagged never merge).
  if (outputs.tags_size() != 0 && outputs.tags_size() != static_cast<int>(outputs.count())) {
    return absl::InternalError(
        absl::StrCat(outputs.tags_size(), " tags for ", outputs.count(), " outputs"));
  }
  for (uint32_t i = 0; i < outputs.count(); ++i) {
    const uint64_t seq = outputs.first_seq() + i;
    if (*next_output >= expected.size()) {
      return absl::InternalError(
          absl::StrCat("output of seq ", seq, " beyond the ", expected.size(), " expected"));
    }
    const ExpectedOutput& want = expected[(*next_output)++];
    if (seq != want.seq) {
      return absl::InternalError(absl::StrCat("output of seq ", seq, ", expected seq ", want.seq));
    }
    // Bitwise: batching and other sessions must not change a session's results at all.
    const char* got = tensor.data().data() + i * frame_bytes;
    if (std::memcmp(got, want.values.data(), frame_bytes) != 0) {
      size_t e = 0;
      while (BitsOf(got + e * sizeof(float)) ==
             BitsOf(reinterpret_cast<const char*>(want.values.data() + e))) {
        ++e;
      }
      const uint32_t got_bits = BitsOf(got + e * sizeof(float));
      const uint32_t want_bits = BitsOf(reinterpret_cast<const char*>(want.values.data() + e));
      return absl::InternalError(absl::StrCat(
          "output of seq ", seq, " differs from the session computed alone: value ", e, " is ",
          FloatOf(got_bits), " (0x", absl::Hex(got_bits, absl::kZeroPad8), "), expected ",
          FloatOf(want_bits), " (0x", absl::Hex(want_bits, absl::kZeroPad8), ")"));
    }
    if (want.tag.has_value() != (outputs.tags_size() > 0)) {
      return absl::InternalError(
          absl::StrCat("output of seq ", seq, want.tag ? " lacks its tag" : " has an unsent tag"));
    }
    if (want.tag && outputs.tags(static_cast<int>(i)) != *want.tag) {
      return absl::InternalError(absl::StrCat("output of seq ", seq, " has tag \"",
                                              outputs.tags(static_cast<int>(i)), "\", expected \"",
                                              *want.tag, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStream(Backend& reference, absl::Span<const Accepted> accepted,
                         absl::Span<const StreamError> errors,
                         absl::Span<const v1::StreamResponse> responses, StreamEnd end) {
  const streaming::Program& program = reference.program();
  if (program.outputs.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the oracle handles programs of one output, not ", program.outputs.size()));
  }
  const absl::StatusOr<Replay> replay = ReplayAlone(reference, accepted);
  if (!replay.ok()) return replay.status();

  const bool cut_short = end == StreamEnd::kCutShort;
  size_t next_output = 0;
  size_t next_reset = 0;
  bool opened = false;
  std::vector<StreamError> got_errors;
  for (size_t r = 0; r < responses.size(); ++r) {
    const v1::StreamResponse& response = responses[r];
    // Nothing overtakes Opened, which waits for the slot allocation: the session holds
    // in-stream Errors until it is queued. Only a stream cut short may see Errors without it.
    if (!opened && !response.has_opened() && !(cut_short && response.has_error())) {
      return Mismatch(r, response, "before Opened");
    }
    switch (response.kind_case()) {
      case v1::StreamResponse::kOpened:
        if (opened) return Mismatch(r, response, "a second Opened");
        opened = true;
        break;
      case v1::StreamResponse::kOutputs: {
        const absl::Status checked =
            CheckOutputs(response.outputs(), program.outputs[0], replay->outputs, &next_output);
        if (!checked.ok()) return Mismatch(r, response, std::string(checked.message()));
        break;
      }
      case v1::StreamResponse::kResetDone: {
        const uint64_t next_seq = response.reset_done().next_seq();
        if (next_reset >= replay->resets.size()) {
          return Mismatch(r, response,
                          absl::StrCat("ResetDone beyond the ", replay->resets.size(), " Resets"));
        }
        if (next_seq != replay->resets[next_reset]) {
          return Mismatch(r, response,
                          absl::StrCat("ResetDone ", next_reset, " has next_seq ", next_seq,
                                       ", expected ", replay->resets[next_reset]));
        }
        ++next_reset;
        break;
      }
      case v1::StreamResponse::kError:
        got_errors.emplace_back(response.error().status().code(), response.error().seq());
        break;
      default:
        return Mismatch(r, response, "unexpected response kind");
    }
  }
  if (!opened && !cut_short) return absl::InternalError("no Opened");
  if (end == StreamEnd::kComplete) {
    if (next_output != replay->outputs.size()) {
      return absl::InternalError(
          absl::StrCat(next_output, " outputs, expected ", replay->outputs.size()));
    }
    if (next_reset != replay->resets.size()) {
      return absl::InternalError(
          absl::StrCat(next_reset, " ResetDone, expected ", replay->resets.size()));
    }
  }
  if (!cut_short) {
    for (size_t e = 0; e < got_errors.size() || e < errors.size(); ++e) {
      if (e >= got_errors.size() || e >= errors.size()) {
        return absl::InternalError(
            absl::StrCat(got_errors.size(), " Errors, expected ", errors.size()));
      }
      if (got_errors[e] != errors[e]) {
        return absl::InternalError(absl::StrCat(
            "Error ", e, " has code ", got_errors[e].first, " at seq ", got_errors[e].second,
            ", expected code ", errors[e].first, " at seq ", errors[e].second));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice::stream_testing
