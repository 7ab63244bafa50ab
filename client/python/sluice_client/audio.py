"""Audio feed: 16-bit PCM WAV files (stdlib `wave`) cut into model frames.

Two front ends, both causal and chunk-invariant (feeding the samples in any chunking gives the
same frames as feeding them at once):

* LogMel: what kws_cnn expects ("one frame = 40 log-mel features, 10 ms hop"). Frame t covers
  samples [t*hop, t*hop + win) with win = 25 ms and hop = 10 ms at the file's sample rate (400
  and 160 samples at 16 kHz), a periodic Hann window, an n_fft-point power spectrum (n_fft = the
  next power of two >= win), n_mels triangular filters spaced evenly on the HTK mel scale
  (2595 * log10(1 + f / 700)) between 20 Hz and Nyquist, and ln(energy + 1e-6). Samples are
  value / 32768. No dithering, pre-emphasis or normalisation; the first frame needs a full
  window (no padding), and a trailing partial window is not sent. n_mels is the model's frame
  size. sluice's bundled kws_cnn has seeded random weights, so its "keywords" mean nothing.
* Pcm: consecutive runs of frame_size samples, sent as INT16 frames unchanged (the server
  scales them by 1/32768): for models that take raw samples.
"""
import wave

import numpy as np


def read_wav(path):
    """(int16 samples of the first channel, sample rate) of a 16-bit PCM WAV file."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples; only 16-bit PCM WAV "
                             "is supported")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels())[:, 0].copy(), w.getframerate()


def wav_blocks(path, block_samples):
    """Reads a 16-bit PCM WAV incrementally: yields (int16 samples of the first channel, sample
    rate) blocks of block_samples samples (the last one may be shorter)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples; only 16-bit PCM WAV "
                             "is supported")
        channels, rate = w.getnchannels(), w.getframerate()
        while True:
            raw = w.readframes(block_samples)
            if not raw:
                return
            yield np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0].copy(), rate


def write_wav(path, samples, sample_rate=16000):
    """Writes int16 mono samples as a 16-bit PCM WAV file."""
    samples = np.asarray(samples, dtype="<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())


def mel_filterbank(sample_rate, n_fft, n_mels, fmin=20.0, fmax=None):
    """[n_mels, n_fft // 2 + 1] triangular filters on the HTK mel scale."""
    fmax = sample_rate / 2 if fmax is None else fmax

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


class LogMel:
    """Streaming log-mel front end: push(int16 samples) -> [n, n_mels] float32 frames."""

    def __init__(self, sample_rate, n_mels=40, win_ms=25.0, hop_ms=10.0, fmin=20.0,
                 floor=1e-6):
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.win = int(round(sample_rate * win_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.win) / self.win)
        self.filters = mel_filterbank(sample_rate, self.n_fft, n_mels, fmin)
        self.floor = floor
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_out = 0

    def push(self, samples):
        """Appends int16 samples; returns the frames whose window is now complete."""
        x = np.asarray(samples, dtype=np.float64) / 32768.0
        buf = np.concatenate([self._pending, x])
        n = 0 if buf.size < self.win else 1 + (buf.size - self.win) // self.hop
        if n == 0:
            self._pending = buf
            return np.zeros((0, self.n_mels), dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.win)[::self.hop][:n]
        power = np.abs(np.fft.rfft(windows * self.window, n=self.n_fft, axis=1)) ** 2
        feats = np.log(power @ self.filters.T + self.floor)
        self._pending = buf[n * self.hop:]
        self.frames_out += n
        return feats.astype(np.float32)

    def frame_time(self, index):
        """Start time (s) of frame `index`."""
        return index * self.hop / self.sample_rate


class Pcm:
    """Raw-sample front end: push(int16 samples) -> [n, frame_size] int16 frames."""

    def __init__(self, sample_rate, frame_size):
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        self.hop = frame_size
        self._pending = np.zeros(0, dtype=np.int16)
        self.frames_out = 0

    def push(self, samples):
        buf = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        n = buf.size // self.frame_size
        self._pending = buf[n * self.frame_size:]
        self.frames_out += n
        return buf[:n * self.frame_size].reshape(n, self.frame_size)

    def frame_time(self, index):
        return index * self.frame_size / self.sample_rate


def make_front_end(kind, sample_rate, frame_size):
    if kind == "logmel":
        return LogMel(sample_rate, n_mels=frame_size)
    if kind == "pcm":
        return Pcm(sample_rate, frame_size)
    raise ValueError(f"unknown front end {kind!r} (logmel or pcm)")


def wav_chunks(path, frame_shape, front_end="logmel", frames_per_chunk=10, tags=True):
    """Reads a WAV file incrementally and yields ([k, *frame_shape] frames, tags) chunks of about
    frames_per_chunk frames for SluiceStream.send/stream. Tags are the frames' start times in
    seconds ("0.130"). LogMel frames are float32 (FLOAT32), Pcm frames int16 (INT16)."""
    frame_size = int(np.prod(frame_shape))
    fe = None
    for samples, rate in wav_blocks(path, 4096):
        if fe is None:
            fe = make_front_end(front_end, rate, frame_size)
            block = frames_per_chunk * fe.hop
            buffered = []
        buffered.append(samples)
        pending = sum(b.size for b in buffered)
        if pending < block:
            continue
        out = fe.push(np.concatenate(buffered))
        buffered = []
        yield from _split(fe, out, frame_shape, frames_per_chunk, tags)
    if fe is not None and buffered:
        yield from _split(fe, fe.push(np.concatenate(buffered)), frame_shape, frames_per_chunk,
                          tags)


def _split(fe, frames, frame_shape, per_chunk, tags):
    first = fe.frames_out - len(frames)
    for start in range(0, len(frames), per_chunk):
        part = frames[start:start + per_chunk]
        t = [f"{fe.frame_time(first + start + i):.3f}" for i in range(len(part))] if tags else None
        yield part.reshape((len(part),) + tuple(frame_shape)), t


def wav_frames(path, frame_shape, front_end="logmel"):
    """All frames of a WAV file at once: [T, *frame_shape] (float32 log-mel or int16 PCM)."""
    samples, rate = read_wav(path)
    fe = make_front_end(front_end, rate, int(np.prod(frame_shape)))
    out = fe.push(samples)
    return out.reshape((len(out),) + tuple(frame_shape))
