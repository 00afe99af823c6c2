"""seqlab export --format onnx (export/onnx.py): the step graph run by onnxruntime gives
seqlab's logits (within 1e-5) over 100 steps for every neural family, at any batch size;
the metadata starts a sequence without seqlab; bad requests are one line and leave nothing."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import seqlab
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import load_config
from seqlab.export.onnx import export_onnx, flatten
from seqlab.models import build_model

from conftest import TINY, make_text

FAMILIES = ["rnn", "jordan", "lstm", "gru", "mingru", "minlstm", "window", "tcn", "wavenet"]
SMALL = ["model.hidden_size=16", "model.embedding_size=8", "model.num_layers=2", "model.context=4", "model.kernel_size=2"]


def fresh_state(meta: dict, batch: int) -> list[np.ndarray]:
    """A sequence's start, from the file's metadata alone."""
    shapes, dtypes, fills = (json.loads(meta[k]) for k in ("state_shapes", "state_dtypes", "state_fill"))
    return [np.full([batch, *shape], fill, dtype) for shape, dtype, fill in zip(shapes, dtypes, fills)]


@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_steps_like_seqlab_for_100_steps(family, tmp_path):
    cfg = load_config(None, [f"model={family}", *SMALL])
    torch.manual_seed(0)
    model = build_model(cfg.model, 20).eval()
    itos = [f"t{i}" for i in range(20)]
    export_onnx(model, family, itos, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == itos and meta["family"] == family
    B = 3                                                       # exported with 2: the batch axis is free
    state, theirs = model.init_state(B), fresh_state(meta, B)
    for ours, start in zip(flatten(state)[0], theirs):
        np.testing.assert_array_equal(ours.numpy(), start)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for _ in range(100):
            token = torch.randint(4, 20, (B,), generator=generator)
            logits, state = model.step(token, state)                              # seqlab's decoding step
            out = session.run(None, {"token": token.numpy(), **{f"state_{i}": s for i, s in enumerate(theirs)}})
            theirs = out[1:]
            worst = max(worst, float(np.abs(out[0] - logits.numpy()).max()))
    assert worst < 1e-5, worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    corpus = folder / "c.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    torch.set_num_threads(1)
    common = [f"data.path={corpus}", *TINY, "train.max_steps=10", "train.threads=1"]
    return {"lstm": seqlab.train(common, out=folder / "lstm").path,
            "ngram": seqlab.train([f"data.path={corpus}", "model=ngram", "model.order=3"], out=folder / "ngram").path}


def test_the_command_writes_a_file_another_runtime_generates_from(runs, tmp_path, capsys):
    out = tmp_path / "deep" / "demo.onnx"
    assert main(["export", str(runs["lstm"]), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    run = seqlab.load(runs["lstm"], "cpu")
    session = ort.InferenceSession(str(out))
    meta = session.get_modelmeta().custom_metadata_map
    vocab = json.loads(meta["vocab"])
    assert vocab == run.vocab
    state, logits_ours, st = fresh_state(meta, 1), None, run.model.init_state(1)
    for ch in "The king":
        token = np.array([vocab.index(ch)])
        out_ = session.run(None, {"token": token, **{f"state_{i}": s for i, s in enumerate(state)}})
        state = out_[1:]
        with torch.no_grad():
            logits_ours, st = run.model.step(torch.from_numpy(token), st)
        np.testing.assert_allclose(out_[0], logits_ours.numpy(), atol=1e-5, rtol=0)
    assert main(["export", str(runs["ngram"]), "-o", str(tmp_path / "lm.arpa")]) == 0
    assert (tmp_path / "lm.arpa").read_text().startswith("\n\\data\\\nngram 1=")


@pytest.mark.parametrize("which, argv, words", [
    ("lstm", ["--format", "tflite"], "export format must be one of onnx, arpa; got tflite"),
    ("lstm", [], "name the file .onnx or .arpa"),                                      # -o x.bin
    ("ngram", ["--format", "onnx"], "counted, not a neural network"),
    ("lstm", ["--format", "arpa"], "ARPA holds n-gram models"),
])
def test_bad_requests_are_one_line_and_write_nothing(runs, which, argv, words, tmp_path, capsys):
    out = tmp_path / ("x.bin" if not argv else "x.out")
    assert main(["export", str(runs[which]), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_path_and_a_failing_exporter_leave_nothing(runs, tmp_path, capsys, monkeypatch):
    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", str(runs["lstm"]), "-o", str(tmp_path / "folder.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(runs["lstm"]), "-o", "/proc/seqlab-test.onnx"]) == 2      # a place nothing is written
    err = capsys.readouterr().err
    assert "cannot write /proc/seqlab-test.onnx" in err and err.count("\n") == 1

    def broken(*args, **kwargs):
        raise RuntimeError("the exporter fell over\nwith a long story")
    monkeypatch.setattr(torch.onnx, "export", broken)
    assert main(["export", str(runs["lstm"]), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "torch.onnx could not export model.name=lstm (RuntimeError: the exporter fell over)" in err
    assert err.count("\n") == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx"]
    with pytest.raises(SeqlabError, match="model.name=hmm is counted"):
        export_onnx(build_model(load_config(None, ["model=hmm"]).model, 8), "hmm", ["a"] * 8, tmp_path / "h.onnx")
