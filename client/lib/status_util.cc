#include "client/lib/status_util.h"

#include <string>

namespace sluice::client {
namespace {

absl::StatusCode ToAbslCode(int code) {
  // google.rpc.Code, grpc::StatusCode and absl::StatusCode share the values 0..16.
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(ToAbslCode(static_cast<int>(status.error_code())), status.error_message());
}

absl::Status FromWireStatus(const v1::Status& status) {
  if (status.code() == 0) return absl::OkStatus();
  return absl::Status(ToAbslCode(status.code()), status.message());
}

}  // namespace sluice::client
