// Session: one bidirectional sluice.v1.Streaming/Stream call, i.e. one server-side session of a
// model. Open it, send frames (non-blocking; requests are written in order, one at a time, with
// gRPC flow control), and receive Outputs / Error / ResetDone responses either through a callback
// or with a blocking Next(). Built on the gRPC callback API (no thread per stream), so one
// process can run thousands of sessions.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Session> session, client->NewSession());
//   ASSIGN_OR_RETURN(v1::Opened opened, session->Open("cnn_tiny", "mic-3"));
//   RETURN_IF_ERROR(session->SendFrames(samples, /*count=*/16));
//   RETURN_IF_ERROR(session->Close());
//   while (true) {
//     ASSIGN_OR_RETURN(std::optional<v1::StreamResponse> response, session->Next());
//     if (!response) break;  // The server ended the stream with OK.
//     ...
//   }
#ifndef SLUICE_CLIENT_LIB_SESSION_H_
#define SLUICE_CLIENT_LIB_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "sluice/v1/streaming.grpc.pb.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::client {

// Trailing metadata the server sets on a Stream that ends with every accepted frame served: the
// seq the next frame would have had (Session::served_through()).
inline constexpr char kServedThroughTrailer[] = "sluice-next-seq";

// The kServedThroughTrailer value in a finished call's trailing metadata; std::nullopt when the
// server sent none (or not a number).
std::optional<uint64_t> ServedThroughFromTrailers(const grpc::ClientContext& context);

namespace internal {
class StreamCall;
}  // namespace internal

struct SessionOptions {
  // Callback mode: called for every response after Opened (outputs, error, reset_done), in stream
  // order, one call at a time, on a gRPC thread. It must not block; it may call SendFrames /
  // Reset / Close on this session (never destroy it). When unset, responses queue for Next().
  std::function<void(const v1::StreamResponse&)> on_response;
  // Called once, on a gRPC thread, when the stream has ended: OK after a Close, else the call's
  // status mapped 1:1 from its grpc::StatusCode. The same rules as on_response apply.
  std::function<void(const absl::Status&)> on_done;
  // Queue mode: reading from the server pauses while this many responses are unread, so gRPC
  // flow control slows the server down instead of buffering without bound.
  int max_queued_responses = 4096;
  // Deadline of the whole stream (gRPC deadline); infinite by default.
  absl::Duration stream_timeout = absl::InfiniteDuration();
  // Extra call metadata (StreamingClient adds "authorization" when it has a token).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Thread-safety: thread-safe. Sends from several threads are written in the order their calls
// return; Next() must be called from one thread at a time.
class Session {
 public:
  // Use StreamingClient::NewSession(). `stub` must outlive the session (StreamingClient keeps it).
  Session(v1::Streaming::Stub* stub, SessionOptions options);
  // Cancels the stream when it has not ended and waits until gRPC has finished with it (so no
  // callback runs after the destructor returns). Never destroy a session from its own callbacks.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sends Open and blocks until the server answers: the Opened info, the status of an Error
  // response, or the stream's status when the server ends it (e.g. NOT_FOUND for an unknown
  // model, RESOURCE_EXHAUSTED for too many sessions). DeadlineExceeded after `timeout`. Call once.
  absl::StatusOr<v1::Opened> Open(absl::string_view model, absl::string_view tag = "",
                                  absl::Duration timeout = absl::Seconds(30));
  // Resumes a detached server session (one opened with a resume token whose stream dropped
  // without Close) on this new stream instead of opening one: sends Open{resume_token,
  // last_output_seq, model} and blocks like Open(). The server replays every output after
  // `last_output_seq` (the seq of the last output the client received; unset = none received),
  // then new ones; Opened.resumed is true and Opened.next_seq is the seq the next frame sent gets,
  // so the client resends its frames from there on. `model` may be empty; if set it must be the
  // session's. Errors: UNAVAILABLE while the old stream is still closing (retry after a short
  // backoff), NOT_FOUND for an unknown or expired token, OUT_OF_RANGE when outputs after
  // `last_output_seq` are no longer buffered, INVALID_ARGUMENT for another model. Call once,
  // instead of Open().
  absl::StatusOr<v1::Opened> Resume(absl::string_view resume_token,
                                    std::optional<uint64_t> last_output_seq,
                                    absl::string_view model = "",
                                    absl::Duration timeout = absl::Seconds(30));
  // The Opened info of a successful Open() or Resume(); empty before.
  const v1::Opened& opened() const { return opened_; }

