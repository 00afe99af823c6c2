"""The paper-reproduction runner (bench/suite.py), its two benchmarks' cells and the sequence-task trainer."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqlab.bench import bai2018, karpathy2016, suite
from seqlab.bench.suite import Benchmark, Cell, Options


# -- the runner -------------------------------------------------------------------------------------

def fake_benchmark(name: str, calls: list[str], fail: set[str] = frozenset()) -> Benchmark:
    def make(cid: str, value: float):
        def run(options):
            calls.append(f"toy/{cid}")
            if f"toy/{cid}" in fail:
                raise RuntimeError(f"{cid} broke")
            return {"value": value, "metrics": {"loss": value}, "config": {"x": 1}, "data": "toy data", "parameters": 10}
        return run

    def cells(profile):
        return [Cell(f"toy/{cid}", "Toy table", f"row {cid}", "loss", make(cid, v), 1.0, paper, "p-note")
                for cid, v, paper in (("a", 0.5, 0.25), ("b", 0.75, None), ("c", 1.5, 2.0))]
    return suite.add(Benchmark(name, "A toy benchmark", "Nobody 2024", cells))


QUIET = Options(progress=False, log=lambda m: None)


def test_runner_skips_recorded_cells_and_reruns_on_request(tmp_path):
    calls: list[str] = []
    fake_benchmark("toy-skip", calls)
    assert suite.run("toy-skip", "quick", out=tmp_path, options=QUIET) == 0
    assert calls == ["toy/a", "toy/b", "toy/c"]
    assert suite.run("toy-skip", "quick", out=tmp_path, options=QUIET) == 0
    assert calls == ["toy/a", "toy/b", "toy/c"]                      # nothing rerun
    assert suite.run("toy-skip", "quick", only=["toy/b"], rerun=True, out=tmp_path, options=QUIET) == 0
    assert calls[-1] == "toy/b" and len(calls) == 4
    # another profile is recorded separately
    suite.run("toy-skip", "full", only=["a"], out=tmp_path, options=QUIET)
    cells = json.loads((tmp_path / "results" / "toy-skip.json").read_text())["cells"]
    assert set(cells) == {"quick/toy/a", "quick/toy/b", "quick/toy/c", "full/toy/a"}


def test_a_crash_in_one_cell_keeps_the_others(tmp_path):
    calls: list[str] = []
    fake_benchmark("toy-crash", calls, fail={"toy/b"})
    assert suite.run("toy-crash", "quick", out=tmp_path, options=QUIET) == 1
    cells = json.loads((tmp_path / "results" / "toy-crash.json").read_text())["cells"]
    assert set(cells) == {"quick/toy/a", "quick/toy/c"}
    # the next run only retries the failed cell
    assert suite.run("toy-crash", "quick", out=tmp_path, options=QUIET) == 1
    assert calls == ["toy/a", "toy/b", "toy/c", "toy/b"]


def test_ctrl_c_keeps_finished_cells(tmp_path):
    calls: list[str] = []
    bench = fake_benchmark("toy-interrupt", calls)
    original = bench.cells

    def cells(profile):
        out = original(profile)

        def interrupt(options):
            raise KeyboardInterrupt
        return [out[0], Cell("toy/b", "Toy table", "row b", "loss", interrupt, 1.0), out[2]]
    object.__setattr__(bench, "cells", cells)
    assert suite.run("toy-interrupt", "quick", out=tmp_path, options=QUIET) == 130
    cells_done = json.loads((tmp_path / "results" / "toy-interrupt.json").read_text())["cells"]
    assert set(cells_done) == {"quick/toy/a"}


def test_record_holds_the_required_fields_and_markdown_puts_the_paper_beside_ours(tmp_path):
    fake_benchmark("toy-fields", [])
    suite.run("toy-fields", "quick", out=tmp_path, options=QUIET)
    record = json.loads((tmp_path / "results" / "toy-fields.json").read_text())["cells"]["quick/toy/a"]
    for key in ("metrics", "config", "commit", "machine", "data", "wall_s", "date", "command", "paper", "value"):
        assert key in record, key
    assert record["command"] == "seqlab bench run toy-fields --profile quick --only toy/a --rerun"
    text = (tmp_path / "toy-fields.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| row a |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[1] == "0.5000" and cols[2].startswith("0.25") and "toy data" in row and record["command"] in row


def test_only_that_matches_nothing_is_an_error(tmp_path):
    fake_benchmark("toy-only", [])
    with pytest.raises(suite.SeqlabError, match="matches no cell"):
        suite.run("toy-only", "quick", only=["zzz"], out=tmp_path, options=QUIET)


def test_cli_list_and_dry_run(tmp_path, capsys):
    assert suite.main(["list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "karpathy2016" in out and "bai2018" in out and "speed" in out
    assert suite.main(["run", "bai2018", "--dry-run", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "results").exists()


# -- the benchmarks' grids ---------------------------------------------------------------------------

def test_cell_ids_are_unique_and_quick_fits_in_two_hours():
    for name in ("karpathy2016", "bai2018"):
        bench = suite.benchmark(name)
        for profile in suite.PROFILES:
            ids = [c.id for c in bench.cells(profile)]
            assert len(ids) == len(set(ids)), (name, profile)
        assert sum(c.estimate_s for c in bench.cells("quick")) <= 2 * 3600, name


@pytest.mark.parametrize("task", ["adding", "copy", "seqmnist", "chorales"])
def test_quick_models_are_within_ten_percent_of_the_budget(task):
    from seqlab.config import load_config
    from seqlab.tasks.sequence import SequenceTask
    for family, spec in bai2018.specs(task, "quick").items():
        cfg = load_config(None, bai2018.task_overrides(task, spec, "quick", QUIET))
        count = sum(p.numel() for p in SequenceTask(cfg).build_model().parameters())
        assert abs(count - spec.budget) <= 0.1 * spec.budget, (task, family, count, spec.budget)


def test_quick_character_lms_are_within_ten_percent_of_their_budget():
    from seqlab.config import load_config
    from seqlab.models import build_model
    for family in bai2018.FAMILIES:
        overrides, budget = bai2018.charlm_overrides(family, "quick")
        cfg = load_config(None, overrides)
        count = sum(p.numel() for p in build_model(cfg.model, 84).parameters())   # Shakespeare: 84 symbols + 4
        assert abs(count - budget) <= 0.1 * budget, (family, count)


def test_karpathy_cells_build_valid_configs():
    from seqlab.config import load_config
    for cell in karpathy2016.cells("quick")[:1]:
        assert "Table 1" in cell.group
    overrides = ["data.corpus=linux", *karpathy2016.SPLIT, *karpathy2016.NEURAL, "model.name=gru"]
    cfg = load_config(None, overrides)
    assert cfg.data.valid_fraction == 0.1 and cfg.data.test_fraction == 0.1


def test_karpathy_lm_cell_reports_test_cross_entropy(tmp_path, text_file):
    # a count model: fitted in one pass, scored on the test split
    result = karpathy2016.lm_cell([f"data.path={text_file}", *karpathy2016.SPLIT, "model.name=ngram",
                                   "model.order=3"], QUIET)
    assert 0.5 < result["value"] < np.log(30)          # far below a uniform guess over the symbols
    assert result["metrics"]["test_tokens"] > 1000 and result["parameters"] is None




def test_a_run_without_out_writes_a_folder_of_its_own_and_fetches_what_the_cells_read(tmp_path, monkeypatch):
    """In a clone, `bench run NAME` must run the benchmark, not find the committed results and
    stop; and a cell's corpus is fetched before the first cell, not found missing inside it."""
    monkeypatch.chdir(tmp_path)
    fetched, calls = [], []

    class Source:
        def is_ready(self):
            return bool(fetched)

        def fetch(self, log=print):
            fetched.append("toy-corpus")

    monkeypatch.setattr(suite, "find", lambda kind, name: Source() if (kind, name) == ("corpus", "toy-corpus") else None)

    def run(options):
        calls.append(list(fetched))
        return {"value": 1.0}

    suite.add(Benchmark("toy-data", "A toy benchmark", "Nobody 2024",
                        lambda profile: [Cell("toy/a", "T", "a", "loss", run, 1.0, data=("toy-corpus", "generated"))]))
    said = []
    assert suite.run("toy-data", "quick", options=Options(progress=False, log=said.append)) == 0
    assert (tmp_path / "runs" / "bench" / "results" / "toy-data.json").is_file()
    assert not (tmp_path / "benchmarks").exists()
    assert calls == [["toy-corpus"]]                                   # fetched once, before the cell ran
    assert any("fetching toy-corpus" in m for m in said)
    said.clear()
    assert suite.run("toy-data", "quick", options=Options(progress=False, log=said.append)) == 0
    assert calls == [["toy-corpus"]] and any("--rerun runs them again" in m for m in said)
