"""Market-data feed: a CSV of ticks (one row per tick, with a header row) -> model frames.

Feature mode (the default; tick_lstm's 8 features per tick). Columns, by header name (case
insensitive; only `price` is required, a missing one counts as absent):

    time      seconds (any origin, e.g. epoch "1700000000.125") or ISO 8601; aliases timestamp, ts
    price     trade price (> 0)
    size      trade size; aliases qty, quantity, volume
    bid, ask  best quotes at the tick (> 0)
    bid_size, ask_size
    side      buy/b/1/+1 -> +1, sell/s/-1 -> -1, anything else 0

Each tick t becomes, in this order (bp = basis points, ln = natural log; mid = (bid + ask) / 2,
or the price without quotes):

    0 ret_bp      1e4 * ln(price_t / price_{t-1})          0 on the first tick
    1 log_size    ln(1 + size)
    2 log_dt      ln(1 + max(0, time_t - time_{t-1}))      0 on the first tick or without time
    3 spread_bp   1e4 * (ask - bid) / mid                  0 without quotes
    4 imbalance   (bid_size - ask_size) / (bid_size + ask_size), 0 when both are 0
    5 side        +1 / -1 / 0
    6 px_mid_bp   1e4 * (price - mid) / mid
    7 mid_ret_bp  1e4 * ln(mid_t / mid_{t-1})              0 on the first tick

Column mode (`columns=[...]`): those columns' values, in that order, are the frame as they are
(the count must be the model's frame size). Either way the frame's tag is the row's time text
(or "row<N>", the 1-based data row, without a time column).
The features are computed causally (tick t uses ticks <= t only).
"""
import csv
import math
from datetime import datetime

import numpy as np

FEATURES = ("ret_bp", "log_size", "log_dt", "spread_bp", "imbalance", "side", "px_mid_bp",
            "mid_ret_bp")
ALIASES = {
    "time": ("time", "timestamp", "ts"),
    "price": ("price", "px", "last"),
    "size": ("size", "qty", "quantity", "volume"),
    "bid": ("bid", "bid_price"),
    "ask": ("ask", "ask_price"),
    "bid_size": ("bid_size", "bid_qty"),
    "ask_size": ("ask_size", "ask_qty"),
    "side": ("side",),
}


def parse_time(text):
    """Seconds as a float, from a number or an ISO 8601 timestamp; None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_side(text):
    text = (text or "").strip().lower()
    if text in ("buy", "b", "1", "+1", "bid"):
        return 1.0
    if text in ("sell", "s", "-1", "ask"):
        return -1.0
    return 0.0


class TickFeatures:
    """Streaming tick -> 8 features (see the module doc). push(row dict) -> float32 [8]."""

    def __init__(self):
        self._prev_price = None
        self._prev_mid = None
        self._prev_time = None

    def push(self, tick):
        def num(name, default=0.0):
            v = tick.get(name)
            return default if v is None or str(v).strip() == "" else float(v)

        price = num("price", None)
        if price is None or not price > 0:
            raise ValueError(f"tick without a positive price: {tick}")
        size = max(0.0, num("size"))
        bid, ask = num("bid", None), num("ask", None)
        quoted = bid is not None and ask is not None and bid > 0 and ask > 0
        mid = (bid + ask) / 2 if quoted else price
        bid_size, ask_size = max(0.0, num("bid_size")), max(0.0, num("ask_size"))
        t = parse_time(tick.get("time"))
        f = np.zeros(len(FEATURES), dtype=np.float64)
        f[0] = 1e4 * math.log(price / self._prev_price) if self._prev_price else 0.0
        f[1] = math.log1p(size)
        if t is not None and self._prev_time is not None:
            f[2] = math.log1p(max(0.0, t - self._prev_time))
        f[3] = 1e4 * (ask - bid) / mid if quoted else 0.0
        depth = bid_size + ask_size
        f[4] = (bid_size - ask_size) / depth if depth > 0 else 0.0
        f[5] = parse_side(tick.get("side"))
        f[6] = 1e4 * (price - mid) / mid
        f[7] = 1e4 * math.log(mid / self._prev_mid) if self._prev_mid else 0.0
        self._prev_price, self._prev_mid = price, mid
        if t is not None:
            self._prev_time = t
        return f.astype(np.float32)


def read_ticks(path):
    """Yields each CSV row as a dict keyed by the canonical names above (plus any other column
    under its lower-cased header name)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty CSV (a header row is required)")
        header = {h.strip().lower(): h for h in reader.fieldnames}
        mapping = {}
        for canonical, names in ALIASES.items():
            for name in names:
                if name in header:
                    mapping[canonical] = header[name]
                    break
        for lower, original in header.items():
            mapping.setdefault(lower, original)
        for row in reader:
            yield {k: row.get(v) for k, v in mapping.items()}


def tick_frames(rows, frame_size, columns=None):
    """rows (dicts from read_ticks) -> yields (frame [frame_size] float32, tag text)."""
    features = None if columns else TickFeatures()
    if features is not None and frame_size != len(FEATURES):
        raise ValueError(f"the model takes {frame_size} values per frame; the tick features are "
                         f"{len(FEATURES)} ({', '.join(FEATURES)}): pass columns=... instead")
    if columns and len(columns) != frame_size:
        raise ValueError(f"{len(columns)} columns for frames of {frame_size} values")
    for index, row in enumerate(rows, start=1):
        if columns:
            try:
                frame = np.array([float(row[c.strip().lower()]) for c in columns], np.float32)
            except KeyError as e:
                raise ValueError(f"no column {e} in the CSV") from None
        else:
            frame = features.push(row)
        yield frame, (row.get("time") or "").strip() or f"row{index}"


def tick_chunks(path, frame_shape, frames_per_chunk=1, columns=None, tags=True):
    """Reads the CSV incrementally and yields ([k, *frame_shape] float32, tags) chunks for
    SluiceStream.send/stream."""
    frame_size = int(np.prod(frame_shape))
    batch, batch_tags = [], []
    for frame, tag in tick_frames(read_ticks(path), frame_size, columns):
        batch.append(frame)
        batch_tags.append(tag)
        if len(batch) == frames_per_chunk:
            yield np.stack(batch).reshape((len(batch),) + tuple(frame_shape)), \
                (batch_tags if tags else None)
            batch, batch_tags = [], []
    if batch:
        yield np.stack(batch).reshape((len(batch),) + tuple(frame_shape)), \
            (batch_tags if tags else None)


def csv_frames(path, frame_shape, columns=None):
    """All frames of a tick CSV at once: [T, *frame_shape] float32."""
    frames = [f for f, _ in tick_frames(read_ticks(path), int(np.prod(frame_shape)), columns)]
    return np.stack(frames).reshape((len(frames),) + tuple(frame_shape))
