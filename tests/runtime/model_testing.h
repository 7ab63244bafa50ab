// Test helpers shared by the runtime tests: the reference-model manifest
// (tests/models/manifest.tsv), loading a model with its input/expected arrays, moving frames in
// and out of offline-layout tensors, stepping a backend, and comparing arrays with a tolerance.
#ifndef SLUICE_TESTS_RUNTIME_MODEL_TESTING_H_
#define SLUICE_TESTS_RUNTIME_MODEL_TESTING_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "runtime/backend.h"
#include "runtime/common/frame_layout.h"
#include "runtime/common/npy.h"
#include "runtime/streaming/program.h"
#include "runtime/streaming/transform.h"

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the repository root (sluice_add_test defines it)"
#endif

namespace sluice::model_testing {

// An absolute path inside the repository.
inline std::string SourcePath(const std::string& relative) {
  return absl::StrCat(SLUICE_SOURCE_DIR, "/", relative);
}
inline std::string ModelsDir() { return SourcePath("tests/models"); }

// One row of tests/models/manifest.tsv.
struct ManifestRow {
  std::string name;
  std::string kind;    // "stream" or "refuse".
  std::string path;    // Relative to tests/models.
  std::string node;    // Refused models: the offending ONNX node.
  std::string reason;  // Refused models: a keyword the error must contain.
  int time_axis = -1;  // Streamed models.
  int64_t warmup = -1;

