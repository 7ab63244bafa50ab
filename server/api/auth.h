// Bearer-token authentication for the gRPC services and the admin HTTP routes that do model work.
// Tokens come from a file (--auth_token_file): one token per line; blank lines and lines starting
// with '#' are ignored, so a token can be rotated by listing the old and the new one.
#ifndef SLUICE_SERVER_API_AUTH_H_
#define SLUICE_SERVER_API_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::server {

// Immutable after construction, so thread-safe.
class TokenAuthenticator {
 public:
  // Reads the token file. NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it holds no
  // token.
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);
  explicit TokenAuthenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  // Checks an "authorization" header value ("Bearer <token>"). UNAUTHENTICATED when it is
  // missing, malformed or names no known token.
  absl::Status Check(absl::string_view authorization) const;

 private:
  std::vector<std::string> tokens_;
};

// Checks the call's "authorization" metadata; OK when `auth` is null (authentication off).
absl::Status Authorize(const TokenAuthenticator* auth, const grpc::CallbackServerContext& context);

// A bidi reactor that ends its call at once with `status` (a stream refused before any work).
template <typename Request, typename Response>
class RefusingBidiReactor final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusingBidiReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_AUTH_H_