  // Queues `count` >= 1 frames for sending and returns without waiting. `frames` holds them
  // frame-major (count * FrameSize(opened().input) values, each frame in frame_shape order);
  // `layout` picks the wire encoding (STACKED sends the bytes as they are; OFFLINE transposes
  // them into the model's offline layout with the time dim = count). `tags` is empty or one per
  // frame; each comes back with the output its frame completes. FailedPrecondition before Open()
  // or Resume() succeeded or after Close(); InvalidArgument for a bad count or tag count; the
  // stream's status once it has ended.
  absl::Status SendFrames(const float* frames, int count, absl::Span<const std::string> tags = {},
                          v1::Frames::Layout layout = v1::Frames::STACKED);
  // INT16 PCM frames; a float model sees value / 32768.
  absl::Status SendFrames(const int16_t* frames, int count, absl::Span<const std::string> tags = {},
                          v1::Frames::Layout layout = v1::Frames::STACKED);
  // Queues a Frames request as is (no checks): for callers that build their own tensors.
  absl::Status SendRaw(v1::Frames frames);

  // Queues a Reset; the ResetDone response tells the seq the next frame gets.
  absl::Status Reset();
  // Queues a Close and half-closes the stream once every queued request is written. The server
  // then sends the remaining outputs and ends the stream with OK.
  absl::Status Close();
  // Cancels the stream now; it ends with CANCELLED. Never blocks.
  void Cancel();

  // Queue mode only. Blocks for the next response: returns it, or std::nullopt once the stream
  // ended with OK and every response was read. Errors: the stream's final status (mapped 1:1 from
  // gRPC) once it ended otherwise; DeadlineExceeded when nothing arrived within `timeout` (the
  // session goes on); FailedPrecondition in callback mode or before Open().
  absl::StatusOr<std::optional<v1::StreamResponse>> Next(
      absl::Duration timeout = absl::InfiniteDuration());

  // Blocks until the stream has ended and returns its final status (OK after a Close). Responses
  // not yet read stay readable with Next().
  absl::Status Finish();
  // Whether the stream has ended (Finish() would not block).
  bool done() const;
  // Once the stream has ended (also inside on_done): the seq the next frame would have had, when
  // the server ended the session with every frame it accepted stepped and every output sent
  // (trailing metadata kServedThroughTrailer: after a Close, a drain, or an error that dropped
  // nothing). Frames with a lower seq were served; the rest were not accepted and can be sent to
  // another server. std::nullopt before the end, or when frames may have been dropped (a cancel,
  // a broken link).
  std::optional<uint64_t> served_through() const;

 private:
  // Sends `open` as the first request and waits for the answer (Open and Resume).
  absl::StatusOr<v1::Opened> SendOpen(v1::Open open, absl::Duration timeout);
  absl::Status SendTyped(v1::DataType dtype, const void* frames, int count,
                         absl::Span<const std::string> tags, v1::Frames::Layout layout);

  // Shared with the gRPC reactor, which may outlive this object until gRPC is done with it.
  std::shared_ptr<internal::StreamCall> call_;
  std::atomic<bool> open_called_{false};
  std::atomic<bool> opened_ok_{false};  // Set (release) after opened_ is written.
  v1::Opened opened_;                   // Written once by Open()/Resume(), then read-only.
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_LIB_SESSION_H_
