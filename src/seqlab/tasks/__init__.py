"""Tasks beyond next-token prediction: a task is data + head + loss + metrics + decoding.

    classify   many-to-one: a label or a score per sequence (sentiment)
    tag        many-to-many, aligned: a tag per token (part of speech)
    translate  many-to-many, encoder-decoder with attention
    caption    one-to-many from an image: CNN encoder, LSTM decoder, soft attention
    forecast   real-valued series, one-step and closed-loop
    speech     raw audio, mu-law sample by sample: WaveNet with the speaker as global condition

    lm         next token on one stream, TBPTT (the default)
    conditional, bilm   language models of sentences given a label / in both directions

Every one of them trains through the one engine (training/engine.py), which knows only the
task protocol (training/task.py).
"""
