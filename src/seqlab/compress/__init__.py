"""Compression with sequence models: `seqlab compress` / `seqlab decompress`.

A model that predicts the next byte with p(x_t | x_<t) stores a file in about
Σ −log2 p(x_t | x_<t) bits with an arithmetic (range) coder: bits per byte become file size.

    coder.py       the model's probabilities as integer frequencies (deterministic, none zero),
                   range-coded by `constriction`
    predictors.py  what predicts: a trained run (static), or a model that learns as it codes
                   (adaptive: an n-gram refitted on what was coded, an LSTM trained on it)
    mixing.py      a match model (long repeats) and an integer mixer that learns online how
                   far to trust each predictor: `mix` (the default), `mix-lstm`
    container.py   the .sqz file: magic, version, mode, model, length, checksum, fingerprint
    codec.py       the loop both directions share: B streams side by side, step by step

Encoder and decoder run the same loop: the file is cut into B segments coded side by side,
so each step predicts B bytes with one batched model call; an adaptive model learns from
each chunk after it is coded, the decoder after it is decoded, so both see the same model.
"""
