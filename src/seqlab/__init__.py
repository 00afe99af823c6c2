"""seqlab: deep sequence modelling on PyTorch — data, models, training, decoding, analysis."""

__version__ = "0.1.0"


class SeqlabError(Exception):
    """An error the user can fix: printed as one line by the CLI, never as a traceback."""
