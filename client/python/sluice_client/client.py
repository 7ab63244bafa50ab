"""The sluice streaming client: a channel (SluiceClient) and one session per stream (SluiceStream).

One SluiceStream is one sluice.v1.Streaming/Stream call, i.e. one server session:

    Open{model}  ->  Opened{session_id, input/output specs, warmup_frames, ...}
    Frames{k frames, STACKED [k, *frame_shape] or the model's OFFLINE layout, optional tags}
                 ->  Outputs{first_seq, count, one tensor [count, *frame_shape] per output, tags}
    Reset{}      ->  ResetDone{next_seq}
    Close{}      ->  the remaining Outputs, then the stream ends with OK

The server numbers accepted frames from 0 in arrival order; output i of an Outputs belongs to
frame first_seq + i. A model with a warm-up of W frames emits nothing for the first W frames after
Open or Reset. A bad Frames request gets an in-stream Error (its frames get no seq; the session
goes on). Stream-ending errors (unknown model NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE on
shutdown, ...) end the call with that status and are raised as SluiceRpcError.

Threading: send() puts requests on a bounded queue that gRPC drains as the transport allows, so a
sender that outruns the server blocks in send() (the server stops reading a stream whose session
queue is full, and gRPC flow control does the rest). A reader thread takes responses off the call
as soon as they arrive and keeps them, in order, until they are iterated (outputs()/blocks()), so
"send everything, then read" cannot deadlock. Use one sending thread per stream.
"""
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

import grpc
import numpy as np

from . import frames as fr
from ._stubs import pb2, pb2_grpc
from .errors import (FrameRejectedError, SluiceError, SluiceProtocolError, SluiceRpcError,
                     StreamClosedError, from_rpc_error, status_code)

# The server sends messages up to its --max_message_bytes (16 MiB by default).
DEFAULT_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
)

_CLOSED = object()


class _Pipe:
    """A FIFO between threads, bounded (put blocks while full) or not (maxsize 0), closable:
    after close() put() refuses and get() returns _CLOSED once the items left are taken."""

    def __init__(self, maxsize=0):
        self._items = deque()
        self._maxsize = maxsize
        self._cv = threading.Condition()
        self._closed = False

    def put(self, item, timeout=None):
        """False when the pipe is closed; TimeoutError when it stayed full for `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._closed and self._maxsize and len(self._items) >= self._maxsize:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"the send queue stayed full for {timeout} s")
                self._cv.wait(remaining)
            if self._closed:
                return False
            self._items.append(item)
            self._cv.notify_all()
            return True

    def get(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._items and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no response within {timeout} s")
                self._cv.wait(remaining)
            if self._items:
                item = self._items.popleft()
                self._cv.notify_all()
                return item
            return _CLOSED

    def close(self, discard=False):
        with self._cv:
            self._closed = True
            if discard:
                self._items.clear()
            self._cv.notify_all()


@dataclass
class FrameOutput:
    """The outputs that input frame `seq` completed: one array per model output, each of that
    output's frame_shape (e.g. (1, 12)), and the frame's tag if the client sent tags."""
    seq: int
    values: Tuple[np.ndarray, ...]
    tag: Optional[bytes] = None

    @property
    def value(self):
        """The first (usually only) model output."""
        return self.values[0]


@dataclass
class OutputBlock:
    """One Outputs response: frames first_seq .. first_seq + count - 1, one array
    [count, *frame_shape] per model output, and the frames' tags (None when sent without)."""
    first_seq: int
    count: int
    values: Tuple[np.ndarray, ...]
    tags: Optional[List[bytes]] = None

    def frames(self):
        for i in range(self.count):
            yield FrameOutput(self.first_seq + i, tuple(v[i] for v in self.values),
                              self.tags[i] if self.tags else None)


@dataclass
class _End:
    error: Optional[SluiceError]


@dataclass
class StreamResult:
    """Everything a finished stream returned (SluiceStream.run / SluiceClient.run)."""
    model: str
    session_id: str
    backend: str
    seqs: np.ndarray                 # [n] int64, the seq of each output frame, ascending
    outputs: List[np.ndarray]        # per model output: [n, *frame_shape] float32
    tags: List[Optional[bytes]]      # per output frame
    errors: List[FrameRejectedError] = field(default_factory=list)
    frames_sent: int = 0
    messages_sent: int = 0
    seconds: float = 0.0

    @property
    def output(self):
        return self.outputs[0]

    def summary(self):
        rate = self.frames_sent / self.seconds if self.seconds > 0 else 0.0
        seqs = f" (seq {self.seqs[0]}..{self.seqs[-1]})" if len(self.seqs) else ""
        return (f"{self.model}: sent {self.frames_sent} frames in {self.messages_sent} messages, "
                f"received {len(self.seqs)} outputs{seqs}, {len(self.errors)} rejected requests, "
                f"{self.seconds:.3f} s ({rate:.0f} frames/s), session {self.session_id} on "
                f"{self.backend}")


