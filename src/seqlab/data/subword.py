"""data.level=subword: a sentencepiece BPE vocabulary learned from the training split only.

    vocab = Vocab((), "subword", model=learn_subwords(train_text, size=4000))
    vocab.encode("ROMEO.\n")  ->  ids;   vocab.decode(ids)  ->  the text again

seqlab's four specials are the model's ids 0-3 (<pad>, <unk>, <bos>, <eos>), so ids mean the
same in every part of seqlab. Every byte is a piece of its own (byte fallback), so no text
is ever <unk>. A line break is the piece ⏎ (U+23CE; sentencepiece reads lines, not line
breaks): the text's line structure is learned like any other symbol. The model is saved
inside the run's vocab.json (base64 of sentencepiece's protobuf, which loading parses: no
code runs), beside its pieces. Needs the sentencepiece package (pinned in requirements.lock).
"""
from __future__ import annotations

import io
from seqlab import SeqlabError
from seqlab.tokens import SPECIALS

NEWLINE = "\u23ce"                 # stands for "\n" inside the model
INSTALL = "pip install sentencepiece==0.2.3 (make venv installs it)"
MIN_SIZE = 300                     # 4 specials, ⏎, 256 bytes, and room for some pieces


def _spm():
    try:
        import sentencepiece
    except ImportError:
        raise SeqlabError(f"data.level=subword needs the sentencepiece package: {INSTALL}") from None
    return sentencepiece


def processor(model: bytes):
    """A sentencepiece processor of a saved model, or a one-line refusal."""
    try:
        return _spm().SentencePieceProcessor(model_proto=model)
    except (RuntimeError, TypeError, ValueError) as e:
        raise SeqlabError(f"not a sentencepiece model ({str(e).strip().splitlines()[0][:120] if str(e) else e})") from None


def learn_subwords(text: str, size: int) -> bytes:
    """The sentencepiece model of `size` pieces (at most) that BPE learns from `text`
    (Vocab((), "subword", model=...) makes it a vocabulary)."""
    if size < MIN_SIZE:
        raise SeqlabError(f"data.subword_size must be at least {MIN_SIZE} (256 byte pieces, the specials and "
                          f"some of the text's own), got {size}")
    lines = [line for line in text.replace("\n", NEWLINE + "\n").splitlines() if line]
    if not lines:
        raise SeqlabError("the training split has no text to learn subwords from")
    model = io.BytesIO()
    try:
        _spm().SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=size, model_type="bpe",
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=SPECIALS[0], unk_piece=SPECIALS[1],
            bos_piece=SPECIALS[2], eos_piece=SPECIALS[3], user_defined_symbols=[NEWLINE], byte_fallback=True,
            hard_vocab_limit=False, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, character_coverage=1.0, max_sentence_length=1 << 16,
            train_extremely_large_corpus=False, minloglevel=2, num_threads=1)
    except RuntimeError as e:
        text = str(e)
        if "Vocabulary size is smaller than required_chars" in text:
            need = text.split(" vs ")[-1].split(".")[0]
            raise SeqlabError(f"data.subword_size={size} is smaller than the text's characters and bytes need "
                              f"({need}); raise it") from None
        raise SeqlabError(f"sentencepiece could not learn subwords: {text.strip().splitlines()[0][:200]}") from None
    return model.getvalue()
