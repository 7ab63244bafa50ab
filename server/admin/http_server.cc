#include "server/admin/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <regex>
#include <set>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"

namespace sluice::server {
namespace {

// Bounds a request body (the OIP JSON inference requests are the large ones).
constexpr size_t kMaxRequestBodyBytes = size_t{64} << 20;

constexpr char kTextPlain[] = "text/plain; charset=utf-8";
constexpr char kPrometheusText[] = "text/plain; version=0.0.4; charset=utf-8";

// Replaces cpp-httplib's default socket options, which set SO_REUSEPORT on Linux: with it a second
// server could bind a port that is already being served and silently share its connections.
// SO_REUSEADDR alone still lets a restarted server rebind a port whose old connections are in
// TIME_WAIT, but not one that another socket is listening on.
void SetListenSocketOptions(int sock) {
  const int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

}  // namespace

struct AdminServer::Route {
  std::string method;  // "GET" or "POST"
  std::string pattern;
  std::regex regex;
  std::shared_ptr<const Handler> handler;  // Shared so Dispatch() can call it without the lock.
};

std::string JsonEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;  // UTF-8 passes through unchanged.
        }
    }
  }
  return out;
}

absl::string_view HttpRequest::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return {};
}

std::optional<absl::string_view> HttpRequest::QueryParam(absl::string_view name) const {
  for (const auto& [key, value] : query_params) {
    if (key == name) return absl::string_view(value);
  }
  return std::nullopt;
}

void HttpResponse::SetJson(int code, std::string json) {
  status = code;
  body = std::move(json);
  content_type = "application/json";
}

void HttpResponse::SetJsonError(int code, absl::string_view message) {
  SetJson(code, absl::StrCat("{\"error\":\"", JsonEscape(message), "\"}"));
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& host, int port,
                                                                AdminHooks hooks) {
  for (const auto& [name, set] : {std::pair{"readiness", static_cast<bool>(hooks.readiness)},
                                  std::pair{"metrics_text", static_cast<bool>(hooks.metrics_text)},
                                  std::pair{"model_json", static_cast<bool>(hooks.model_json)},
                                  std::pair{"model_ready", static_cast<bool>(hooks.model_ready)}}) {
    if (!set) return absl::InvalidArgumentError(absl::StrCat("AdminHooks::", name, " is not set"));
  }
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin HTTP port ", port, " is not in 0..65535"));
  }

  auto server = absl::WrapUnique(new AdminServer(std::move(hooks)));
  AdminServer* const self = server.get();
  httplib::Server& http = *server->server_;

  http.set_socket_options(SetListenSocketOptions);
  http.set_payload_max_length(kMaxRequestBodyBytes);
  http.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("admin HTTP {} {}: handler threw: {}", req.method, req.path, what);
        res.status = 500;
        res.set_content(absl::StrCat("{\"error\":\"", JsonEscape(what), "\"}"), "application/json");
      });
  // All routing is ours (Dispatch), so routes can be added while serving, and a known path with
  // the wrong method can answer 405 rather than cpp-httplib's 404. `self` outlives the handlers:
  // Stop(), at the latest in ~AdminServer(), joins every HTTP thread.
  const auto dispatch = [self](const httplib::Request& req, httplib::Response& res) {
    self->Dispatch(req, res);
  };
  // cpp-httplib sends HEAD to the GET handlers (and drops the body).
  http.Get(".*", dispatch);
  http.Post(".*", dispatch);
  http.Put(".*", dispatch);
  http.Patch(".*", dispatch);
  http.Delete(".*", dispatch);
  http.Options(".*", dispatch);

  // bind_to_*() also listen(), so connections queue from here on.
  errno = 0;
  int bound = -1;
  if (port == 0) {
    bound = http.bind_to_any_port(host);
  } else if (http.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound < 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat("admin HTTP server cannot listen on ", host, ":",
                                               port, err != 0 ? ": " : "",
                                               err != 0 ? std::strerror(err) : ""));
  }
  server->port_ = bound;

  server->listen_thread_ = std::thread([self] {
    self->server_->listen_after_bind();
    self->listen_returned_.store(true);
  });
  // cpp-httplib's stop() does nothing until the accept loop has marked itself running, so wait
  // for that: after it, Stop() is sure to end the loop. (No condition to wait on is exposed.)
  while (!http.is_running() && !server->listen_returned_.load()) {
    absl::SleepFor(absl::Microseconds(50));
  }
  if (server->listen_returned_.load()) {
    return absl::InternalError(
        absl::StrCat("admin HTTP server on ", host, ":", bound, " stopped as soon as it started"));
  }
  spdlog::info("admin HTTP server listening on {}:{}", host, bound);
  return server;
}

