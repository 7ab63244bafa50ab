#include "server/api/oip_http.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "server/admin/http_server.h"
#include "server/api/oip_service.h"

namespace sluice::server {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// How long an HTTP inference call waits for its answer.
constexpr absl::Duration kHttpInferTimeout = absl::Minutes(5);
// How long it still waits once the server is draining or shutting down.
constexpr absl::Duration kHttpShutdownGrace = absl::Seconds(5);

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

void SetError(HttpResponse& response, const absl::Status& status) {
  response.SetJsonError(HttpStatusOf(status.code()), status.message());
}

std::string JsonString(absl::string_view s) { return absl::StrCat("\"", JsonEscape(s), "\""); }

std::string ParameterJson(const inference::InferParameter& param) {
  switch (param.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return param.bool_param() ? "true" : "false";
    case inference::InferParameter::kInt64Param:
      return absl::StrCat(param.int64_param());
    case inference::InferParameter::kUint64Param:
      return absl::StrCat(param.uint64_param());
    case inference::InferParameter::kDoubleParam:
      return absl::StrFormat("%.17g", param.double_param());
    case inference::InferParameter::kStringParam:
      return JsonString(param.string_param());
    default:
      return "null";
  }
}

absl::Status ToParameter(const std::string& name, const Value& value,
                         inference::InferParameter* param) {
  switch (value.kind_case()) {
    case Value::kBoolValue:
      param->set_bool_param(value.bool_value());
      return absl::OkStatus();
    case Value::kStringValue:
      param->set_string_param(value.string_value());
      return absl::OkStatus();
    case Value::kNumberValue: {
      const double number = value.number_value();
      // JSON numbers are doubles: integers are exact up to 2^53.
      if (number == std::floor(number) && std::fabs(number) <= 9007199254740992.0) {
        param->set_int64_param(static_cast<int64_t>(number));
      } else {
        param->set_double_param(number);
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", name, "' must be a bool, a number or a string"));
  }
}

absl::Status ToParameters(const Value& value, const std::string& where,
                          google::protobuf::Map<std::string, inference::InferParameter>* out) {
  if (value.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, "\"parameters\" must be an object"));
  }
  for (const auto& [name, field] : value.struct_value().fields()) {
    absl::Status status = ToParameter(name, field, &(*out)[name]);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// Appends the numbers of `value` (a number or nested lists of them), row-major.
absl::Status Flatten(const Value& value, const std::string& input,
                     google::protobuf::RepeatedField<float>* out) {
  if (value.kind_case() == Value::kNumberValue) {
    out->Add(static_cast<float>(value.number_value()));
    return absl::OkStatus();
  }
  if (value.kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", input, "': \"data\" must hold numbers (FP32)"));
  }
  for (const Value& item : value.list_value().values()) {
    absl::Status status = Flatten(item, input, out);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

const Value* Field(const Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it == object.fields().end() ? nullptr : &it->second;
}

absl::Status ParseInput(const Value& value, inference::ModelInferRequest* request) {
  if (value.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError("each of \"inputs\" must be an object");
  }
  const Struct& object = value.struct_value();
  auto* input = request->add_inputs();
  const Value* name = Field(object, "name");
  if (name == nullptr || name->kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError("an input has no \"name\" string");
  }
  input->set_name(name->string_value());
  const std::string where = absl::StrCat("input '", input->name(), "': ");
  const Value* datatype = Field(object, "datatype");
  if (datatype == nullptr || datatype->kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, "no \"datatype\" string"));
  }
  input->set_datatype(datatype->string_value());
  const Value* shape = Field(object, "shape");
  if (shape == nullptr || shape->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, "no \"shape\" list"));
  }
  for (const Value& dim : shape->list_value().values()) {
    if (dim.kind_case() != Value::kNumberValue ||
        dim.number_value() != std::floor(dim.number_value())) {
      return absl::InvalidArgumentError(absl::StrCat(where, "\"shape\" must hold integers"));
    }
    input->add_shape(static_cast<int64_t>(dim.number_value()));
  }
  if (const Value* parameters = Field(object, "parameters")) {
    absl::Status status = ToParameters(*parameters, where, input->mutable_parameters());
    if (!status.ok()) return status;
    if (input->parameters().count("binary_data_size") > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "binary tensor data is not supported; send \"data\" as JSON"));
    }
  }
  const Value* data = Field(object, "data");
  if (data == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, "no \"data\""));
  return Flatten(*data, input->name(), input->mutable_contents()->mutable_fp32_contents());
}

