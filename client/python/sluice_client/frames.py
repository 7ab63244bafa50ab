"""Frames on the wire: tensor specs, encoding frames into sluice.v1.Tensor and decoding outputs,
and moving between stacked frames and a model's offline layout."""
from dataclasses import dataclass
from math import prod
from typing import Tuple

import numpy as np

from ._stubs import pb2


@dataclass(frozen=True)
class TensorSpec:
    """A streamed tensor of a model (sluice.v1.TensorSpec).

    offline_shape: the model's offline shape, batch 1, time dim -1 (e.g. (1, 40, -1)).
    time_axis:     where time is in offline_shape.
    frame_shape:   one frame: offline_shape without the time axis (e.g. (1, 40)).
    """
    name: str
    offline_shape: Tuple[int, ...]
    time_axis: int
    frame_shape: Tuple[int, ...]

    @property
    def frame_size(self):
        return prod(self.frame_shape)

    @classmethod
    def from_proto(cls, spec):
        return cls(spec.name, tuple(spec.offline_shape), int(spec.time_axis),
                   tuple(spec.frame_shape))


def wire_array(values):
    """values -> (little-endian contiguous array, sluice.v1.DataType). int16 stays INT16 (PCM,
    which the server scales by 1/32768); any float becomes FLOAT32."""
    a = np.asarray(values)
    if a.dtype == np.int16:
        return np.ascontiguousarray(a, dtype="<i2"), pb2.INT16
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype="<f4"), pb2.FLOAT32
    raise TypeError(f"frames of dtype {a.dtype}: send float (FLOAT32) or int16 PCM (INT16); "
                    "convert other types explicitly")


def stack_frames(values, spec):
    """Frames given as [k, *frame_shape], one frame (frame_shape), [k, frame_size] or a flat
    frame -> an array [k, *frame_shape]. Raises ValueError for anything else."""
    a = np.asarray(values)
    fs = tuple(spec.frame_shape)
    if a.shape == fs:
        return a.reshape((1,) + fs)
    if a.ndim == len(fs) + 1 and a.shape[1:] == fs:
        return a
    if a.ndim == 2 and a.shape[1] == spec.frame_size:
        return a.reshape((a.shape[0],) + fs)
    if a.ndim == 1 and a.size == spec.frame_size:
        return a.reshape((1,) + fs)
    raise ValueError(f"frames of shape {list(a.shape)}; model input '{spec.name}' takes frames "
                     f"of shape {list(fs)}, stacked as [k, {', '.join(map(str, fs))}]")


def check_offline(values, spec):
    """An array in the model's offline layout (any length on the time axis) -> its frame count."""
    a = np.asarray(values)
    want = spec.offline_shape
    ok = a.ndim == len(want) and all(
        d == spec.time_axis or a.shape[d] == want[d] for d in range(len(want)))
    if not ok:
        raise ValueError(f"offline frames of shape {list(a.shape)}; model input '{spec.name}' "
                         f"has offline layout {list(want)} (-1 = time)")
    return a.shape[spec.time_axis]


def encode(values):
    """An array -> sluice.v1.Tensor (raw little-endian bytes, row-major)."""
    a, dtype = wire_array(values)
    return pb2.Tensor(dtype=dtype, shape=list(a.shape), data=a.tobytes())


def decode(tensor):
    """sluice.v1.Tensor -> float32 array of its shape (INT16 reads as value / 32768)."""
    shape = tuple(tensor.shape)
    if tensor.dtype == pb2.INT16:
        a = np.frombuffer(tensor.data, dtype="<i2").astype(np.float32) / np.float32(32768)
    elif tensor.dtype == pb2.FLOAT32:
        a = np.frombuffer(tensor.data, dtype="<f4")
    else:
        raise ValueError(f"tensor dtype {tensor.dtype} is neither FLOAT32 nor INT16")
    if a.size != prod(shape):
        raise ValueError(f"tensor of shape {list(shape)} holds {a.size} values")
    return a.reshape(shape)


def to_offline(frames, spec):
    """[T, *frame_shape] -> the model's offline layout with time T (e.g. [1, C, T])."""
    return np.moveaxis(np.asarray(frames), 0, spec.time_axis)


def from_offline(values, spec):
    """The model's offline layout with time T -> [T, *frame_shape]."""
    return np.moveaxis(np.asarray(values), spec.time_axis, 0)
