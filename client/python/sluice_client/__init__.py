"""Python client for sluice streaming sessions (the sluice.v1.Streaming/Stream API).

    from sluice_client import SluiceClient

    with SluiceClient("127.0.0.1:8001") as client:
        with client.open("tick_lstm") as stream:        # Open -> Opened (specs, warm-up)
            for out in stream.stream(chunks):            # chunks: [k, *frame_shape] arrays
                print(out.seq, out.value, out.tag)       # one FrameOutput per frame, in order

Feeds: sluice_client.audio (WAV -> log-mel or PCM frames), sluice_client.market (tick CSV ->
8 features); command lines: python -m sluice_client.wav / .ticks / .models.
"""
from .client import (FrameOutput, ModelInfo, ModelSummary, OutputBlock, SluiceClient,
                     SluiceStream, StreamResult)
from .errors import (FrameRejectedError, ModelNotFoundError, SluiceError, SluiceProtocolError,
                     SluiceRpcError, StreamClosedError)
from .frames import TensorSpec, from_offline, to_offline

__version__ = "0.1.0"

__all__ = [
    "FrameOutput", "FrameRejectedError", "ModelInfo", "ModelNotFoundError", "ModelSummary",
    "OutputBlock", "SluiceClient", "SluiceError", "SluiceProtocolError", "SluiceRpcError",
    "SluiceStream", "StreamClosedError", "StreamResult", "TensorSpec", "from_offline",
    "to_offline",
]
