"""seqlab from Python: train a run, load it, and use it.

    import seqlab

    run = seqlab.training(["data=shakespeare", "model.hidden_size=128", "train.max_steps=200"], out="runs/tiny")
    print(run.sample("ROMEO:", length=100, temperature=0.8, seed=1))
    score = run.score("To be, or not to be")
    print(score["bits_per_token"], score["log_probs"][:5])      # NumPy array, nats per token

    run = seqlab.load("runs/sentiment")                            # any run folder
    run.classify(["a gripping, funny film"])                       # [{'label': 'positive', 'probability': ...}]

`seqlab.training` runs the same engine as `seqlab train` (a progress bar in a terminal, quiet
in a notebook) and returns the trained `Run`; `seqlab.load` opens a run folder. A `Run`
gives plain Python, NumPy and torch values: `.config` (nested dicts), `.vocab` (the tokens
by id), `.model` (the torch module with the best weights), `.metrics` (the training
records), and the verbs of its task: `.sample`, `.score`, `.evaluate` for language models,
`.classify`, `.tag`, `.translate`, `.forecast`, `.evaluate` for the others. The command
line is a thin layer over these functions.

Errors a caller can fix raise `seqlab.SeqlabError` with a one-line message.
"""
from seqlab.api.run import Run, load
from seqlab.api.training import train

__all__ = ["Run", "load", "train"]
