// The one place where absl::Status becomes grpc::Status (codes map 1:1 by value).
#ifndef SLUICE_SERVER_COMMON_STATUS_UTIL_H_
#define SLUICE_SERVER_COMMON_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sluice::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_COMMON_STATUS_UTIL_H_
