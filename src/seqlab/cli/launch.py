"""The `seqlab` console script. It imports nothing heavy itself, so a Ctrl-C while torch is
still loading (a second or more on a cold disk) ends in one line, not a traceback."""
from __future__ import annotations

import sys


def main() -> int:
    try:
        from seqlab.cli.commands import main as cli_main
        return cli_main()
    except KeyboardInterrupt:
        # the command's own guard turns Ctrl-C into one line once it runs; this catches one that
        # comes earlier, while torch loads or the parser is built
        print("\nseqlab: interrupted while starting", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
