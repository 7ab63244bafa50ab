// libFuzzer target: ONNX bytes -> importer -> constant folding -> streaming transform ->
// Describe (what `sluice-run --describe` does), then, for programs small enough to run quickly,
// a few CPU backend steps with the invariants every backend promises:
//   - loading fails only with a Status (InvalidArgument/Unimplemented for a model that cannot
//     stream, ResourceExhausted for one over a documented size limit), never a crash;
//   - a session's outputs do not depend on the other sessions of its batch (bitwise);
//   - ready flags follow the program's warm-up;
//   - a slot exported and imported into another slot continues identically.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/program.h"
#include "runtime/streaming/transform.h"
#include "tests/fuzz/fuzz_support.h"

namespace sluice {
namespace {

// Programs above these are only built and described, not run: the fuzzer looks for bugs, not
// for slow models (the transform's own limits are checked by loading them).
constexpr int64_t kRunMaxValueFloats = int64_t{1} << 16;
constexpr int64_t kRunMaxStateBytes = int64_t{1} << 20;
constexpr int64_t kRunMaxFlops = int64_t{1} << 22;
constexpr int kSteps = 4;

bool SmallEnoughToRun(const streaming::Program& program) {
  int64_t floats = 0;
  for (const streaming::Value& value : program.values) {
    if (value.size < 0) return false;
    floats += value.size;
    if (floats > kRunMaxValueFloats) return false;
  }
  for (const streaming::Op& op : program.ops) {
    if (const auto* linear = std::get_if<streaming::LinearOp>(&op.params)) {
      if (linear->rows > 64) return false;
    }
  }
  return program.state_bytes <= kRunMaxStateBytes && program.FlopsPerFrame() <= kRunMaxFlops &&
         program.warmup_frames <= kSteps;
}

// Deterministic frames: small values, the same for every run of an input.
std::vector<float> MakeFrame(int64_t size, uint32_t seed) {
  std::vector<float> frame(size);
  uint32_t x = seed * 2654435761u + 12345u;
  for (float& v : frame) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(x >> 8) % 4096) / 1024.f;
  }
  return frame;
}

bool SameBits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

void RunProgram(std::shared_ptr<const streaming::Program> program) {
  BackendOptions options;
  options.max_batch = 3;
  auto backend = cpu::CpuBackend::Create(program, options);
  FUZZ_CHECK(backend.ok(), "CpuBackend::Create of a built program: ", backend.status().ToString());
  SlotId slots[3];
  for (SlotId& slot : slots) {
    auto allocated = (*backend)->AllocateSlot();
    FUZZ_CHECK(allocated.ok(), allocated.status().ToString());
    slot = *allocated;
  }
  const int64_t in_size = program->input.frame_size;
  std::vector<std::vector<float>> outputs(program->outputs.size());
  std::vector<float*> pointers;
  for (size_t j = 0; j < outputs.size(); ++j) {
    outputs[j].resize(3 * program->outputs[j].frame_size);
    pointers.push_back(outputs[j].data());
  }
  // Slots 0 and 1 see the same frames, slot 2 others: 0 and 1 must agree bit for bit.
  for (int t = 0; t < kSteps; ++t) {
    const std::vector<float> same = MakeFrame(in_size, t);
    const std::vector<float> other = MakeFrame(in_size, 1000 + t);
    const StepItem batch[3] = {
        {slots[0], same.data()}, {slots[1], same.data()}, {slots[2], other.data()}};
    uint8_t ready[3] = {7, 7, 7};
    const absl::Status status = (*backend)->Step(batch, pointers, ready);
    FUZZ_CHECK(status.ok(), "Step: ", status.ToString());
    for (int b = 0; b < 3; ++b) {
      FUZZ_CHECK(ready[b] == (t >= program->warmup_frames ? 1 : 0), "step ", t, " item ", b,
                 " ready ", static_cast<int>(ready[b]), " with warm-up ", program->warmup_frames);
    }
    for (size_t j = 0; j < outputs.size(); ++j) {
      const int64_t size = program->outputs[j].frame_size;
      FUZZ_CHECK(SameBits(outputs[j].data(), outputs[j].data() + size, size), "output ", j,
                 " of step ", t, " differs between two sessions fed the same frames");
    }
  }
  // Slot 2 takes over slot 0's state: from here on they must agree.
  auto state = (*backend)->ExportSlot(slots[0]);
  FUZZ_CHECK(state.ok(), state.status().ToString());
  FUZZ_CHECK(static_cast<int64_t>(state->size()) == program->state_bytes, "exported ",
             state->size(), " bytes, state_bytes ", program->state_bytes);
  FUZZ_CHECK((*backend)->ImportSlot(slots[2], *state).ok(), "ImportSlot");
  const std::vector<float> frame = MakeFrame(in_size, 77);
  const StepItem batch[2] = {{slots[2], frame.data()}, {slots[0], frame.data()}};
  uint8_t ready[2];
  FUZZ_CHECK((*backend)->Step(batch, pointers, ready).ok(), "Step after import");
  for (size_t j = 0; j < outputs.size(); ++j) {
    const int64_t size = program->outputs[j].frame_size;
    FUZZ_CHECK(SameBits(outputs[j].data(), outputs[j].data() + size, size), "output ", j,
               " differs between a slot and the slot imported from it");
  }
  FUZZ_CHECK((*backend)->ResetSlot(slots[1]).ok(), "ResetSlot");
  for (SlotId slot : slots) FUZZ_CHECK((*backend)->FreeSlot(slot).ok(), "FreeSlot");
}

}  // namespace

