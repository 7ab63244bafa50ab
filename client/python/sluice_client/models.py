"""Lists the models of a sluice server, or describes one.

    python -m sluice_client.models --server 127.0.0.1:8001 [MODEL]
"""
import argparse
import sys

from .client import SluiceClient
from .errors import SluiceError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--server", default="127.0.0.1:8001")
    p.add_argument("--program", action="store_true", help="print the streaming program too")
    args = p.parse_args(argv)
    try:
        with SluiceClient(args.server) as client:
            if not args.model:
                for m in client.list_models():
                    print(f"{m.name}\t{m.state}")
                return 0
            info = client.model_info(args.model)
            print(f"{info.summary.name}: {info.summary.state}, backend {info.backend}, "
                  f"max_batch {info.max_batch}, sessions {info.sessions_active}")
            if info.input is not None:
                specs = [("input", info.input)] + [("output", o) for o in info.outputs]
                for kind, s in specs:
                    print(f"  {kind} {s.name}: offline {list(s.offline_shape)} time_axis "
                          f"{s.time_axis} frame {list(s.frame_shape)}")
                print(f"  warm-up {info.warmup_frames} frames, {info.state_bytes} state bytes "
                      "per session")
            if args.program:
                print(info.program)
            return 0
    except SluiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