class SluiceStream:
    """One streaming session. Made by SluiceClient.open(); use as a context manager.

        with client.open("tick_lstm") as s:        # Open, waits for Opened
            s.send(frames)                         # [k, *s.input.frame_shape], float32 or int16
            s.close()                              # Close; waits for the stream to end OK
            for out in s.outputs(): ...            # FrameOutput(seq, values, tag), in seq order

    or, sending from a background thread while the caller reads: `for out in s.stream(chunks)`,
    or all at once: `result = s.run(chunks)`.
    """

    def __init__(self, stub, model, *, session_tag="", max_queued_requests=8,
                 max_frames_per_message=256, max_message_bytes=4 << 20, open_timeout=30.0,
                 raise_on_error=True, metadata=None):
        if max_queued_requests < 1:
            raise ValueError("max_queued_requests must be at least 1")
        self.model = model
        self.raise_on_error = raise_on_error
        self.errors: List[FrameRejectedError] = []
        self.frames_sent = 0
        self.messages_sent = 0
        self.frames_received = 0
        self._max_frames = max(1, int(max_frames_per_message))
        self._max_bytes = max(1, int(max_message_bytes))
        self._requests = _Pipe(max_queued_requests)
        self._events = _Pipe()
        self._cv = threading.Condition()
        self._opened = None
        self._input = None
        self._outputs = ()
        self._expect_seq = 0
        self._resets_sent = 0
        self._resets_done = 0
        self._reset_next_seq = None
        self._close_sent = False
        self._cancelled = False
        self._done = False
        self._final_error = None
        self._started = time.monotonic()
        self._ended = None
        self._open_request = pb2.StreamRequest(
            open=pb2.Open(model=model, session_tag=session_tag))
        self._call = stub.Stream(self._request_iterator(), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name=f"sluice-{model}-reader",
                                        daemon=True)
        self._reader.start()
        with self._cv:
            self._cv.wait_for(lambda: self._opened is not None or self._done, open_timeout)
            opened, done, error = self._opened, self._done, self._final_error
        if opened is None:
            if not done:
                self.cancel()
                raise SluiceRpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                     f"no Opened within {open_timeout} s", f"open {model}")
            raise error or SluiceProtocolError(f"open {model}: the stream ended without Opened")

    # ---- what Opened said ----

    @property
    def session_id(self):
        return self._opened.session_id

    @property
    def session_tag(self):
        return self._opened.session_tag

    @property
    def input(self) -> fr.TensorSpec:
        """The model input's spec: frame_shape, offline_shape, time_axis."""
        return self._input

    @property
    def outputs_spec(self) -> Tuple[fr.TensorSpec, ...]:
        return self._outputs

    @property
    def warmup_frames(self):
        return int(self._opened.warmup_frames)

    @property
    def state_bytes(self):
        return int(self._opened.state_bytes)

    @property
    def backend(self):
        return self._opened.backend

    @property
    def done(self):
        """True once the stream has ended (OK or not)."""
        with self._cv:
            return self._done

    # ---- sending ----

    def send(self, frames, tags=None, *, offline=False, timeout=None):
        """Queues frames for sending, in order; blocks while the send queue is full.

        frames: float (sent as FLOAT32) or int16 (INT16 PCM, which the server scales by
        1/32768). By default stacked frames: [k, *frame_shape], one frame of frame_shape,
        [k, frame_size] or one flat frame. With offline=True, the model's offline layout
        (Opened.input.offline_shape) with any length on the time axis, sent as OFFLINE.
        tags: None, or one bytes/str per frame (echoed with the output the frame completes).
        Large sends are split into messages of at most max_frames_per_message frames.
        """
        spec = self._input
        if offline:
            count = fr.check_offline(frames, spec)
            axis = spec.time_axis
            layout = pb2.Frames.OFFLINE
        else:
            frames = fr.stack_frames(frames, spec)
            count = frames.shape[0]
            axis = 0
            layout = pb2.Frames.STACKED
        array, _ = fr.wire_array(frames)
        if count == 0:
            return
        tag_list = self._tags(tags, count)
        per_message = max(1, min(self._max_frames,
                                 self._max_bytes // (spec.frame_size * array.itemsize)))
        for start in range(0, count, per_message):
            stop = min(count, start + per_message)
            part = array if per_message >= count else np.take(array, range(start, stop), axis)
            request = pb2.StreamRequest(frames=pb2.Frames(
                tensor=fr.encode(part), layout=layout,
                tags=tag_list[start:stop] if tag_list else []))
            self._put(request, stop - start, timeout)

    def send_raw(self, data, shape, dtype=pb2.FLOAT32, *, layout=pb2.Frames.STACKED, tags=(),
                 timeout=None):
        """Sends one Frames request as given (raw little-endian bytes), without client-side
        checks: the server validates it and answers a bad one with an in-stream Error."""
        request = pb2.StreamRequest(frames=pb2.Frames(
            tensor=pb2.Tensor(dtype=dtype, shape=list(shape), data=bytes(data)), layout=layout,
            tags=[t.encode() if isinstance(t, str) else bytes(t) for t in tags]))
        self._put(request, 0, timeout)

    def reset(self, wait=True, timeout=30.0):
        """Sends Reset: the session's state goes back to zero (warm-up restarts), numbering
        continues. With wait=True returns ResetDone.next_seq (every output of the frames sent
        before has been received by then)."""
        with self._cv:
            self._resets_sent += 1
            want = self._resets_sent
        self._put(pb2.StreamRequest(reset=pb2.Reset()), 0, None)
        if not wait:
            return None
        with self._cv:
            if not self._cv.wait_for(lambda: self._resets_done >= want or self._done, timeout):
                raise TimeoutError(f"no ResetDone within {timeout} s")
            if self._resets_done < want:
                raise self._final_error or StreamClosedError("the stream ended before ResetDone")
            return self._reset_next_seq

    def close(self, wait=True, timeout=None):
        """Sends Close (once): the server answers every frame sent before it, then ends the
        stream with OK. With wait=True waits for that end and raises its error, if any. The
        outputs stay available to outputs()/blocks()."""
        with self._cv:
            send = not self._close_sent and not self._done
            self._close_sent = True
        if send:
            self._requests.put(pb2.StreamRequest(close=pb2.Close()))
            self._requests.close()
        if not wait:
            return
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise TimeoutError(f"the stream did not end within {timeout} s of Close")
        with self._cv:
            error = self._final_error
        if error is not None and not self._cancelled:
            raise error

    def cancel(self):
        """Cancels the call: the server drops the session's queued frames."""
        with self._cv:
            self._cancelled = True
        self._requests.close(discard=True)
        self._call.cancel()

    # ---- receiving ----

    def blocks(self, timeout=None):
        """Yields each Outputs response as an OutputBlock, in seq order, until the stream ends.
        Raises the stream-ending error (SluiceRpcError), and, with raise_on_error, an in-stream
        FrameRejectedError where it arrived (they are always collected in .errors too).
        `timeout` bounds the wait for each response."""
        while True:
            event = self._events.get(timeout)
            if event is _CLOSED:
                return
            if isinstance(event, OutputBlock):
                yield event
            elif isinstance(event, FrameRejectedError):
                if self.raise_on_error:
                    raise event
            elif isinstance(event, _End):
                self._events.close()
                if event.error is not None and not self._cancelled:
                    raise event.error
                return

    def outputs(self, timeout=None):
        """Yields a FrameOutput per output frame, in seq order (see blocks())."""
        for block in self.blocks(timeout):
            yield from block.frames()

    __iter__ = outputs

    def stream_blocks(self, chunks: Iterable, close=True):
        """Sends `chunks` from a background thread while the caller reads: each chunk is frames
        or a (frames, tags) pair, passed to send(); then Close (unless close=False). Yields the
        OutputBlocks as they arrive. An exception of the sender (e.g. a bad file) cancels the
        stream and is raised here."""
        failure = []

        def sender():
            try:
                for chunk in chunks:
                    if isinstance(chunk, tuple):
                        self.send(*chunk)
                    else:
                        self.send(chunk)
                if close:
                    self.close(wait=False)
            except BaseException as e:  # noqa: BLE001 (handed to the reading thread)
                failure.append(e)
                self.cancel()

        thread = threading.Thread(target=sender, name=f"sluice-{self.model}-sender", daemon=True)
        thread.start()
        try:
            for block in self.blocks():
                yield block
        except SluiceError:
            if failure:
                thread.join()
                raise failure[0]
            raise
        finally:
            if thread.is_alive() and not failure:
                # The caller stopped reading early: stop the sender.
                if not self.done:
                    self.cancel()
            thread.join()
        if failure:
            raise failure[0]

    def stream(self, chunks: Iterable, close=True):
        """Like stream_blocks(), one FrameOutput per output frame."""
        for block in self.stream_blocks(chunks, close):
            yield from block.frames()

    def run(self, chunks: Iterable):
        """Streams `chunks` (see stream_blocks), closes, and returns a StreamResult."""
        return self._collect(self.stream_blocks(chunks))

    def collect(self):
        """Reads every remaining output into a StreamResult (after close(), or with frames sent
        from another thread)."""
        return self._collect(self.blocks())

    def _collect(self, blocks):
        seqs, tags = [], []
        values = [[] for _ in self._outputs]
        for block in blocks:
            seqs.append(np.arange(block.first_seq, block.first_seq + block.count, dtype=np.int64))
            for j, v in enumerate(block.values):
                values[j].append(v)
            tags.extend(block.tags if block.tags else [None] * block.count)
        outputs = [np.concatenate(v) if v else np.zeros((0,) + spec.frame_shape, np.float32)
                   for v, spec in zip(values, self._outputs)]
        with self._cv:
            ended = self._ended if self._ended is not None else time.monotonic()
        return StreamResult(
            model=self._opened.model, session_id=self.session_id, backend=self.backend,
            seqs=np.concatenate(seqs) if seqs else np.zeros(0, np.int64), outputs=outputs,
            tags=tags, errors=list(self.errors), frames_sent=self.frames_sent,
            messages_sent=self.messages_sent, seconds=ended - self._started)

    # ---- context manager ----

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if not self.done:
                self.cancel()
            return False
        self.close()
        return False

    # ---- internals ----

    @staticmethod
    def _tags(tags, count):
        if tags is None:
            return None
        out = [t.encode() if isinstance(t, str) else bytes(t) for t in tags]
        if len(out) != count:
            raise ValueError(f"{len(out)} tags for {count} frames (send none or one each)")
        return out

    def _put(self, request, frames, timeout):
        with self._cv:
            if self._done:
                raise self._final_error or StreamClosedError("the stream has ended")
            if self._close_sent:
                raise StreamClosedError("send after close()")
        if not self._requests.put(request, timeout):
            with self._cv:
                raise self._final_error or StreamClosedError("the stream has ended")
        with self._cv:
            self.frames_sent += frames
            if request.HasField("frames"):
                self.messages_sent += 1

    def _request_iterator(self):
        # Runs on gRPC's request-consuming thread; it takes the next request only once the
        # previous one was handed to the transport, so the bounded pipe fills when the server
        # stops reading.
        yield self._open_request
        while True:
            request = self._requests.get()
            if request is _CLOSED:
                return
            yield request
            if request.HasField("close"):
                return

    def _read(self):
        error = None
        try:
            for response in self._call:
                self._handle(response)
            if self._opened is None:
                error = SluiceProtocolError(f"{self.model}: the stream ended before Opened")
        except grpc.RpcError as e:
            error = from_rpc_error(e, f"stream on {self.model}")
        except SluiceError as e:
            error = e
            self._call.cancel()
        except Exception as e:  # noqa: BLE001 (reported to the user, not lost in a thread)
            error = SluiceError(f"{self.model}: reading the stream failed: {e!r}")
            self._call.cancel()
        with self._cv:
            self._done = True
            self._final_error = error
            self._ended = time.monotonic()
            self._cv.notify_all()
        self._requests.close(discard=True)
        self._events.put(_End(error))

    def _handle(self, response):
        kind = response.WhichOneof("kind")
        if kind == "opened":
            opened = response.opened
            with self._cv:
                if self._opened is not None:
                    raise SluiceProtocolError("a second Opened")
                self._input = fr.TensorSpec.from_proto(opened.input)
                self._outputs = tuple(fr.TensorSpec.from_proto(o) for o in opened.outputs)
                # A fresh session numbers frames from 0 (newer servers say so in next_seq).
                self._expect_seq = (int(getattr(opened, "next_seq", 0))
                                    + int(opened.warmup_frames))
                self._opened = opened
                self._cv.notify_all()
        elif kind == "outputs":
            self._events.put(self._decode_outputs(response.outputs))
        elif kind == "error":
            e = response.error
            rejected = FrameRejectedError(status_code(e.status.code), e.status.message, e.seq)
            with self._cv:
                self.errors.append(rejected)
            self._events.put(rejected)
        elif kind == "reset_done":
            with self._cv:
                self._resets_done += 1
                self._reset_next_seq = int(response.reset_done.next_seq)
                self._expect_seq = self._reset_next_seq + int(self._opened.warmup_frames)
                self._cv.notify_all()
        else:
            raise SluiceProtocolError(f"an unknown response kind {kind!r}")

    def _decode_outputs(self, out):
        if self._opened is None:
            raise SluiceProtocolError("Outputs before Opened")
        count = int(out.count)
        if out.first_seq != self._expect_seq:
            raise SluiceProtocolError(f"Outputs start at seq {out.first_seq}; the next output "
                                      f"due is seq {self._expect_seq}")
        if len(out.tensors) != len(self._outputs):
            raise SluiceProtocolError(f"Outputs hold {len(out.tensors)} tensors; the model has "
                                      f"{len(self._outputs)} outputs")
        values = []
        for tensor, spec in zip(out.tensors, self._outputs):
            value = fr.decode(tensor)
            if value.shape != (count,) + spec.frame_shape:
                raise SluiceProtocolError(f"output '{spec.name}' has shape {list(value.shape)} "
                                          f"for {count} frames of {list(spec.frame_shape)}")
            values.append(value)
        if len(out.tags) not in (0, count):
            raise SluiceProtocolError(f"{len(out.tags)} tags for {count} output frames")
        self._expect_seq += count
        with self._cv:
            self.frames_received += count
        return OutputBlock(int(out.first_seq), count, tuple(values),
                           list(out.tags) if out.tags else None)


@dataclass
class ModelSummary:
    name: str
    ready: bool
    state: str


@dataclass
class ModelInfo:
    summary: ModelSummary
    input: Optional[fr.TensorSpec]
    outputs: Tuple[fr.TensorSpec, ...]
    warmup_frames: int
    state_bytes: int
    backend: str
    max_batch: int
    sessions_active: int
    program: str


class SluiceClient:
    """A channel to a sluice server (insecure by default; pass grpc credentials for TLS)."""

    def __init__(self, target="127.0.0.1:8001", *, credentials=None, options=(), channel=None):
        self.target = target
        opts = list(DEFAULT_CHANNEL_OPTIONS) + list(options)
        if channel is not None:
            self.channel = channel
        elif credentials is not None:
            self.channel = grpc.secure_channel(target, credentials, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.stub = pb2_grpc.StreamingStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def wait_ready(self, timeout=10.0):
        """Waits until the channel is connected (raises SluiceRpcError otherwise)."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise SluiceRpcError(grpc.StatusCode.UNAVAILABLE,
                                 f"no connection to {self.target} within {timeout} s") from None

    def list_models(self, timeout=10.0):
        try:
            response = self.stub.ListModels(pb2.ListModelsRequest(), timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, "ListModels") from None
        return [ModelSummary(m.name, m.ready, m.state) for m in response.models]

    def model_info(self, name, timeout=10.0):
        try:
            r = self.stub.ModelInfo(pb2.ModelInfoRequest(name=name), timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, f"ModelInfo {name}") from None
        return ModelInfo(
            summary=ModelSummary(r.summary.name, r.summary.ready, r.summary.state),
            input=fr.TensorSpec.from_proto(r.input) if r.HasField("input") else None,
            outputs=tuple(fr.TensorSpec.from_proto(o) for o in r.outputs),
            warmup_frames=int(r.warmup_frames), state_bytes=int(r.state_bytes),
            backend=r.backend, max_batch=int(r.max_batch),
            sessions_active=int(r.sessions_active), program=r.program)

    def open(self, model, **kwargs) -> SluiceStream:
        """Opens a session on `model` (see SluiceStream for the keyword arguments) and returns
        once Opened arrived; an unknown model raises ModelNotFoundError."""
        return SluiceStream(self.stub, model, **kwargs)

    def run(self, model, chunks: Iterable, **kwargs) -> StreamResult:
        """Opens a session, streams `chunks`, closes, and returns everything it got back."""
        with self.open(model, **kwargs) as stream:
            return stream.run(chunks)