namespace fuzz {

// The reference models (tests/models/manifest.tsv), except cnn_tiny (1.5 MB of weights slows
// every mutation down), and the models the transform must refuse.
std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  for (const char* name : {"vollo_valid_cnn", "vollo_padded_cnn", "espdl_tcn_block", "chomp_tcn",
                           "lstm2", "gru_tanh", "ops_zoo", "mixed_dilated"}) {
    seeds.push_back(
        ReadFileOrEmpty(SourcePath(absl::StrCat("tests/models/", name, "/model.onnx"))));
  }
  for (const char* name : {"symmetric_pad_conv", "mean_over_time", "bidir_lstm", "attention",
                           "strided_conv", "lstm_returns_state", "batchnorm_time", "unknown_op"}) {
    seeds.push_back(
        ReadFileOrEmpty(SourcePath(absl::StrCat("tests/models/refused/", name, ".onnx"))));
  }
  return seeds;
}

}  // namespace fuzz
}  // namespace sluice

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  sluice::fuzz::WriteSeedsIfAsked();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;  // NOLINT: a C entry point.
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // Triage: SLUICE_FUZZ_VERBOSE=1 prints what each stage made of the input.
  static const bool verbose = std::getenv("SLUICE_FUZZ_VERBOSE") != nullptr;
  auto graph = onnx_import::ImportModel(bytes, "fuzz input");
  if (verbose) std::fprintf(stderr, "import: %s\n", graph.status().ToString().c_str());
  if (!graph.ok()) {
    FUZZ_CHECK(graph.status().code() == absl::StatusCode::kInvalidArgument ||
                   graph.status().code() == absl::StatusCode::kResourceExhausted,
               "ImportModel: ", graph.status().ToString());
    return 0;
  }
  auto program = streaming::BuildProgram(*graph, {});
  if (verbose) {
    std::fprintf(stderr, "build: %s\n%s", program.status().ToString().c_str(),
                 program.ok() ? program->Describe().c_str() : "");
  }
  if (!program.ok()) {
    const absl::StatusCode code = program.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                   code == absl::StatusCode::kUnimplemented ||
                   code == absl::StatusCode::kResourceExhausted,
               "BuildProgram: ", program.status().ToString());
    return 0;
  }
  FUZZ_CHECK(program->input.frame_size > 0, "input frame size ", program->input.frame_size);
  FUZZ_CHECK(program->state_bytes >= 8 && program->state_bytes % 64 == 0, "state_bytes ",
             program->state_bytes);
  FUZZ_CHECK(program->warmup_frames >= 0, "warm-up ", program->warmup_frames);
  const std::string described = program->Describe();
  FUZZ_CHECK(!described.empty(), "empty Describe()");
  auto shared = std::make_shared<const streaming::Program>(*std::move(program));
  if (SmallEnoughToRun(*shared)) RunProgram(shared);
  return 0;
}