absl::Status DoParse(absl::string_view body, inference::ModelInferRequest* request) {
  Struct root;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), &root);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not a JSON object: ", parsed.ToString()));
  }
  if (const Value* id = Field(root, "id")) {
    if (id->kind_case() != Value::kStringValue) {
      return absl::InvalidArgumentError("\"id\" must be a string");
    }
    request->set_id(id->string_value());
  }
  if (const Value* parameters = Field(root, "parameters")) {
    absl::Status status = ToParameters(*parameters, "", request->mutable_parameters());
    if (!status.ok()) return status;
  }
  const Value* inputs = Field(root, "inputs");
  if (inputs == nullptr || inputs->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError("the body has no \"inputs\" list");
  }
  for (const Value& input : inputs->list_value().values()) {
    absl::Status status = ParseInput(input, request);
    if (!status.ok()) return status;
  }
  if (const Value* outputs = Field(root, "outputs")) {
    if (outputs->kind_case() != Value::kListValue) {
      return absl::InvalidArgumentError("\"outputs\" must be a list");
    }
    for (const Value& output : outputs->list_value().values()) {
      const Value* name = output.kind_case() == Value::kStructValue
                              ? Field(output.struct_value(), "name")
                              : nullptr;
      if (name == nullptr || name->kind_case() != Value::kStringValue) {
        return absl::InvalidArgumentError("each of \"outputs\" needs a \"name\" string");
      }
      request->add_outputs()->set_name(name->string_value());
    }
  }
  return absl::OkStatus();
}

std::string ProtoJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// The model named by a route's first capture, and the version of /versions/<v>/ routes.
absl::StatusOr<ServedModel*> RouteModel(const OipEngine& engine, const HttpRequest& request) {
  const std::string version = request.path_params.size() > 1 ? request.path_params[1] : "";
  return engine.FindModel(request.path_params.at(0), version);
}

void HandleInfer(OipEngine& engine, const HttpRequest& request, HttpResponse& response) {
  const std::string version = request.path_params.size() > 1 ? request.path_params[1] : "";
  absl::StatusOr<inference::ModelInferRequest> infer =
      ParseJsonInferRequest(request.body, request.path_params.at(0), version);
  if (!infer.ok()) {
    SetError(response, infer.status());
    return;
  }
  struct Outcome {
    absl::Notification done;
    absl::StatusOr<inference::ModelInferResponse> result;
  };
  auto outcome = std::make_shared<Outcome>();
  engine.Infer(
      *infer,
      [outcome](absl::StatusOr<inference::ModelInferResponse> result) {
        outcome->result = std::move(result);
        outcome->done.Notify();
      },
      nullptr, nullptr);
  // Waits in slices so that a server shutting down (whose schedulers may stop before the
  // answer comes) does not hold the HTTP thread, and with it AdminServer::Stop, for long.
  const absl::Time deadline = absl::Now() + kHttpInferTimeout;
  std::optional<absl::Time> shutdown_deadline;
  const std::atomic<bool>* draining = engine.context().draining;
  while (!outcome->done.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const absl::Time now = absl::Now();
    if (!shutdown_deadline && draining != nullptr && draining->load()) {
      shutdown_deadline = now + kHttpShutdownGrace;
    }
    if (shutdown_deadline && now > *shutdown_deadline) {
      SetError(response, absl::UnavailableError("the server is shutting down"));
      return;
    }
    if (now > deadline) {
      SetError(response, absl::DeadlineExceededError("no answer in time"));
      return;
    }
  }
  if (!outcome->result.ok()) {
    SetError(response, outcome->result.status());
    return;
  }
  response.SetJson(200, InferResponseJson(*outcome->result));
}

}  // namespace

