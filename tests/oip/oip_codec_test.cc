// Unit tests of the Open Inference Protocol codec (server/api/oip_codec.h): sequence parameters,
// request tensors in the offline layout (raw and typed contents) to frames, one InvalidArgument
// per kind of bad request, and stacked outputs back to the offline layout.
#include "server/api/oip_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/common/status_matchers.h"

namespace sluice::server {
namespace {

using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A conv-like model: input x [1, 2, -1] (time axis 2, frames [1, 2]); outputs y [1, 3, -1] and
// z [-1, 1, 1] (time axis 0).
streaming::Program ConvProgram() {
  streaming::Program program;
  program.input.name = "x";
  program.input.offline_shape = {1, 2, -1};
  program.input.time_axis = 2;
  program.input.batch_axis = 0;
  program.input.frame_shape = {1, 2};
  program.input.frame_size = 2;
  streaming::StreamSpec y;
  y.name = "y";
  y.offline_shape = {1, 3, -1};
  y.time_axis = 2;
  y.frame_shape = {1, 3};
  y.frame_size = 3;
  streaming::StreamSpec z;
  z.name = "z";
  z.offline_shape = {-1, 1, 1};
  z.time_axis = 0;
  z.frame_shape = {1, 1};
  z.frame_size = 1;
  program.outputs = {y, z};
  return program;
}

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

std::vector<float> Floats(const std::string& bytes) {
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// A request for ConvProgram with `frames` frames of raw data [1, 2, frames]: channel c of frame
// t is 10 * c + t.
inference::ModelInferRequest ConvRequest(int64_t frames) {
  inference::ModelInferRequest request;
  request.set_model_name("m");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  for (int64_t d : {int64_t{1}, int64_t{2}, frames}) input->add_shape(d);
  std::vector<float> data;
  for (int c = 0; c < 2; ++c) {
    for (int t = 0; t < frames; ++t) data.push_back(static_cast<float>(10 * c + t));
  }
  request.add_raw_input_contents(FloatBytes(data));
  return request;
}

void SetParam(inference::ModelInferRequest* request, const std::string& name,
              const inference::InferParameter& value) {
  (*request->mutable_parameters())[name] = value;
}

inference::InferParameter Int(int64_t v) {
  inference::InferParameter p;
  p.set_int64_param(v);
  return p;
}
inference::InferParameter Bool(bool v) {
  inference::InferParameter p;
  p.set_bool_param(v);
  return p;
}
inference::InferParameter Str(const std::string& v) {
  inference::InferParameter p;
  p.set_string_param(v);
  return p;
}

TEST(OipSequenceParams, NoIdIsAWholeSequence) {
  inference::ModelInferRequest request;
  ASSERT_OK_AND_ASSIGN(OipSequenceParams params, ParseSequenceParams(request));
  EXPECT_FALSE(params.has_id);
  SetParam(&request, "sequence_id", Int(0));
  ASSERT_OK_AND_ASSIGN(params, ParseSequenceParams(request));
  EXPECT_FALSE(params.has_id);
}

TEST(OipSequenceParams, NumericAndStringIds) {
  inference::ModelInferRequest request;
  SetParam(&request, "sequence_id", Int(42));
  SetParam(&request, "sequence_start", Bool(true));
  ASSERT_OK_AND_ASSIGN(OipSequenceParams params, ParseSequenceParams(request));
  EXPECT_TRUE(params.has_id);
  EXPECT_TRUE(params.start);
  EXPECT_FALSE(params.end);
  EXPECT_EQ(params.Display(), "42");

  inference::InferParameter big;
  big.set_uint64_param(18446744073709551615ull);
  SetParam(&request, "sequence_id", big);
  ASSERT_OK_AND_ASSIGN(OipSequenceParams large, ParseSequenceParams(request));
  EXPECT_EQ(large.IdParameter().uint64_param(), 18446744073709551615ull);

  SetParam(&request, "sequence_id", Str("abc"));
  SetParam(&request, "sequence_end", Bool(true));
  ASSERT_OK_AND_ASSIGN(OipSequenceParams text, ParseSequenceParams(request));
  EXPECT_TRUE(text.is_string);
  EXPECT_TRUE(text.end);
  EXPECT_NE(text.Key(), params.Key());
  // "42" the string and 42 the number are different sequences.
  SetParam(&request, "sequence_id", Str("42"));
  ASSERT_OK_AND_ASSIGN(OipSequenceParams forty_two, ParseSequenceParams(request));
  EXPECT_NE(forty_two.Key(), params.Key());
}

TEST(OipSequenceParams, BadParameters) {
  inference::ModelInferRequest request;
  SetParam(&request, "sequence_id", Int(-3));
  EXPECT_THAT(ParseSequenceParams(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  SetParam(&request, "sequence_id", Int(3));
  SetParam(&request, "sequence_start", Int(1));
  EXPECT_THAT(ParseSequenceParams(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be a bool")));
  inference::ModelInferRequest no_id;
  SetParam(&no_id, "sequence_end", Bool(true));
  EXPECT_THAT(ParseSequenceParams(no_id),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("need a non-zero")));
}

TEST(OipDecode, RawInputBecomesFramesInTimeOrder) {
  const streaming::Program program = ConvProgram();
  ASSERT_OK_AND_ASSIGN(OipDecoded decoded, DecodeInferRequest(ConvRequest(3), "m", program));
  ASSERT_EQ(decoded.frames.size(), 3u);
  EXPECT_THAT(decoded.frames[0], ElementsAre(0, 10));
  EXPECT_THAT(decoded.frames[2], ElementsAre(2, 12));
  EXPECT_THAT(decoded.outputs, ElementsAre(0, 1));
}

TEST(OipDecode, TypedContentsAndRequestedOutputs) {
  const streaming::Program program = ConvProgram();
  inference::ModelInferRequest request = ConvRequest(2);
  request.clear_raw_input_contents();
  for (float v : {0.f, 1.f, 10.f, 11.f}) {
    request.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
  }
  request.add_outputs()->set_name("z");
  ASSERT_OK_AND_ASSIGN(OipDecoded decoded, DecodeInferRequest(request, "m", program));
  EXPECT_THAT(decoded.frames[1], ElementsAre(1, 11));
  EXPECT_THAT(decoded.outputs, ElementsAre(1));
}

TEST(OipDecode, ZeroFramesIsAllowed) {
  ASSERT_OK_AND_ASSIGN(OipDecoded decoded, DecodeInferRequest(ConvRequest(0), "m", ConvProgram()));
  EXPECT_TRUE(decoded.frames.empty());
}

TEST(OipDecode, EachMistakeIsInvalidArgumentNamingIt) {
  const streaming::Program program = ConvProgram();
  auto expect = [&](const inference::ModelInferRequest& request, const std::string& needle) {
    EXPECT_THAT(DecodeInferRequest(request, "m", program),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(needle)))
        << needle;
  };
  inference::ModelInferRequest request = ConvRequest(2);
  request.mutable_inputs(0)->set_name("input");
  expect(request, "model m has no input 'input'; its input is 'x'");

  request = ConvRequest(2);
  request.mutable_inputs(0)->set_datatype("FP16");
  expect(request, "datatype FP16");

  request = ConvRequest(2);
  request.mutable_inputs(0)->set_shape(1, 3);
  expect(request, "has shape [1,3,2]; model m takes [1,2,-1]");

  request = ConvRequest(2);
  request.mutable_inputs(0)->set_shape(2, -1);
  expect(request, "has shape [1,2,-1]");

  request = ConvRequest(2);
  request.mutable_inputs(0)->add_shape(1);
  expect(request, "has shape [1,2,2,1]");

  request = ConvRequest(2);
  request.mutable_inputs(0)->set_shape(2, int64_t{1} << 60);  // Must not overflow.
  expect(request, "holds 16 bytes");

  request = ConvRequest(2);
  request.mutable_raw_input_contents(0)->pop_back();
  expect(request, "holds 15 bytes");

  request = ConvRequest(2);
  request.add_inputs()->set_name("x2");
  expect(request, "takes 1 input");

  request = ConvRequest(2);
  request.add_raw_input_contents("");
  expect(request, "raw_input_contents has 2 entries");

  request = ConvRequest(2);
  request.clear_raw_input_contents();
  request.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1.f);
  expect(request, "holds 1 fp32_contents values");

  request = ConvRequest(2);
  request.add_outputs()->set_name("w");
  expect(request, "no output 'w' (its outputs: 'y', 'z')");
}

TEST(OipResponse, StackedOutputsInTheOfflineLayout) {
  const streaming::Program program = ConvProgram();
  // Two frames: y frame t = {100t, 100t + 1, 100t + 2}; z frame t = {t}.
  const std::vector<std::vector<float>> stacked = {{0, 1, 2, 100, 101, 102}, {0, 1}};
  OipSequenceParams sequence;
  sequence.has_id = true;
  sequence.number = 9;
  const inference::ModelInferResponse response =
      MakeInferResponse("m", "r1", program, {0, 1}, stacked, 2, &sequence);
  EXPECT_EQ(response.model_name(), "m");
  EXPECT_EQ(response.model_version(), "1");
  EXPECT_EQ(response.id(), "r1");
  EXPECT_EQ(response.parameters().at("sequence_id").int64_param(), 9);
  ASSERT_EQ(response.outputs_size(), 2);
  EXPECT_EQ(response.outputs(0).name(), "y");
  EXPECT_EQ(response.outputs(0).datatype(), "FP32");
  EXPECT_THAT(response.outputs(0).shape(), ElementsAre(1, 3, 2));
  // [1, 3, T]: channel-major, time fastest.
  EXPECT_THAT(Floats(response.raw_output_contents(0)), ElementsAre(0, 100, 1, 101, 2, 102));
  EXPECT_THAT(response.outputs(1).shape(), ElementsAre(2, 1, 1));
  EXPECT_THAT(Floats(response.raw_output_contents(1)), ElementsAre(0, 1));
}

TEST(OipResponse, NoOutputsYetIsTZero) {
  const streaming::Program program = ConvProgram();
  const inference::ModelInferResponse response =
      MakeInferResponse("m", "", program, {0}, {{}}, 0, nullptr);
  EXPECT_THAT(response.outputs(0).shape(), ElementsAre(1, 3, 0));
  EXPECT_TRUE(response.raw_output_contents(0).empty());
  EXPECT_TRUE(response.parameters().empty());
}

}  // namespace
}  // namespace sluice::server
