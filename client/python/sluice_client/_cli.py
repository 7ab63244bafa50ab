"""Shared command-line pieces of sluice_client.wav / .ticks."""
import argparse
import os
import sys
import time

import numpy as np

from .client import SluiceClient
from .errors import SluiceError


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parser(description, default_model, file_help):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("file", help=file_help)
    p.add_argument("--server", default="127.0.0.1:8001", help="host:port of the gRPC port")
    p.add_argument("--model", default=default_model)
    p.add_argument("--chunk", type=positive_int, default=None,
                   help="frames per Frames request (stacked [k, *frame_shape])")
    p.add_argument("--realtime", action="store_true",
                   help="pace the frames at their own timestamps instead of as fast as possible")
    p.add_argument("--quiet", action="store_true", help="only the summary line")
    p.add_argument("--show", type=positive_int, default=12, help="values printed per output frame")
    p.add_argument("--no-tags", action="store_true", help="send frames without tags")
    p.add_argument("--session-tag", default="sluice-py")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Opened")
    return p


def paced(chunks, seconds_of):
    """Yields chunks no earlier than their timestamp (seconds_of(chunk), relative to the first)."""
    start = None
    for chunk in chunks:
        t = seconds_of(chunk)
        if t is not None:
            if start is None:
                start = time.monotonic() - t
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield chunk


def format_output(out, show):
    values = np.concatenate([np.ravel(v) for v in out.values])
    shown = " ".join(f"{v:.4f}" for v in values[:show])
    more = " ..." if values.size > show else ""
    tag = f" [{out.tag.decode(errors='replace')}]" if out.tag else ""
    return f"seq {out.seq}{tag}: {shown}{more}  argmax {int(np.argmax(out.values[0]))}"


def run(args, make_chunks):
    """Opens the session, streams make_chunks(frame_shape), prints every output (unless
    --quiet) and a summary line. Returns the exit code."""
    try:
        with SluiceClient(args.server) as client:
            with client.open(args.model, session_tag=args.session_tag,
                             open_timeout=args.timeout) as stream:
                spec = stream.input
                print(f"opened session {stream.session_id} on {args.model} ({stream.backend}): "
                      f"input '{spec.name}' frames {list(spec.frame_shape)}, offline "
                      f"{list(spec.offline_shape)}, warm-up {stream.warmup_frames}",
                      file=sys.stderr)
                started = time.monotonic()
                received = 0
                for out in stream.stream(make_chunks(spec.frame_shape)):
                    received += 1
                    if not args.quiet:
                        print(format_output(out, args.show), flush=False)
                seconds = time.monotonic() - started
                sys.stdout.flush()
                rate = stream.frames_sent / seconds if seconds > 0 else 0.0
                print(f"summary: model {args.model} frames sent {stream.frames_sent} "
                      f"({stream.messages_sent} messages), outputs received {received}, "
                      f"rejected {len(stream.errors)}, {seconds:.3f} s ({rate:.0f} frames/s)")
                return 0
    except SluiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `| head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