AdminServer::AdminServer(AdminHooks hooks)
    : hooks_(std::move(hooks)), server_(std::make_unique<httplib::Server>()) {
  AddBuiltinRoutes();
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Stop() {
  absl::MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  server_->stop();  // Closes the listening socket; the accept loop then drains the thread pool.
  if (listen_thread_.joinable()) listen_thread_.join();
  if (port_ != 0) spdlog::info("admin HTTP server on port {} stopped", port_);
}

absl::Status AdminServer::AddGet(const std::string& pattern, Handler handler) {
  return AddRoute("GET", pattern, std::move(handler));
}

absl::Status AdminServer::AddPost(const std::string& pattern, Handler handler) {
  return AddRoute("POST", pattern, std::move(handler));
}

absl::Status AdminServer::AddRoute(const std::string& method, const std::string& pattern,
                                   Handler handler) {
  Route route;
  route.method = method;
  route.pattern = pattern;
  try {
    route.regex = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "route pattern \"", pattern, "\" is not a valid regular expression: ", e.what()));
  }
  route.handler = std::make_shared<const Handler>(std::move(handler));
  absl::MutexLock lock(&routes_mu_);
  routes_.push_back(std::move(route));
  return absl::OkStatus();
}

void AdminServer::AddBuiltinRoutes() {
  // The patterns are constant and valid, so these cannot fail.
  (void)AddGet("/healthz", [](const HttpRequest&, HttpResponse& res) {
    res.body = "ok";
    res.content_type = kTextPlain;
  });
  (void)AddGet("/readyz", [this](const HttpRequest&, HttpResponse& res) {
    Readiness r = hooks_.readiness();
    res.status = r.ready ? 200 : 503;
    res.body = r.detail.empty() ? (r.ready ? "ready" : "not ready") : std::move(r.detail);
    res.content_type = kTextPlain;
  });
  (void)AddGet("/metrics", [this](const HttpRequest&, HttpResponse& res) {
    res.body = hooks_.metrics_text();
    res.content_type = kPrometheusText;
  });
  (void)AddGet("/v2/health/live", [](const HttpRequest&, HttpResponse& res) { res.status = 200; });
  (void)AddGet("/v2/health/ready", [this](const HttpRequest&, HttpResponse& res) {
    res.status = hooks_.readiness().ready ? 200 : 400;
  });
  (void)AddGet("/v2/models/([^/]+)", [this](const HttpRequest& req, HttpResponse& res) {
    const std::string& model = req.path_params[0];
    std::optional<std::string> json = hooks_.model_json(model);
    if (!json.has_value()) {
      res.SetJsonError(404, absl::StrCat("unknown model '", model, "'"));
      return;
    }
    res.SetJson(200, *std::move(json));
  });
  (void)AddGet("/v2/models/([^/]+)/ready", [this](const HttpRequest& req, HttpResponse& res) {
    const std::string& model = req.path_params[0];
    const std::optional<bool> ready = hooks_.model_ready(model);
    if (!ready.has_value()) {
      res.SetJsonError(404, absl::StrCat("unknown model '", model, "'"));
      return;
    }
    res.status = *ready ? 200 : 400;
  });
}

bool AdminServer::IsPublic(const std::string& path) const {
  // Probes must work for orchestrators that hold no token.
  if (path == "/healthz" || path == "/readyz" || absl::StartsWith(path, "/v2/health/")) return true;
  return path == "/metrics" && hooks_.metrics_public;
}

void AdminServer::Dispatch(const httplib::Request& req, httplib::Response& res) {
  const std::string method = req.method == "HEAD" ? "GET" : req.method;
  HttpRequest request;
  std::shared_ptr<const Handler> handler;
  std::set<std::string> allowed;  // Methods of the routes whose pattern matches the path.
  {
    absl::ReaderMutexLock lock(&routes_mu_);
    for (const Route& route : routes_) {
      std::smatch match;
      if (!std::regex_match(req.path, match, route.regex)) continue;
      if (route.method != method) {
        allowed.insert(route.method);
        continue;
      }
      handler = route.handler;
      for (size_t i = 1; i < match.size(); ++i) request.path_params.push_back(match[i].str());
      break;
    }
  }

  HttpResponse response;
  absl::Status auth = absl::OkStatus();
  if (handler != nullptr && hooks_.authorize && !IsPublic(req.path)) {
    auth = hooks_.authorize(req.get_header_value("Authorization"));
  }
  if (!auth.ok()) {
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    response.SetJsonError(401, auth.message());
  } else if (handler != nullptr) {
    request.method = req.method;
    request.path = req.path;
    request.query_params.assign(req.params.begin(), req.params.end());
    request.headers.assign(req.headers.begin(), req.headers.end());
    request.body = req.body;
    (*handler)(request, response);
  } else if (allowed.empty()) {
    response.SetJsonError(404, absl::StrCat("no route for ", req.method, " ", req.path));
  } else {
    if (allowed.count("GET") != 0) allowed.insert("HEAD");
    response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
    response.SetJsonError(405, absl::StrCat("method ", req.method, " is not allowed on ", req.path,
                                            " (allowed: ", absl::StrJoin(allowed, ", "), ")"));
  }

  res.status = response.status;
  for (const auto& [key, value] : response.headers) res.set_header(key, value);
  if (!response.body.empty()) {
    res.set_content(response.body,
                    response.content_type.empty() ? kTextPlain : response.content_type);
  }
}

}  // namespace sluice::server
