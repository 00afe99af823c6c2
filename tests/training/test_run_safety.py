"""Never lose a user's files, never race, and say the true cause (issue 15).

- --overwrite removes only what seqlab wrote, and refuses a folder holding anything else;
- one writer per run folder (flock on the folder, dies with its process);
- checkpoints are identified by their manifest, and links are never followed;
- mismatches between config, vocabulary and weights are named as such, not as corruption;
- every bad option, file or tampered run is one line with exit 2: no traceback, no hang,
  nothing written.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import make_text
from seqlab.cli import main
from helpers import T, seasonal_csv, sentiment_file, tagged_file, time_limit

TASK = ["model.hidden_size=16", "model.embedding_size=8", "model.num_layers=1", "train.max_steps=4", "train.batch_size=8",
        "train.eval_every=4", "train.progress=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small trained run of each kind, made once; tests copy before they tamper."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "small.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    torch.set_num_threads(1)
    made = {
        "char": ["train", f"data.path={corpus}", *T],
        "word": ["train", f"data.path={corpus}", "data.level=word", *T],
        "classify": ["train", "task=classify", f"data.path={sentiment_file(root / 's.tsv', n=120)}", "model=gru", *TASK],
        "tag": ["train", "task=tag", f"data.path={tagged_file(root / 't.txt', n=80)}", "model=lstm", *TASK],
        "translate": ["train", "task=translate", "data=reverse", "model=lstm", *TASK],
        "forecast": ["train", "task=forecast", f"data.path={seasonal_csv(root / 'series.csv')}", "model=ar",
                     "task.period=12", "task.horizon=12"],
    }
    for name, argv in made.items():
        assert main([*argv, "--out", str(root / name)]) == 0, name
    return root


def copy_run(runs: Path, name: str, where: Path) -> Path:
    target = where / name
    shutil.copytree(runs / name, target)
    return target


def one_line_error(argv: list[str], capsys, seconds: int = 60) -> str:
    """Run the CLI in-process: exit 2, one line on stderr, no traceback; returns that line."""
    capsys.readouterr()
    with time_limit(seconds):
        code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("seqlab: error: "), err
    return err


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. --overwrite removes only what seqlab wrote ----------------------------------------------

def test_overwrite_refuses_a_users_project_folder_and_deletes_nothing(tmp_path, runs, capsys, monkeypatch):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"name": "app"}')
    (project / "src" / "main.py").write_text("print(1)\n")
    before = tree(project)
    monkeypatch.chdir(project)
    err = one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, "--out", ".", "--overwrite"], capsys)
    assert "not a seqlab run" in err and "config.json" in err and "src" in err
    assert "resume" not in err and "checkpoint" not in err
    assert tree(project) == before


def test_overwrite_refuses_an_empty_json_config_beside_a_thesis(tmp_path, runs, capsys):
    folder = tmp_path / "thesis"
    (folder / "keep").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "thesis.tex").write_text("\\documentclass{article}")
    (folder / "keep" / "data.csv").write_text("a,b\n1,2\n")
    before = tree(folder)
    err = one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, "--out", str(folder), "--overwrite"], capsys)
    assert "not a seqlab run" in err
    assert tree(folder) == before


def test_overwrite_refuses_a_run_holding_user_files_and_names_them(tmp_path, runs, capsys):
    run = copy_run(runs, "char", tmp_path)
    (run / "notes.txt").write_text("what I tried")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.png").write_bytes(b"\x89PNG")
    (run / "viz.html").write_text("<html>")
    before = tree(run)
    err = one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, "--out", str(run), "--overwrite"], capsys)
    for name in ("notes.txt", "analysis/", "viz.html"):
        assert name in err, err
    assert tree(run) == before


def test_overwrite_replaces_a_run_holding_only_seqlabs_files(tmp_path, runs, capsys):
    run = copy_run(runs, "char", tmp_path)
    (run / "checkpoints" / ".step-00000009.abc.tmp").mkdir()         # a save cut off by a kill
    assert main(["train", f"data.path={runs / 'small.txt'}", *T, "train.max_steps=3", "train.eval_every=3",
                 "--out", str(run), "--overwrite"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000000", "step-00000003"]


def test_out_naming_a_file_or_a_dangling_link(tmp_path, runs, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert "is a file" in one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, "--out", str(target)], capsys)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert "link to nothing" in one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, "--out",
                                                str(tmp_path / "link")], capsys)


# -- 2. one writer at a time ----------------------------------------------------------------------

def seqlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqlab.cli", *args]


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_kill_leaves_no_lock(tmp_path, runs):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(seqlab("train", f"data.path={runs / 'small.txt'}", *T, "train.max_steps=100000",
                                    "train.eval_every=100000", "train.checkpoint_every=50", "--out", str(run)),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(run.glob("checkpoints/step-*")):         # training has started
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline
            time.sleep(0.2)
        for argv in (["train", f"data.path={runs / 'small.txt'}", *T, "--out", str(run), "--overwrite"],
                     ["train", "--resume", str(run), "train.max_steps=200000"]):
            second = subprocess.run(seqlab(*argv), env=env, capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"being written by another seqlab process (PID {first.pid})" in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None                                # the first run was not disturbed
    finally:
        first.kill()
        first.wait()
    # SIGKILL drops the lock with the process: the run resumes at once
    done = subprocess.run(seqlab("train", "--resume", str(run), "train.max_steps=1"), env=env, capture_output=True,
                          text=True, timeout=120)
    assert "being written" not in done.stderr, done.stderr


# -- 3. mismatches are named as such -------------------------------------------------------------

def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_config_that_disagrees_with_the_weights_names_the_parameter_and_both_shapes(tmp_path, runs, capsys):
    run = copy_run(runs, "char", tmp_path)
    edit_json(run / "config.json", lambda m: m["config"]["model"].update(hidden_size=20))
    err = one_line_error(["sample", str(run), "--length", "5"], capsys)
    assert "rnn.weight_ih_l0 is (64, 8) in the file but (80, 8)" in err and "corrupted" not in err
    err = one_line_error(["train", "--resume", str(run), "train.max_steps=10"], capsys)
    assert "(64, 8) in the file but (80, 8)" in err and "--overwrite" not in err


def test_a_vocabulary_of_the_wrong_length_is_named(tmp_path, runs, capsys):
    run = copy_run(runs, "char", tmp_path)
    edit_json(run / "vocab.json", lambda v: v.update(tokens=v["tokens"][:-1]))
    err = one_line_error(["eval", str(run)], capsys)
    assert "vocab.json has 42 tokens but the weights" in err and "embed 43" in err


@pytest.mark.parametrize("kind,verb", [("classify", "classify"), ("tag", "tag"), ("translate", "translate"),
                                       ("forecast", "forecast")])
def test_sample_on_a_task_run_names_the_verb_to_use(runs, capsys, kind, verb):
    err = one_line_error(["sample", str(runs / kind), "--length", "5"], capsys)
    assert f"task.name={kind} run, not a language model" in err and f"seqlab {verb} " in err
    assert "corrupted" not in err


# -- 6. checkpoints by manifest; links not followed ----------------------------------------------

def test_a_linked_or_renamed_checkpoint_is_never_used_nor_allowed_to_prune_the_real_ones(tmp_path, runs, capsys):
    donor = copy_run(runs, "char", tmp_path / "donor")
    run = tmp_path / "run"
    assert main(["train", f"data.path={runs / 'small.txt'}", *T, "train.max_steps=8", "train.checkpoint_every=2",
                 "--out", str(run)]) == 0
    genuine = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert genuine == ["step-00000006", "step-00000008"]
    (run / "checkpoints" / "step-99999999").symlink_to(donor / "checkpoints" / "step-00000005")
    shutil.copytree(donor / "checkpoints" / "step-00000005", run / "checkpoints" / "step-99999998")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "train.max_steps=10"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "at update 8 " in out
    assert "holds update 5 by its manifest.json, not 99999998" in out
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "step-00000010" in names and "step-00000008" in names          # the genuine ones were kept
    assert (run / "checkpoints" / "step-99999999").is_symlink()              # the link was not followed
    assert (donor / "checkpoints" / "step-00000005" / "weights.safetensors").is_file()


# -- 8. permissions follow the umask ---------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_every_file_of_a_run_gets_the_same_permissions(tmp_path, runs, umask, mode):
    run = tmp_path / "run"
    code = f"import os, sys; os.umask({umask}); from seqlab.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "train", f"data.path={runs / 'small.txt'}", *T,
                           "--out", str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert "model.safetensors" in modes and any(k.endswith("weights.safetensors") for k in modes)
    assert set(modes.values()) == {mode}, modes


# -- 4, 5, 7, 9, 10: one line, exit 2, nothing written ------------------------------------------

TRAIN_REFUSALS = [
    (["train.lr=nan"], "train.lr must be a finite number"),
    (["train.weight_decay=nan"], "train.weight_decay must be a finite number"),
    (["train.clip_norm=nan"], "train.clip_norm must be a finite number"),
    (["train.max_time=nan"], "train.max_time must be a finite number"),
    (["train.max_time=inf"], "train.max_time must be a finite number"),
    (["model.num_layers=1000000"], "model.num_layers must be at most 1000"),
    (["model.hidden_size=10000000"], "more than this machine's"),
    (["train.batch_size=99999999999999"], "far too large"),
    (["data.level=word", "data.min_count=100000"], "data.min_count=100000 leaves no token"),
]


@pytest.mark.parametrize("extra,message", TRAIN_REFUSALS, ids=[" ".join(e) for e, _ in TRAIN_REFUSALS])
def test_bad_training_options(tmp_path, runs, capsys, extra, message):
    out = tmp_path / "run"
    err = one_line_error(["train", f"data.path={runs / 'small.txt'}", *T, *extra, "--out", str(out)], capsys, 30)
    assert message in err
    assert not out.exists()                                         # nothing written, not even the folder


def test_a_preset_that_is_not_utf8(tmp_path, runs, capsys):
    preset = tmp_path / "bad.toml"
    preset.write_bytes(b"[train]\nlr = 0.1\n# \xff\xfe\n")
    assert "not UTF-8" in one_line_error(["train", "--config", str(preset), f"data.path={runs / 'small.txt'}",
                                          "--out", str(tmp_path / "r")], capsys)


def test_a_data_cache_that_names_a_file(tmp_path, runs, capsys, monkeypatch):
    cache = tmp_path / "cachefile"
    cache.write_text("x")
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    for argv in (["data", "fetch", "pystdlib"], ["data", "fetch", "shakespeare"],
                 ["train", f"data.path={runs / 'small.txt'}", *T, "data.memmap=true", "--out", str(tmp_path / "r")]):
        assert "point SEQLAB_DATA at a folder" in one_line_error(argv, capsys)
    assert not (tmp_path / "r").exists()


def nan_weights(run: Path) -> None:
    weights = {k: v.clone() for k, v in load_file(run / "model.safetensors").items()}
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        metadata = f.metadata()
    first = next(iter(weights))
    weights[first].view(-1)[0] = float("nan")
    save_file(weights, run / "model.safetensors", metadata=metadata)


def tamper(kind: str, run: Path) -> None:
    if kind == "nan-weights":
        nan_weights(run)
    elif kind == "huge-hidden":
        edit_json(run / "config.json", lambda m: m["config"]["model"].update(hidden_size=10000000))
    elif kind == "deep":
        edit_json(run / "config.json", lambda m: m["config"]["model"].update(num_layers=1000000))
    elif kind == "int-tokens":
        edit_json(run / "vocab.json", lambda v: v.update(tokens=list(range(len(v["tokens"])))))
    elif kind == "vocab-fifo":
        (run / "vocab.json").unlink()
        os.mkfifo(run / "vocab.json")
    elif kind == "config-fifo":
        (run / "config.json").unlink()
        os.mkfifo(run / "config.json")
    elif kind == "task-not-a-table":
        edit_json(run / "config.json", lambda m: m["config"].update(task="x"))


TAMPERED = [("nan-weights", "NaN or infinite weights"), ("huge-hidden", "more than this machine's"),
            ("deep", "model.num_layers must be at most 1000"), ("int-tokens", "not a seqlab vocabulary"),
            ("vocab-fifo", "vocab.json is a FIFO"), ("config-fifo", "config.json is a FIFO"),
            ("task-not-a-table", "config.json is not a valid run config")]


@pytest.mark.parametrize("verb", ["eval", "sample", "viz"])
@pytest.mark.parametrize("kind,message", TAMPERED, ids=[k for k, _ in TAMPERED])
def test_tampered_runs(tmp_path, runs, capsys, kind, message, verb):
    run = copy_run(runs, "char", tmp_path)
    tamper(kind, run)
    argv = {"eval": ["eval", str(run)], "sample": ["sample", str(run), "--length", "5"],
            "viz": ["viz", str(run), "--out", str(tmp_path / "page.html")]}[verb]
    assert message in one_line_error(argv, capsys, 30)
    assert not (tmp_path / "page.html").exists()


def test_a_tampered_run_is_not_resumed_and_nothing_advises_overwrite(tmp_path, runs, capsys):
    run = copy_run(runs, "char", tmp_path)
    tamper("huge-hidden", run)
    err = one_line_error(["train", "--resume", str(run), "train.max_steps=10"], capsys, 30)
    assert "more than this machine's" in err and "--overwrite" not in err


def bad_verb_cases(runs: Path, tmp: Path) -> list[tuple[list[str], str]]:
    afile = tmp / "afile"
    afile.write_text("x")
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    char, word = str(runs / "char"), str(runs / "word")
    return [
        (["sample", char, "--temperature", "nan"], "--temperature must be a finite number"),
        (["sample", char, "--temperature", "inf"], "--temperature must be a finite number"),
        (["sample", char, "--alpha", "nan", "--beam", "2"], "--alpha must be a finite number"),
        (["sample", word, "--prime", "<pad> <eos>"], "--prime contains <pad> <eos>"),
        (["sample", char, "--device", "cuda"], "--device cuda"),
        (["eval", char, "--file", "/dev/zero"], "not a regular file or a folder"),
        (["eval", char, "--file", str(fifo)], "not a regular file or a folder"),
        (["translate", str(runs / "translate"), "--text", "a b", "--beam", "1000"], "wider than the target vocabulary"),
        (["translate", str(runs / "translate"), "--text", "a b", "--alpha", "nan"], "--alpha must be a finite number"),
        (["translate", str(runs / "translate"), "--text", "a b", "--attention", str(tmp)], "is a folder"),
        (["translate", str(runs / "translate"), "--text", "a b", "--attention", str(afile / "x.png")], "is a file, not a folder"),
        (["classify", str(runs / "classify"), "--text", ""], "--text is empty"),
        (["tag", str(runs / "tag"), "--text", ""], "--text is empty"),
        (["forecast", str(runs / "forecast"), "--plot", str(tmp)], "is a folder"),
        (["viz", char, "--out", str(tmp)], "is a folder"),
        (["viz", char, "--out", str(afile / "v.html")], "is a file, not a folder"),
        (["analyze", "cells", char, "--png", str(afile / "c.png")], "is a file, not a folder"),
        (["analyze", "saturation", char, "--out", str(tmp)], "is a folder"),
        (["analyze", "errors", char, "--out", str(afile / "e.png")], "is a file, not a folder"),
        (["analyze", "gradients", "--out", str(tmp)], "is a folder"),
        (["tag", str(runs / "classify"), "--text", "a b"], "task.name=classify run"),
    ]


def test_bad_verb_inputs(tmp_path, runs, capsys):
    for argv, message in bad_verb_cases(runs, tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        assert message in one_line_error(argv, capsys, 30), argv
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv     # nothing written


def test_ctrl_c_while_starting_is_one_line():
    """SIGINT 10 ms after start, while `import torch` runs (the launcher imports the CLI lazily)."""
    script = ("import os, signal, sys, threading\n"
              "threading.Timer(0.01, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
              "from seqlab.cli.launch import main\n"
              "sys.argv = ['seqlab', 'info']\n"
              "sys.exit(main())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_state_file_that_would_run_code_is_refused_in_our_words(tmp_path, runs, capsys, monkeypatch):
    import hashlib
    monkeypatch.chdir(tmp_path)
    run = copy_run(runs, "char", tmp_path)
    for step in ("00000000", "00000005"):                     # both checkpoints: no fallback left
        folder = run / "checkpoints" / f"step-{step}"
        torch.save({"progress": _RunsCode()}, folder / "state.pt")
        data = (folder / "state.pt").read_bytes()
        edit_json(folder / "manifest.json", lambda m: m["files"].update(
            {"state.pt": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}))
    err = one_line_error(["train", "--resume", str(run), "train.max_steps=8"], capsys)
    assert "asks to run Python code (posix.system)" in err and "refuses to unpickle" in err
    assert "weights_only" not in err                          # never torch's advice to switch it off
    assert not (tmp_path / "PWNED").exists()


def test_a_data_cache_that_cannot_be_written(tmp_path, runs, capsys, monkeypatch):
    """/proc refuses new folders even to root (CI runs as root, so a chmod would not do)."""
    monkeypatch.setenv("SEQLAB_DATA", "/proc/seqlab-cache")
    for argv in (["data", "fetch", "pystdlib"],
                 ["train", f"data.path={runs / 'small.txt'}", *T, "data.memmap=true", "--out", str(tmp_path / "r")]):
        assert "point it at a writable folder" in one_line_error(argv, capsys)
    assert not (tmp_path / "r").exists()
