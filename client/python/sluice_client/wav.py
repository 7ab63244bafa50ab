"""Streams a 16-bit PCM WAV file through a model on a sluice server and prints each output.

    python -m sluice_client.wav --server 127.0.0.1:8001 --model kws_cnn speech.wav
    sluice-py-wav --frontend pcm --model MODEL speech.wav

The default front end computes 40 log-mel features per 10 ms (25 ms window), what the bundled
kws_cnn takes (see sluice_client.audio); --frontend pcm sends runs of frame_size raw samples as
INT16 frames instead. Each output line: seq, tag (the frame's start time in s), the values.
"""
import sys

from . import _cli
from .audio import wav_chunks


def main(argv=None):
    p = _cli.parser(__doc__.split("\n\n")[0], "kws_cnn", "16-bit PCM WAV file (first channel)")
    p.add_argument("--frontend", choices=("logmel", "pcm"), default="logmel")
    args = p.parse_args(argv)
    chunk = args.chunk or 10

    def chunks(frame_shape):
        source = wav_chunks(args.file, frame_shape, args.frontend, chunk, tags=True)
        if args.realtime:
            source = _cli.paced(source, lambda c: float(c[1][-1]))
        if args.no_tags:
            source = (frames for frames, _ in source)
        return source

    return _cli.run(args, chunks)


if __name__ == "__main__":
    sys.exit(main())
