"""Property tests (hypothesis): whatever a user types as options, and however a run's files are
damaged, seqlab either works or says what is wrong in one line with exit 2 — never a
traceback, never a hang (each case runs under a time limit), never a giant allocation.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import make_text
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import all_keys, load_config
from seqlab.models import build_model
from helpers import T, time_limit

KEYS = [key for key, *_ in all_keys()]
VALUES = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.integers(min_value=-3, max_value=4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["true", "false", "nan", "inf", "-inf", "1e309", "", " ", "0", "-1", "2147483648",
                     "lstm", "gru", "tcn", "wavenet", "ngram", "window", "hmm", "word", "char", "bf16", "fused"]),
    st.text(max_size=12),
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_any_overrides_give_a_config_and_a_model_or_one_clear_error(pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    with time_limit(20):
        try:
            cfg = load_config(None, ["data.path=x.txt", *T, *overrides])
        except SeqlabError as e:
            assert "\n" not in str(e)
            return
        if cfg.task.name != "lm":
            return                       # task models are built by their task, from data
        try:
            build_model(cfg.model, 50)
        except SeqlabError as e:
            assert "\n" not in str(e)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzrun")
    corpus = root / "small.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    assert main(["train", f"data.path={corpus}", *T, "--out", str(root / "run")]) == 0
    return root / "run"


FILES = ["config.json", "vocab.json", "model.safetensors", "metrics.jsonl",
         "checkpoints/step-00000005/manifest.json", "checkpoints/step-00000005/state.pt",
         "checkpoints/step-00000005/weights.safetensors"]
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**64, max_value=2**64),
                        st.floats(allow_nan=False), st.text(max_size=8), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def mutate(path: Path, how: str, where: float, payload: bytes, value) -> None:
    data = path.read_bytes()
    at = int(where * len(data))
    if how == "truncate":
        path.write_bytes(data[:at])
    elif how == "flip":
        if data:
            at = min(at, len(data) - 1)
            path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    elif how == "splice":
        path.write_bytes(data[:at] + payload + data[at + len(payload):])
    elif how == "json" and path.suffix == ".json":
        doc = json.loads(data)
        # replace one value somewhere in the document
        node, keys = doc, []
        while isinstance(node, dict) and node:
            key = sorted(node)[int(where * 1000) % len(node)]
            keys.append(key)
            if not isinstance(node[key], dict) or len(keys) > 2:
                break
            node = node[key]
        if keys:
            target = doc
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
        path.write_text(json.dumps(doc))


def _damaged_run_files(trained, capsys, name, how, where, payload, value):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(trained, run)
        mutate(run / name, how, where, payload, value)
        for argv in (["eval", str(run)], ["sample", str(run), "--length", "3", "--seed", "0"],
                     ["train", "--resume", str(run), "train.max_steps=6"]):
            capsys.readouterr()
            with time_limit(30):
                code = main(argv)
            err = capsys.readouterr().err
            assert code in (0, 2), (argv, code, err)
            if code == 2:
                errors = [line for line in err.splitlines() if line.startswith("seqlab: error: ")]
                assert len(errors) == 1 and "Traceback" not in err, err


# each case costs three commands, so a failure is reported as found, without shrinking; `make test`
# runs 25 cases (the suite's time budget), `pytest -m slow` 250
DAMAGE = dict(name=st.sampled_from(FILES), how=st.sampled_from(["truncate", "flip", "splice", "json"]),
              where=st.floats(min_value=0, max_value=1), payload=st.binary(min_size=1, max_size=16), value=JSON_VALUES)
QUICK = dict(deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.reuse, Phase.generate])
test_damaged_run_files_are_used_or_refused_in_one_line = settings(max_examples=10, **QUICK)(
    given(**DAMAGE)(_damaged_run_files))
test_damaged_run_files_slow = pytest.mark.slow(settings(max_examples=250, **QUICK)(given(**DAMAGE)(_damaged_run_files)))