absl::StatusOr<inference::ModelInferRequest> ParseJsonInferRequest(absl::string_view body,
                                                                   const std::string& model,
                                                                   const std::string& version) {
  inference::ModelInferRequest request;
  request.set_model_name(model);
  request.set_model_version(version);
  absl::Status status = DoParse(body, &request);
  if (!status.ok()) return status;
  return request;
}

std::string InferResponseJson(const inference::ModelInferResponse& response) {
  std::string json = absl::StrCat("{\"model_name\":", JsonString(response.model_name()),
                                  ",\"model_version\":", JsonString(response.model_version()),
                                  ",\"id\":", JsonString(response.id()));
  if (!response.parameters().empty()) {
    std::vector<std::string> params;
    for (const auto& [name, param] : response.parameters()) {
      params.push_back(absl::StrCat(JsonString(name), ":", ParameterJson(param)));
    }
    absl::StrAppend(&json, ",\"parameters\":{", absl::StrJoin(params, ","), "}");
  }
  absl::StrAppend(&json, ",\"outputs\":[");
  for (int j = 0; j < response.outputs_size(); ++j) {
    const auto& output = response.outputs(j);
    if (j > 0) json += ",";
    absl::StrAppend(&json, "{\"name\":", JsonString(output.name()),
                    ",\"datatype\":", JsonString(output.datatype()), ",\"shape\":[",
                    absl::StrJoin(output.shape(), ","), "],\"data\":[");
    const std::string& raw =
        j < response.raw_output_contents_size() ? response.raw_output_contents(j) : "";
    const size_t count = raw.size() / sizeof(float);
    for (size_t i = 0; i < count; ++i) {
      float v;
      std::memcpy(&v, raw.data() + i * sizeof(float), sizeof(float));
      if (i > 0) json += ",";
      // %.9g round-trips a float; JSON has no NaN or infinity.
      json += std::isfinite(v) ? absl::StrFormat("%.9g", v) : "null";
    }
    json += "]}";
  }
  json += "]}";
  return json;
}

absl::Status AddOipHttpRoutes(AdminServer* admin, std::shared_ptr<OipEngine> engine,
                              const std::string& version) {
  std::vector<std::string> extensions;
  for (const std::string& extension : OipExtensions()) extensions.push_back(JsonString(extension));
  const std::string metadata =
      absl::StrCat("{\"name\":\"sluice\",\"version\":", JsonString(version), ",\"extensions\":[",
                   absl::StrJoin(extensions, ","), "]}");
  absl::Status status = admin->AddGet(
      "/v2", [metadata](const HttpRequest&, HttpResponse& res) { res.SetJson(200, metadata); });
  for (const char* prefix : {"/v2/models/([^/]+)", "/v2/models/([^/]+)/versions/([^/]+)"}) {
    if (!status.ok()) return status;
    status = admin->AddPost(
        absl::StrCat(prefix, "/infer"),
        [engine](const HttpRequest& req, HttpResponse& res) { HandleInfer(*engine, req, res); });
    if (!status.ok()) return status;
    status = admin->AddGet(absl::StrCat(prefix, "/config"),
                           [engine](const HttpRequest& req, HttpResponse& res) {
                             absl::StatusOr<ServedModel*> model = RouteModel(*engine, req);
                             if (!model.ok()) return SetError(res, model.status());
                             res.SetJson(200, ProtoJson(ModelConfigOf(**model)));
                           });
    if (!status.ok()) return status;
    status = admin->AddGet(absl::StrCat(prefix, "/stats"),
                           [engine](const HttpRequest& req, HttpResponse& res) {
                             absl::StatusOr<ServedModel*> model = RouteModel(*engine, req);
                             if (!model.ok()) return SetError(res, model.status());
                             auto stats = engine->Statistics((*model)->name);
                             if (!stats.ok()) return SetError(res, stats.status());
                             res.SetJson(200, ProtoJson(*stats));
                           });
  }
  return status;
}

}  // namespace sluice::server
