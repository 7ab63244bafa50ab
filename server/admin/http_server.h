// The HTTP admin endpoint (default port 8000): health and readiness probes, Prometheus metrics,
// and the Open Inference Protocol (KServe v2) REST health and model metadata routes. Other
// modules add routes (e.g. the OIP JSON inference endpoint) with AddGet()/AddPost().
//
// Built-in routes:
//   GET /healthz                  200 "ok" while the process serves HTTP.
//   GET /readyz                   200 with Readiness::detail ("ready", "degraded: <why>"), or 503
//                                 with it ("<why not>"), as text/plain.
//   GET /metrics                  200, AdminHooks::metrics_text(), "text/plain; version=0.0.4".
//   GET /v2/health/live           200, empty body.
//   GET /v2/health/ready          200 when Readiness::ready, else 400; empty body. The OIP says a
//                                 health API answers 200 for true and 4xx for false (Triton uses
//                                 400); /readyz is the one with 503 and a reason.
//   GET /v2/models/<name>         200 with AdminHooks::model_json(name) as application/json, or
//                                 404 {"error": "..."} when it returns nullopt.
//   GET /v2/models/<name>/ready   200 when model_ready(name) is true, 400 when false (empty body,
//                                 as above), 404 {"error": "..."} when nullopt.
// A path no route matches answers 404 {"error": "..."}; a path some route matches with another
// method answers 405 with an Allow header. HEAD is answered by the GET route, without the body.
#ifndef SLUICE_SERVER_ADMIN_HTTP_SERVER_H_
#define SLUICE_SERVER_ADMIN_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace sluice::server {

// What /readyz and /v2/health/ready report.
struct Readiness {
  bool ready = false;
  // Text for /readyz: when ready "ready" or "degraded: <why>"; when not ready, why not. An empty
  // detail is rendered as "ready" / "not ready".
  std::string detail;
};

// How the admin server reads the rest of the server's state. Every hook must be set, and each is
// called on the admin server's HTTP threads, possibly concurrently with itself, so each must be
// thread-safe and quick (a probe or scrape waits on it). Hooks are not called after Stop()
// returns.
struct AdminHooks {
  std::function<Readiness()> readiness;
  std::function<std::string()> metrics_text;  // e.g. Metrics::RenderPrometheus
  // The OIP model metadata JSON object for a model, or nullopt if there is no such model.
  std::function<std::optional<std::string>(const std::string& model)> model_json;
  // Whether a model is ready to serve, or nullopt if there is no such model.
  std::function<std::optional<bool>(const std::string& model)> model_ready;
  // Optional: checks an "Authorization" header value. When set, every route except the health
  // probes (/healthz, /readyz, /v2/health/*) and, if metrics_public, /metrics answers 401 unless
  // it returns OK.
  std::function<absl::Status(absl::string_view authorization)> authorize;
  bool metrics_public = true;
};

// One HTTP request as a route handler sees it. Valid only during the handler call.
struct HttpRequest {
  std::string method;  // "GET", "POST", ...; "HEAD" reaches a GET route as "HEAD"
  std::string path;    // URL-decoded, without the query string
  // The route pattern's capture groups in order: "/v2/models/([^/]+)/infer" -> {"<name>"}.
  std::vector<std::string> path_params;
  std::vector<std::pair<std::string, std::string>> query_params;  // URL-decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;       // names as sent
  absl::string_view body;  // points into the server's buffer; copy it to keep it

  // The first header named `name` (case-insensitive), or "" if there is none.
  absl::string_view Header(absl::string_view name) const;
  // The first query parameter named `name` (case-sensitive), or nullopt.
  std::optional<absl::string_view> QueryParam(absl::string_view name) const;
};

// What a route handler answers. The defaults are a 200 with an empty body.
struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type;                                  // ignored when body is empty
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers

  // Sets status, body and content type "application/json".
  void SetJson(int code, std::string json);
  // Sets status and the body {"error": "<message>"} (message JSON-escaped), as the OIP error
  // object.
  void SetJsonError(int code, absl::string_view message);
};

// Escapes `s` for use inside a JSON string literal (quotes not included).
std::string JsonEscape(absl::string_view s);

// The admin HTTP server (cpp-httplib, its own thread pool). Thread-safe: AddGet(), AddPost(),
// port() and Stop() may be called from any thread at any time, including while requests are being
// served, except that a handler or hook must not call Stop() (Stop() waits for handlers to finish).
class AdminServer {
 public:
  using Handler = std::function<void(const HttpRequest& request, HttpResponse& response)>;

  // Binds `host`:`port` (port 0 picks a free ephemeral port, see port()) and serves on its own
  // threads until Stop(). Returns only once the socket is listening, so a client may connect at
  // once. InvalidArgumentError if a hook is unset or the port is outside 0..65535;
  // UnavailableError naming host:port if the address cannot be bound (port in use, host not
  // local). The listening socket does not use SO_REUSEPORT, so a second server on a busy port fails
  // rather than sharing it.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& host, int port,
                                                            AdminHooks hooks);

  // Stops serving (see Stop()).
  ~AdminServer();

  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The bound port (the ephemeral one when Start() was given 0).
  int port() const { return port_; }

  // Adds a route for `pattern`, an ECMAScript regular expression that must match the whole
  // URL-decoded path; its capture groups become HttpRequest::path_params. `handler` runs on the
  // HTTP threads, possibly concurrently with itself, and must be thread-safe. Routes may be added
  // before or after the server starts serving; a request sees the routes added before it was
  // dispatched. The first route added that matches the path and method wins, and the built-in
  // routes were added first, so they cannot be overridden. InvalidArgumentError if `pattern` is
  // not a valid regular expression.
  absl::Status AddGet(const std::string& pattern, Handler handler) ABSL_LOCKS_EXCLUDED(routes_mu_);
  absl::Status AddPost(const std::string& pattern, Handler handler) ABSL_LOCKS_EXCLUDED(routes_mu_);

  // Closes the listening socket, waits for in-flight requests to finish and joins the server
  // threads. Idempotent; a concurrent second call returns once the server has stopped.
  void Stop() ABSL_LOCKS_EXCLUDED(stop_mu_);

 private:
  struct Route;  // Defined in the .cc (holds a std::regex).

  explicit AdminServer(AdminHooks hooks);

  absl::Status AddRoute(const std::string& method, const std::string& pattern, Handler handler)
      ABSL_LOCKS_EXCLUDED(routes_mu_);
  void AddBuiltinRoutes();
  // Whether `path` is served without authorization (see AdminHooks::authorize).
  bool IsPublic(const std::string& path) const;
  // Routes one request (the single handler registered with cpp-httplib for every method).
  void Dispatch(const httplib::Request& req, httplib::Response& res)
      ABSL_LOCKS_EXCLUDED(routes_mu_);

  const AdminHooks hooks_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread listen_thread_;                 // Runs server_->listen_after_bind() until Stop().
  std::atomic<bool> listen_returned_{false};  // Set by listen_thread_ when it is about to exit.

  mutable absl::Mutex routes_mu_;
  std::vector<Route> routes_ ABSL_GUARDED_BY(routes_mu_);

  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_ADMIN_HTTP_SERVER_H_
