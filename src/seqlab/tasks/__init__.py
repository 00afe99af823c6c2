"""Tasks beyond next-token prediction: a task is data + head + loss + metrics + decoding.

    classify   many-to-one: a label or a score per sequence (sentiment)
    tag        many-to-many, aligned: a tag per token (part of speech)
    translate  many-to-many, encoder-decoder with attention
    forecast   real-valued series, one-step and closed-loop

`seqlab train task.name=NAME ...` trains any of them through train/supervised.py; the
language model (`task.name=lm`, the default) keeps its own TBPTT trainer (train/fit.py).
"""
