"""`python -m seqlab.cli ...`: the same as the `seqlab` script (torchrun launches it this way)."""
import sys

from seqlab.cli.commands import main

sys.exit(main())