  std::string ModelPath() const { return absl::StrCat(ModelsDir(), "/", path); }
  // Streamed models keep input.npy / expected.npy next to model.onnx.
  std::string DataPath(const std::string& file) const {
    return absl::StrCat(ModelsDir(), "/", name, "/", file);
  }
};

inline absl::StatusOr<std::vector<ManifestRow>> ReadManifest() {
  const std::string path = absl::StrCat(ModelsDir(), "/manifest.tsv");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<ManifestRow> rows;
  std::string line;
  bool header = true;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    if (header) {
      header = false;
      if (fields.empty() || fields[0] != "name") {
        return absl::InvalidArgumentError(absl::StrCat(path, ": no header row"));
      }
      continue;
    }
    if (fields.size() != 7) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", fields.size(), " fields, expected 7"));
    }
    ManifestRow row;
    row.name = fields[0];
    row.kind = fields[1];
    row.path = fields[2];
    row.node = fields[3];
    row.reason = fields[4];
    if (row.kind == "stream") {
      row.time_axis = std::atoi(fields[5].c_str());
      row.warmup = std::atoll(fields[6].c_str());
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// Names of the manifest rows of `kind`, in manifest order; empty when the manifest is
// unreadable (the parameterized suites then fail as uninstantiated).
inline std::vector<std::string> ManifestNames(const std::string& kind) {
  std::vector<std::string> names;
  auto rows = ReadManifest();
  if (!rows.ok()) return names;
  for (const ManifestRow& row : *rows) {
    if (row.kind == kind) names.push_back(row.name);
  }
  return names;
}

inline absl::StatusOr<ManifestRow> FindManifestRow(const std::string& name) {
  auto rows = ReadManifest();
  if (!rows.ok()) return rows.status();
  for (const ManifestRow& row : *rows) {
    if (row.name == name) return row;
  }
  return absl::NotFoundError(absl::StrCat("no manifest row named ", name));
}

// A streamed reference model: its program, input (8 sequences as batch rows, 2 for cnn_tiny)
// and the offline output computed by onnxruntime.
struct ReferenceModel {
  ManifestRow row;
  std::shared_ptr<const streaming::Program> program;
  NpyArray input;
  NpyArray expected;

  // Sequences (batch rows) in `input`, and frames per sequence.
  int64_t rows() const {
    return program->input.batch_axis >= 0 ? input.shape[program->input.batch_axis] : 1;
  }
  int64_t frames() const { return input.shape[program->input.time_axis]; }
  int64_t out_frames() const { return std::max<int64_t>(0, frames() - program->warmup_frames); }
};

inline absl::StatusOr<ReferenceModel> LoadReferenceModel(const std::string& name) {
  ReferenceModel model;
  auto row = FindManifestRow(name);
  if (!row.ok()) return row.status();
  model.row = *std::move(row);
  auto program = streaming::LoadProgram(model.row.ModelPath(), {});
  if (!program.ok()) return program.status();
  model.program = std::make_shared<const streaming::Program>(*std::move(program));
  auto input = ReadNpy(model.row.DataPath("input.npy"));
  if (!input.ok()) return input.status();
  model.input = *std::move(input);
  auto expected = ReadNpy(model.row.DataPath("expected.npy"));
  if (!expected.ok()) return expected.status();
  model.expected = *std::move(expected);
  return model;
}

using ::sluice::FrameOffsets;

inline std::vector<float> ExtractFrame(const NpyArray& array, const streaming::StreamSpec& spec,
                                       int64_t t, int64_t r) {
  std::vector<float> frame;
  for (int64_t o : FrameOffsets(array.shape, spec.time_axis, spec.batch_axis, t, r)) {
    frame.push_back(array.data[o]);
  }
  return frame;
}

inline void ScatterFrame(const std::vector<float>& frame, const streaming::StreamSpec& spec,
                         int64_t t, int64_t r, NpyArray* array) {
  const std::vector<int64_t> offsets =
      FrameOffsets(array->shape, spec.time_axis, spec.batch_axis, t, r);
  ASSERT_EQ(offsets.size(), frame.size());
  for (size_t i = 0; i < offsets.size(); ++i) array->data[offsets[i]] = frame[i];
}

// An array shaped like `like`, filled with NaN (so frames never written fail comparisons).
inline NpyArray NanArrayLike(const NpyArray& like) {
  NpyArray array;
  array.shape = like.shape;
  array.data.assign(like.data.size(), std::nanf(""));
  return array;
}

// The row-major multi-index of flat element `flat` of `shape`, as "[i,j,k]".
inline std::string IndexString(const std::vector<int64_t>& shape, int64_t flat) {
  std::vector<int64_t> index(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    index[d] = shape[d] == 0 ? 0 : flat % shape[d];
    flat = shape[d] == 0 ? 0 : flat / shape[d];
  }
  return absl::StrCat("[", absl::StrJoin(index, ","), "]");
}

// Shapes equal and |actual - expected| <= atol + rtol * |expected| everywhere (NaN never
// matches); on failure names the worst element and how many elements are off.
inline ::testing::AssertionResult AllClose(const NpyArray& actual, const NpyArray& expected,
                                           double atol = 1e-4, double rtol = 1e-4) {
  if (actual.shape != expected.shape) {
    return ::testing::AssertionFailure()
           << "shape [" << absl::StrJoin(actual.shape, ",") << "] != expected ["
           << absl::StrJoin(expected.shape, ",") << "]";
  }
  if (actual.data.size() != expected.data.size()) {
    return ::testing::AssertionFailure()
           << "element counts differ: " << actual.data.size() << " vs " << expected.data.size();
  }
  int64_t bad = 0;
  int64_t worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < actual.data.size(); ++i) {
    const double a = actual.data[i];
    const double e = expected.data[i];
    const double tolerance = atol + rtol * std::fabs(e);
    const double error = std::fabs(a - e);
    if (!(error <= tolerance)) {  // Also catches NaN.
      ++bad;
      const double excess = std::isnan(error) ? INFINITY : error - tolerance;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.data.size() << " elements differ by more than " << atol << " + "
         << rtol << "*|expected|; worst at " << IndexString(expected.shape, worst) << ": actual "
         << actual.data[worst] << ", expected " << expected.data[worst]
         << " (|diff| = " << std::fabs(actual.data[worst] - expected.data[worst]) << ")";
}

// Outputs of one Step: per item, output 0's frame; and the ready flags.
struct StepResult {
  std::vector<std::vector<float>> frames;
  std::vector<uint8_t> ready;
};

// Steps `batch` on `backend`. Output buffers are pre-filled with NaN.
inline absl::StatusOr<StepResult> StepBatch(Backend& backend, absl::Span<const StepItem> batch) {
  const streaming::Program& program = backend.program();
  std::vector<std::vector<float>> buffers(program.outputs.size());
  std::vector<float*> pointers;
  for (size_t j = 0; j < buffers.size(); ++j) {
    buffers[j].assign(std::max<size_t>(1, batch.size()) * program.outputs[j].frame_size,
                      std::nanf(""));
    pointers.push_back(buffers[j].data());
  }
  StepResult result;
  result.ready.assign(batch.size(), 2);  // Neither 0 nor 1: Step must write every flag.
  absl::Status status = backend.Step(batch, pointers, absl::MakeSpan(result.ready));
  if (!status.ok()) return status;
  const int64_t size = program.outputs.empty() ? 0 : program.outputs[0].frame_size;
  for (size_t i = 0; i < batch.size(); ++i) {
    result.frames.emplace_back(buffers[0].begin() + i * size, buffers[0].begin() + (i + 1) * size);
  }
  return result;
}

}  // namespace sluice::model_testing

#endif  // SLUICE_TESTS_RUNTIME_MODEL_TESTING_H_
