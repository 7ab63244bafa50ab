"""Streams a CSV of ticks through a model on a sluice server and prints each output.

    python -m sluice_client.ticks --server 127.0.0.1:8001 --model tick_lstm ticks.csv
    sluice-py-ticks --columns f0,f1,f2,f3,f4,f5,f6,f7 features.csv

By default every row (time, price, size, bid, ask, bid_size, ask_size, side; only price is
required) becomes tick_lstm's 8 features (see sluice_client.market); --columns sends the named
columns as they are. Each output line: seq, tag (the row's time), the values.
"""
import sys

from . import _cli
from .market import parse_time, tick_chunks


def main(argv=None):
    p = _cli.parser(__doc__.split("\n\n")[0], "tick_lstm", "CSV of ticks with a header row")
    p.add_argument("--columns", help="comma-separated columns sent as the frame, as they are")
    args = p.parse_args(argv)
    columns = args.columns.split(",") if args.columns else None

    def chunks(frame_shape):
        source = tick_chunks(args.file, frame_shape, args.chunk or 1, columns, tags=True)
        if args.realtime:
            def last_time(chunk):
                try:
                    return parse_time(chunk[1][-1])
                except ValueError:
                    return None
            source = _cli.paced(source, last_time)
        if args.no_tags:
            source = (frames for frames, _ in source)
        return source

    return _cli.run(args, chunks)


if __name__ == "__main__":
    sys.exit(main())
