"""The biLM and ELMo features (Peters et al. 2018): causality of each direction, padding,
the scalar mix, the bilm task, and the tagger and classifier fed by a frozen biLM."""
from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import load_config
from seqlab.data.sequences import pad
from seqlab.models.bilm import BiLM, ScalarMix, reverse_padded
from seqlab.training.engine import fit
from seqlab.training.runs import load_trained

FAST = ["model.hidden_size=16", "model.embedding_size=16", "model.num_layers=2", "model.dropout=0.0",
        "train.batch_size=16", "train.log_every=5", "train.eval_every=20", "train.progress=false",
        "train.early_stop=0", "train.lr=0.01", "train.threads=1"]
LEX = {"DT": ["the", "a"], "NN": ["dog", "cat", "boat"], "VB": ["saw", "likes"], "JJ": ["old", "red"]}



def sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tags = ["DT", "JJ", "NN", "VB", "DT", "NN"][: rng.randint(4, 6)]
        out.append([(rng.choice(LEX[t]), t) for t in tags] + [(".", ".")])
    return out


def text_file(path, n=200, seed=1):
    path.write_text("".join(" ".join(w for w, _ in s) + "\n" for s in sentences(n, seed)))
    return path


def tagged_file(path, n=120, seed=0):
    path.write_text("".join(" ".join(f"{w}/{t}" for w, t in s) + "\n" for s in sentences(n, seed)))
    return path


def losses(run, split="train"):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


