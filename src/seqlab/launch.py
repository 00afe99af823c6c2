"""The `seqlab` console script. It imports nothing heavy itself, so a Ctrl-C while torch is
still loading (a second or more on a cold disk) ends in one line, not a traceback."""
from __future__ import annotations

import sys


def main() -> int:
    try:
        from seqlab.cli import main as cli_main
    except KeyboardInterrupt:
        print("\nseqlab: interrupted while starting", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
