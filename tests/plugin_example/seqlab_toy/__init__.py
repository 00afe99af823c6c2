"""seqlab_toy: a model family and a task added to seqlab from outside it (docs/architecture.md).

Nothing of seqlab names this package: it is found through its entry points (group
`seqlab.plugins`, see pyproject.toml here and seqlab_toy-0.1.dist-info/entry_points.txt,
which is what installing it writes). The tests make it importable by putting this folder on
the path; `pip install tests/plugin_example` does the same for real.
"""
