"""The supervised tasks: batching, classify, tag — through the same trainer and command line."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import load_config
from seqlab.data.sequences import make_batches, pad, padding_share, split_indices
from seqlab.training.engine import fit

from helpers import seasonal_csv, sentiment_file, tagged_file
from seqlab.training.runs import evaluate_run

NET = ["model.hidden_size=24", "model.embedding_size=16", "model.num_layers=1", "model.dropout=0.0"]
TRAIN = ["train.batch_size=16", "train.log_every=5", "train.eval_every=10", "train.progress=false",
        "train.early_stop=0", "train.lr=0.01"]
FAST = NET + TRAIN


def losses(run, split):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


# -- batching ---------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["shuffle", "sort_source", "sort_target", "sort_both", "token_budget"])
def test_every_example_lands_in_exactly_one_batch(strategy):
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 40, 500), rng.integers(1, 40, 500)
    batches = make_batches(src, 16, strategy, target_lengths=tgt, max_tokens=200, rng=np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    if strategy == "token_budget":    # padded size within the budget unless one example alone exceeds it
        assert all(len(b) * np.maximum(src, tgt)[b].max() <= 200 or len(b) == 1 for b in batches)
    else:
        assert max(len(b) for b in batches) == 16


def test_sorting_reduces_padding_and_the_share_is_exact():
    lengths = np.random.default_rng(0).integers(1, 50, 2000)
    shuffled = make_batches(lengths, 32, "shuffle", rng=np.random.default_rng(0))
    by_length = make_batches(lengths, 32, "sort_source", rng=np.random.default_rng(0))
    assert padding_share(by_length, lengths) < padding_share(shuffled, lengths) / 5
    # hand count: lengths 1 and 3 in one batch pad to 2 x 3 = 6 positions, 4 real
    assert padding_share([np.array([0, 1])], [1, 3]) == pytest.approx(2 / 6)


def test_pad_and_fixed_split():
    x, lengths = pad([[5, 6, 7], [8]])
    assert x.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    a, b = split_indices(100, 0.1, 0.2), split_indices(100, 0.1, 0.2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(100)) and [len(p) for p in a] == [70, 10, 20]


# -- classify ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["lstm", "gru", "bow"])
def test_classifier_learns_and_the_cli_predicts(tmp_path, model, capsys):
    data = sentiment_file(tmp_path / "s.tsv")
    cfg = load_config(None, ["task=classify", f"data.path={data}", f"model={model}", "train.max_epochs=6",
                             *(TRAIN + ["train.lr=0.1"] if model == "bow" else FAST)])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    train = losses(tmp_path / "run", "train")
    assert train[-1] < 0.5 * train[0]
    assert result["accuracy"] >= 0.9
    assert main(["classify", str(tmp_path / "run"), "--text", "the plot was superb", "--text", "a dull film",
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]


def test_regression_on_scores(tmp_path):
    rng = random.Random(0)
    with open(tmp_path / "r.tsv", "w") as f:
        for _ in range(300):
            k = rng.randint(0, 4)
            f.write(f"{k - 2}\t{' '.join(['up'] * k + ['down'] * (4 - k) + ['x'] * rng.randint(0, 3))}\n")
    cfg = load_config(None, ["task=classify", "task.target=score", f"data.path={tmp_path / 'r.tsv'}", "model=gru",
                             "task.pooling=mean", "train.max_epochs=8", *FAST])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    assert result["mae"] < 0.5 and result["pearson"] > 0.9


@pytest.mark.parametrize("pooling", ["final", "mean", "max"])
def test_padding_never_changes_a_classification(pooling):
    from seqlab.tasks.classify import SequenceClassifier
    cfg = load_config(None, ["task=classify", "data.path=x", "model=lstm", "task.pooling=" + pooling, *FAST])
    model = SequenceClassifier(cfg, 30, 3).eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    x, lengths = pad(seqs)
    batch_out = model(x, lengths)
    for i, s in enumerate(seqs):
        alone = model(torch.tensor([s]), torch.tensor([len(s)]))
        torch.testing.assert_close(batch_out[i], alone[0], atol=1e-6, rtol=1e-6)


# -- tag ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("char_size", [0, 8])
def test_tagger_learns_and_tags_unseen_words_by_spelling(tmp_path, char_size, capsys):
    data = tagged_file(tmp_path / "t.txt")
    cfg = load_config(None, ["task=tag", f"data.path={data}", "model=lstm", f"task.char_size={char_size}",
                             "train.max_epochs=4", *FAST])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    train = losses(tmp_path / "run", "train")
    assert train[-1] < 0.3 * train[0] and result["accuracy"] > 0.95
    assert main(["tag", str(tmp_path / "run"), "--text", "the old cat saw a boat ."]) == 0
    assert capsys.readouterr().out.split() == ["the/DT", "old/JJ", "cat/NN", "saw/VB", "a/DT", "boat/NN", "./."]


# -- the trainer ----------------------------------------------------------------------------------

def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    data = sentiment_file(tmp_path / "s.tsv")
    common = ["task=classify", f"data.path={data}", "model=lstm", "model.dropout=0.3", *FAST, "train.eval_every=6"]
    full = load_config(None, [*common, "train.max_steps=36"])
    fit(full, tmp_path / "full", log=lambda m: None)
    part = load_config(None, [*common, "train.max_steps=12"])
    fit(part, tmp_path / "part", log=lambda m: None)   # stops mid-epoch (25 batches per epoch)
    fit(None, tmp_path / "part", resume=True, overrides=full, log=lambda m: None)
    newest = {run: max((tmp_path / run / "checkpoints").glob("step-*")) / "weights.safetensors" for run in ("full", "part")}
    a, b = load_file(newest["full"]), load_file(newest["part"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "full", "train") == losses(tmp_path / "part", "train")


def test_eval_reports_the_split_and_refuses_changed_data(tmp_path, capsys):
    data = sentiment_file(tmp_path / "s.tsv")
    cfg = load_config(None, ["task=classify", f"data.path={data}", "model=bow", "train.max_epochs=1", *TRAIN])
    fit(cfg, tmp_path / "run", log=lambda m: None)
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["split"] == "test" and 0 <= row["accuracy"] <= 1
    sentiment_file(data, seed=5, n=50)          # the data changed under the run
    with pytest.raises(SeqlabError, match="data has changed"):
        evaluate_run(tmp_path / "run", "test", log=lambda m: None)


@pytest.mark.parametrize("overrides, message", [
    (["task=classify", "model=tcn"], "works with model.name"),
    (["task=classify", "data=shakespeare", "model=lstm"], "reads data.corpus"),
    (["task=tag", "data.path=x", "model=lstm", "task.tagset=tiny"], "task.tagset"),
    (["task=classify", "data.path=x", "model=lstm", "task.batching=random"], "task.batching"),
    (["task=nope"], "unknown task"),
])
def test_bad_task_options_are_one_line_errors(overrides, message):
    with pytest.raises(SeqlabError, match=message):
        load_config(None, overrides)


def test_bad_input_files_say_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos a fine film without a tab\n")
    code = main(["train", "task=classify", f"data.path={bad}", "model=bow", "train.progress=false",
                 "--out", str(tmp_path / "r")])
    assert code == 2 and "expected LABEL<TAB>TEXT" in capsys.readouterr().err
    bad.write_text("the/DT dog\n")
    code = main(["train", "task=tag", f"data.path={bad}", "model=lstm", "train.progress=false",
                 "--out", str(tmp_path / "r2")])
    assert code == 2 and "word/TAG" in capsys.readouterr().err


def test_data_list_shows_corpora_and_datasets_and_fetch_rejects_unknown_names(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("shakespeare", "sentiment", "brown", "en-es", "series"))
    assert main(["data", "fetch", "imdb"]) == 2
    assert "unknown corpus or dataset 'imdb'" in capsys.readouterr().err


# -- forecast -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["ar", "gru"])
def test_forecast_run_beats_seasonal_naive_and_forecasts_the_future(tmp_path, model, capsys):
    data = seasonal_csv(tmp_path / "series.csv")
    network = [] if model == "ar" else ["model.hidden_size=16", "model.num_layers=1", "model.dropout=0"]
    code = main(["train", "task=forecast", f"data.path={data}", f"model={model}", "task.period=12", "task.horizon=12",
                 "task.transform=1", *network, "train.max_steps=300", "train.lr=0.01", "train.batch_size=8",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    assert (tmp_path / "run" / "forecast.png").stat().st_size > 1000
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["one_step_mase"] < 1 and scores["one_step_mase"] < scores["seasonal_naive_one_step_mase"]
    assert main(["forecast", str(tmp_path / "run"), "--steps", "5", "--json", "--plot", str(tmp_path / "f.png")]) == 0
    future = json.loads(capsys.readouterr().out)["forecast"]
    assert len(future) == 5 and all(np.isfinite(future)) and (tmp_path / "f.png").is_file()


def test_forecast_errors(tmp_path, capsys):
    short = tmp_path / "short.csv"
    short.write_text("1\n2\n3\n4\n5\n")
    assert main(["train", "task=forecast", f"data.path={short}", "model=ar", "--out", str(tmp_path / "r")]) == 2
    assert "too few" in capsys.readouterr().err
    with pytest.raises(SeqlabError, match="task.transform"):
        load_config(None, ["task=forecast", "data=airline", "model=ar", "task.transform=log,twelve"])


# -- translate ------------------------------------------------------------------------------------

def test_translation_learns_reversal_and_the_cli_translates_with_an_attention_map(tmp_path, capsys):
    rng = random.Random(0)
    with open(tmp_path / "pairs.tsv", "w") as f:
        for _ in range(1200):
            words = [rng.choice("abcdef") for _ in range(rng.randint(2, 5))]
            f.write(f"{' '.join(words)}\t{' '.join(reversed(words))}\n")
    cfg = load_config(None, ["task=translate", f"data.path={tmp_path / 'pairs.tsv'}", "model=gru",
                             "task.sampling=linear", "task.sampling_min=0.8", "task.beam_size=3", *FAST,
                             "model.hidden_size=32", "train.batch_size=32", "train.max_steps=150", "train.eval_every=50"])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    train = losses(tmp_path / "run", "train")
    assert train[-1] < 0.3 * train[0] and result["sequence_accuracy"] > 0.5 and result["bleu"] > 50
    assert main(["eval", str(tmp_path / "run"), "--split", "valid", "--json"]) == 0     # beam search, width 3
    assert json.loads(capsys.readouterr().out)["sequence_accuracy"] > 0.5
    png = tmp_path / "attention.png"
    assert main(["translate", str(tmp_path / "run"), "--text", "a b c", "--attention", str(png)]) == 0
    assert capsys.readouterr().out.strip() == "c b a" and png.stat().st_size > 1000
    assert main(["translate", str(tmp_path / "run"), "--text", "a zz c"]) == 0        # a word it never saw
    err = capsys.readouterr().err
    assert "1 word(s) the run never saw in training, read as <unk>: 'zz'" in err


def test_the_scheduled_sampling_probability_used_in_training_follows_the_schedule():
    from seqlab.tasks.translate import _schedule_params
    from seqlab.training.schedules import sampling_prob
    cfg = load_config(None, ["task=translate", "data=reverse", "model=lstm", "task.sampling=linear",
                             "task.sampling_min=0.25", "train.max_steps=100"])
    probs = [sampling_prob("linear", i, 0.25, **_schedule_params(cfg)) for i in (0, 50, 100, 200)]
    assert probs == pytest.approx([0.0, 0.375, 0.75, 0.75])     # 1 - max(0.25, 1 - 0.0075 i)
    with pytest.raises(SeqlabError, match="sampling_c"):
        load_config(None, ["task=translate", "data=reverse", "model=lstm", "task.sampling=linear",
                           "train.max_steps=0"])


# -- conditional generation (one-to-many) -----------------------------------------------------

@pytest.mark.parametrize("condition", ["init", "input", "both"])
def test_conditional_lm_learns_its_classes_and_samples_them(tmp_path, condition, capsys):
    data = tmp_path / "c.tsv"
    rng = random.Random(0)
    with open(data, "w") as f:
        for _ in range(300):
            label = rng.choice(["up", "down"])
            word = "rise" if label == "up" else "fall"
            f.write(f"{label}\tprices {' '.join([word] * rng.randint(2, 4))} today\n")
    cfg = load_config(None, ["task=conditional", f"data.path={data}", "model=gru", f"task.condition={condition}",
                             "train.max_epochs=6", *FAST])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    train = losses(tmp_path / "run", "train")
    assert train[-1] < 0.5 * train[0] and result["label_accuracy"] > 0.95
    for label, word in (("up", "rise"), ("down", "fall")):
        assert main(["sample", str(tmp_path / "run"), "--condition", label, "--greedy", "--length", "8"]) == 0
        out = capsys.readouterr().out.split()
        assert out[0] == "prices" and word in out and out[-1] == "today"
    assert main(["sample", str(tmp_path / "run"), "--condition", "sideways"]) == 2
    assert main(["sample", str(tmp_path / "run"), "--condition", "up", "--num-samples", "2"]) == 2
    assert "--num-samples applies to language-model runs" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "run"), "--condition", "up", "--beam", "3", "--length", "8"]) == 0
    assert capsys.readouterr().out.split()[-1] == "today"


# -- options a task's model would drop are refused, never silently ignored (issue 16) ------------

DROPPED = [
    (["task=forecast", "model=lstm", "model.kernel_size=5", "model.context=4"], "model.kernel_size=5, model.context=4"),
    (["task=forecast", "model=ar", "model.hidden_size=16"], "model.hidden_size=16"),
    (["task=forecast", "model=window", "model.zoneout=0.1"], "model.zoneout=0.1"),
    (["task=conditional", "model=lstm", "model.smoothing=witten_bell"], "model.smoothing='witten_bell'"),
    (["task=translate", "data=reverse", "model=lstm", "model.peephole=true"], "model.peephole=True"),
    (["task=bilm", "model=lstm", "model.hidden_size=16", "model.embedding_size=16", "model.kernel_size=5"],
     "model.kernel_size=5"),
]


@pytest.mark.parametrize("overrides,named", DROPPED, ids=[" ".join(o) for o, _ in DROPPED])
def test_options_the_tasks_model_would_drop_are_refused_before_training(tmp_path, capsys, overrides, named):
    data = seasonal_csv(tmp_path / "series.csv") if "task=forecast" in overrides else sentiment_file(tmp_path / "s.tsv")
    overrides = overrides if "data=reverse" not in overrides else [o for o in overrides if o != "data=reverse"]
    out = tmp_path / "run"
    assert main(["train", *overrides, f"data.path={data}", "train.max_steps=2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error: ") and "would not use " + named in err, err
    assert not out.exists()


def test_the_cell_options_a_forecaster_was_refused_now_shape_its_weights(tmp_path):
    """Issue 16's example: model.layer_norm and model.peephole reach the forecaster's LSTM."""
    data = seasonal_csv(tmp_path / "series.csv")
    common = ["task=forecast", f"data.path={data}", "model=lstm", "task.period=12", "task.horizon=12",
              "task.transform=1", "model.hidden_size=8", "model.num_layers=1", "train.max_steps=4",
              "train.eval_every=2", "train.progress=false", "train.threads=1"]
    assert main(["train", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", *common, "model.layer_norm=true", "model.peephole=true", "--out", str(tmp_path / "cell")]) == 0
    plain, cell = (set(load_file(tmp_path / r / "model.safetensors")) for r in ("plain", "cell"))
    assert "rnn.weight_ih_l0" in plain and "rnn.weight_ih_l0" not in cell
    assert {"rnn.layers.0.cell.weight_ci", "rnn.layers.0.cell.weight_cf", "rnn.layers.0.cell.weight_co"} <= cell
    assert any("norm" in k for k in cell), sorted(cell)
