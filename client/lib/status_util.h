// Conversions from gRPC and wire statuses to absl::Status (the codes are numerically identical,
// so every mapping is 1:1 and keeps the message).
#ifndef SLUICE_CLIENT_LIB_STATUS_UTIL_H_
#define SLUICE_CLIENT_LIB_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::client {

// grpc::StatusCode k -> absl::StatusCode k, same message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The status inside a stream's Error response (a google.rpc.Code value and a message).
// Codes outside the known range become kUnknown.
absl::Status FromWireStatus(const v1::Status& status);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_LIB_STATUS_UTIL_H_
