"""seqlab export --format arpa (export/arpa.py), read back by KenLM: the same log10 probability
for every token as seqlab's own scoring, for every smoothing that ARPA can hold exactly."""
import math
import random

import kenlm
import numpy as np
import pytest

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.data.vocab import Vocab
from seqlab.export.arpa import arpa_word, write_arpa
from seqlab.models.ngram import NGramLM
from seqlab.tokens import BOS, EOS, PAD

LEX = "the cat dog sat on a mat log ran".split()
TEXT = "\n".join(" ".join(random.Random(i).choice(LEX) for _ in range(2 + i % 5)) for i in range(300)) + "\n"
SENTENCES = ["the cat sat on a mat", "a dog ran", "mat the the log", "the zebra sat"]   # unseen n-grams, an OOV


def fitted(level: str, smoothing: str, order: int):
    vocab = Vocab.build(TEXT, level)
    return vocab, NGramLM(ModelConfig(name="ngram", order=order, smoothing=smoothing), len(vocab)).fit(vocab.encode(TEXT))


def kenlm_log10(lm: kenlm.Model, words: list[str], order: int) -> np.ndarray:
    """KenLM's own scores, word by word, from the state seqlab starts a stream in: n − 1 <s>."""
    state = kenlm.State()
    lm.NullContextWrite(state)
    for _ in range(order - 1):
        out = kenlm.State()
        lm.BaseScore(state, "<s>", out)
        state = out
    scores = []
    for word in words:
        out = kenlm.State()
        scores.append(lm.BaseScore(state, word, out))
        state = out
    return np.array(scores)


@pytest.mark.parametrize("level", ["word", "char"])
@pytest.mark.parametrize("smoothing", ["kneser_ney", "modified_kneser_ney", "witten_bell"])
@pytest.mark.parametrize("order", [2, 3, 5])
def test_kenlm_reads_the_same_probabilities(level, smoothing, order, tmp_path):
    vocab, model = fitted(level, smoothing, order)
    path = tmp_path / "lm.arpa"
    sizes = write_arpa(model, vocab.itos, path)
    assert sizes["1-grams"] == len(vocab) - 1                     # every token but <pad>, and <s>
    lm = kenlm.Model(str(path))
    assert lm.order == order
    for sentence in SENTENCES:
        ids = vocab.encode(sentence + ("\n" if level == "char" else ""))
        if level == "word":
            ids = np.concatenate([ids, [EOS]])                    # a line ends in <eos>: KenLM's </s>
        ours = model.stream_log_probs(ids) / math.log(10)
        theirs = kenlm_log10(lm, [arpa_word(vocab.itos[t], t) for t in ids.tolist()], order)
        np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)      # KenLM keeps float32
        assert abs(theirs.sum() - ours.sum()) < 1e-4


def test_a_unigram_file_lists_the_model_itself(tmp_path):
    vocab, model = fitted("char", "add_k", 1)
    write_arpa(model, vocab.itos, tmp_path / "lm.arpa")
    lines = (tmp_path / "lm.arpa").read_text().split("\\1-grams:\n")[1].split("\n\n")[0].splitlines()
    listed = {line.split("\t")[1]: float(line.split("\t")[0]) for line in lines}
    table = model.log_prob_table(np.array([], np.int64)) / math.log(10)
    for i, token in enumerate(vocab.itos):
        if i not in (PAD, BOS):                                   # <pad> is not listed, <bos> is <s> at -99
            assert listed[arpa_word(token, i)] == pytest.approx(table[i], abs=1e-8)
    assert listed["<s>"] == -99 and "<U+000A>" in listed and "<U+0020>" in listed
    assert abs(sum(10 ** v for k, v in listed.items() if k != "<s>") - 1) < 1e-7


def test_what_arpa_cannot_hold_is_refused(tmp_path):
    vocab, model = fitted("word", "add_k", 3)
    with pytest.raises(SeqlabError, match="add-k"):
        write_arpa(model, vocab.itos, tmp_path / "lm.arpa")
    assert not (tmp_path / "lm.arpa").exists()
