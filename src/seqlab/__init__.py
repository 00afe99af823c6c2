"""seqlab: deep sequence modelling on PyTorch — data, models, training, decoding, analysis.

From Python (seqlab.api has the details):

    import seqlab
    run = seqlab.train(["data=shakespeare", "train.max_steps=200"], out="runs/tiny")
    run = seqlab.load("runs/tiny")
    run.sample("ROMEO:", length=100), run.score("To be, or not to be")
"""

__version__ = "0.1.0"
__all__ = ["Run", "SeqlabError", "load", "train", "__version__"]


class SeqlabError(ValueError):
    """An error the user can fix: printed as one line by the CLI, never as a traceback. A
    ValueError, so code that catches bad values catches it too (a wrong type given to the API
    raises it as well, with the same message the command line prints)."""


class Interrupted(Exception):
    """Work stopped by Ctrl-C, SIGTERM or SIGHUP after saving what there was to save
    (training: a checkpoint). `signal` is the signal's number."""

    def __init__(self, signal: int = 2):
        super().__init__(signal)
        self.signal = signal


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside training: unwinds like Ctrl-C, so temporaries are removed."""

    def __init__(self, signal: int = 15):
        super().__init__(signal)
        self.signal = signal


def __dir__() -> list[str]:
    """What tab completion and dir(seqlab) show: the API too, though it is imported on first use."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str):
    """seqlab.load, seqlab.train and seqlab.Run, imported on first use: `import seqlab` (and
    the command line's start-up) stays free of torch until they are asked for."""
    if name in ("load", "train", "Run"):
        from seqlab import api
        return getattr(api, name)
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")