@pytest.fixture(scope="module")
def bilm_dir(tmp_path_factory):
    """A trained bilm run on the text of the tagged sentences (shared by the consumer tests)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("bilm")
    cfg = load_config(None, ["task=bilm", f"data.path={text_file(tmp / 'text.txt')}", "model=lstm",
                             "train.max_epochs=6", *FAST, "train.lr=0.02"])
    result = fit(cfg, tmp / "run", log=lambda m: None)
    return tmp / "run", result


def small_bilm(seed=0) -> BiLM:
    torch.manual_seed(seed)
    return BiLM(20, 8, 2).eval()


# -- the model ------------------------------------------------------------------------------------

def test_reverse_padded_reverses_within_each_length():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_padded(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


def test_forward_never_sees_the_future_and_backward_never_the_past():
    model = small_bilm()
    x = torch.randint(4, 20, (1, 9))
    n = torch.tensor([9])
    base = model.layers(x, n)                                      # (L+1, 1, T, 2H)
    H = model.hidden_size
    for t in range(1, 8):
        future = x.clone()
        future[0, t + 1:] = torch.randint(4, 20, (9 - t - 1,))
        changed = model.layers(future, n)
        torch.testing.assert_close(changed[1:, :, :t + 1, :H], base[1:, :, :t + 1, :H])   # forward states <= t
        past = x.clone()
        past[0, :t] = torch.randint(4, 20, (t,))
        changed = model.layers(past, n)
        torch.testing.assert_close(changed[1:, :, t:, H:], base[1:, :, t:, H:])           # backward states >= t
    # and each direction does read its context: the forward states after t change with token t
    other = x.clone()
    other[0, 4] = 4 if x[0, 4] != 4 else 5
    changed = model.layers(other, n)
    assert not torch.allclose(changed[1:, :, 5:, :H], base[1:, :, 5:, :H])
    assert not torch.allclose(changed[1:, :, :4, H:], base[1:, :, :4, H:])


def test_padding_never_changes_a_layer_and_logits_match():
    model = small_bilm()
    rows = [[2, 5, 6, 7, 8, 3], [2, 9, 3], [2, 10, 11, 12, 3]]
    x, lengths = pad(rows)
    layers = model.layers(x, lengths)                              # (L+1, B, T, 2H)
    forward, backward = model(x, lengths)
    assert layers.shape == (3, 3, 6, 16)
    for i, r in enumerate(rows):
        alone = model.layers(torch.tensor([r]), torch.tensor([len(r)]))
        torch.testing.assert_close(layers[:, i:i + 1, :len(r)], alone, atol=1e-6, rtol=1e-6)
        assert layers[:, i, len(r):].abs().sum() == 0
        f, b = model(torch.tensor([r]), torch.tensor([len(r)]))
        torch.testing.assert_close(forward[i, :len(r)], f[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(backward[i, :len(r)], b[0], atol=1e-6, rtol=1e-6)
    # layer 0 is the embedding twice
    e = model.embedding(x)
    torch.testing.assert_close(layers[0, 0], torch.cat([e[0], e[0]], -1))


def test_scalar_mix_weights_sum_to_one_and_one_hot_picks_a_layer():
    mix = ScalarMix(3)
    layers = torch.randn(3, 2, 4, 6)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
        mix.gamma.fill_(1.7)
    assert float(mix.weights.detach().softmax(0).sum()) == pytest.approx(1.0)
    expected = 1.7 * sum(w * layer for w, layer in zip(mix.weights.softmax(0), layers))
    torch.testing.assert_close(mix(layers), expected)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([-1e4, 1e4, -1e4]))    # s = (0, 1, 0)
    torch.testing.assert_close(mix(layers), 1.7 * layers[1])


# -- the task and its consumers -------------------------------------------------------------------

def test_bilm_task_trains_and_its_loss_falls(bilm_dir):
    run, result = bilm_dir
    train = losses(run)
    assert train[-1] < 0.6 * train[0]
    assert result["perplexity"] == pytest.approx(torch.tensor(result["loss"]).exp().item(), rel=1e-5)
    assert result["perplexity"] < 6      # ~30 words in the vocabulary; the grammar leaves few choices
    _, task, model, _ = load_trained(run, "cpu")
    assert task.name == "bilm" and "boat" in task.vocab.stoi and not model.training


def test_tagger_with_elmo_trains_only_the_mix_and_its_own_weights(bilm_dir, tmp_path, capsys):
    run, _ = bilm_dir
    bilm_weights = load_file(run / "model.safetensors")
    cfg = load_config(None, ["task=tag", f"data.path={tagged_file(tmp_path / 't.txt')}", "model=lstm",
                             f"task.elmo={run}", "train.max_epochs=3", *FAST, "model.num_layers=1"])
    fit(cfg, tmp_path / "tagger", log=lambda m: None)
    train = losses(tmp_path / "tagger")
    assert train[-1] < 0.3 * train[0]
    _, task, model, _ = load_trained(tmp_path / "tagger", "cpu")
    model.train()                                           # as the trainer sets it: the biLM stays in eval
    assert model.elmo.mix.training and not model.elmo.bilm.training
    model.eval()
    trained = load_file(tmp_path / "tagger" / "model.safetensors")
    for k, v in bilm_weights.items():                       # the frozen biLM is saved unchanged
        torch.testing.assert_close(trained[f"elmo.bilm.{k}"], v, rtol=0, atol=0)
    mix = model.elmo.mix
    assert not torch.equal(mix.weights.detach(), torch.zeros(3)) and float(mix.gamma.detach()) != 1.0
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"elmo.mix.weights", "elmo.mix.gamma"} <= trainable
    assert not any(name.startswith("elmo.bilm.") for name in trainable)
    # the run stands on its own for the command line (it finds the biLM through task.elmo)
    assert main(["tag", str(tmp_path / "tagger"), "--text", "the red dog likes a cat ."]) == 0
    assert capsys.readouterr().out.split() == ["the/DT", "red/JJ", "dog/NN", "likes/VB", "a/DT", "cat/NN", "./."]


def test_classifier_with_elmo_trains_and_bow_refuses_it(bilm_dir, tmp_path, capsys):
    run, _ = bilm_dir
    with open(tmp_path / "s.tsv", "w") as f:
        for s in sentences(160, 3):
            label = "animal" if any(w in ("dog", "cat") for w, _ in s) else "thing"
            f.write(f"{label}\t{' '.join(w for w, _ in s)}\n")
    cfg = load_config(None, ["task=classify", f"data.path={tmp_path / 's.tsv'}", "model=gru", "task.pooling=max",
                             f"task.elmo={run}", "train.max_epochs=3", *FAST, "model.num_layers=1"])
    fit(cfg, tmp_path / "classifier", log=lambda m: None)
    train = losses(tmp_path / "classifier")
    assert train[-1] < 0.5 * train[0]
    # the command line gives ids only: the words go back through the classifier's vocabulary
    assert main(["classify", str(tmp_path / "classifier"), "--text", "a old cat saw the boat .",
                 "--text", "the red boat likes a boat .", "--json"]) == 0
    assert [json.loads(r)["label"] for r in capsys.readouterr().out.splitlines()] == ["animal", "thing"]
    with pytest.raises(SeqlabError, match="bow"):
        load_config(None, ["task=classify", "data.path=x", "model=bow", f"task.elmo={run}", *FAST])


def test_bad_elmo_paths_are_one_line_errors(tmp_path, bilm_dir):
    with pytest.raises(SeqlabError, match="task.elmo") as e:
        load_config(None, ["task=tag", "data.path=x", "model=lstm", f"task.elmo={tmp_path / 'nowhere'}", *FAST])
    assert "\n" not in str(e.value)
    tagger = tmp_path / "tagger"
    cfg = load_config(None, ["task=tag", f"data.path={tagged_file(tmp_path / 't.txt', n=40)}", "model=lstm",
                             "train.max_steps=1", *FAST])
    fit(cfg, tagger, log=lambda m: None)
    with pytest.raises(SeqlabError, match="needs a task.name=bilm run"):
        load_config(None, ["task=tag", "data.path=x", "model=lstm", f"task.elmo={tagger}", *FAST])
    with pytest.raises(SeqlabError, match="embedding_size == model.hidden_size"):
        load_config(None, ["task=bilm", "data.path=x", "model=lstm", *FAST, "model.embedding_size=8"])
