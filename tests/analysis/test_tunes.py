"""Folk tunes end to end on tunes written here: sampling whole tunes from a character model
(`seqlab sample --format abc`), checking them (`seqlab analyze tunes`), rendering them, and
every bad input as one line."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from seqlab.cli import main
from seqlab.config import load_config
from seqlab.data import abc
from seqlab.training.engine import fit

from conftest import TINY

pytest.importorskip("music21", reason="music21 is in requirements.lock; `make` installs it")

GOOD = ["T:Eins\nM:2/4\nL:1/8\nK:G\nd2A2 | ddA2 | dAd2 | GED2 |", "T:Zwei\nM:3/4\nL:1/4\nK:F\nA B c | d2 c | A3 |"]
SHORT_BAR = "T:Drei\nM:3/4\nL:1/4\nK:C\nC D E | F G | A B c |"        # seqlab reads it; one bar of three is short
NOT_ABC = "T:Vier\nM:4/4\nL:1/4\nK:C\nC D @@ E F |"                  # music21 skips the @@, seqlab refuses them


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err and len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def tune_text(n: int, seed: int = 0) -> str:
    """n little tunes in the folk corpus's layout: T/M/L/K headers, bars of 2/4, blank lines between."""
    rng = random.Random(seed)
    tunes = []
    for i in range(n):
        bars = " | ".join("".join(rng.choice("CDEFGABcde") + rng.choice(["", "2"]) for _ in range(2)).ljust(1)
                          for _ in range(rng.randint(3, 6)))
        tunes.append(f"T:Tune {i}\nM:2/4\nL:1/8\nK:{rng.choice('CGDF')}\n{bars} |")
    return "\n\n".join(tunes) + "\n\n"


def test_analyze_counts_parse_and_meter(tmp_path, capsys):
    folder = tmp_path / "tunes"
    folder.mkdir()
    for i, tune in enumerate([*GOOD, SHORT_BAR, NOT_ABC]):
        (folder / f"t{i}.abc").write_text(f"X:{i}\n{tune}\n")
    code, out, _ = run_cli(capsys, "analyze", "tunes", folder, "--json", "-")
    assert code == 0
    s = json.loads(out)["summary"]
    assert s["tunes"] == 4 and s["parse_share"] == 1.0 and s["read_share"] == 0.75
    assert s["bars"] == 4 + 3 + 3 and s["bars_in_meter"] == pytest.approx(9 / 10)
    assert s["tunes_all_bars_in_meter"] == 0.5


def test_reference_is_the_test_split(tmp_path, capsys, monkeypatch):
    from seqlab.analysis.tunes import reference_tunes
    from seqlab.data import sources

    text = tune_text(60)
    sources.corpus("folk").folder.mkdir(parents=True)
    sources.corpus("folk").text_path.write_text(text, encoding="utf-8")
    reference = [t for _, t in reference_tunes("folk")]
    everything = abc.split_tunes(text)
    cut = len(text) - int(len(text) * 0.05)                       # the test split: the last 5 % (default)
    starts_after = [t for t in everything if text.index(t) > cut]
    assert reference == starts_after and 0 < len(reference) < 10


def test_render_writes_midi_and_rolls(tmp_path, capsys, monkeypatch):
    folder, out = tmp_path / "tunes", tmp_path / "rendered"
    folder.mkdir()
    (folder / "both.abc").write_text("\n\n".join([GOOD[0], NOT_ABC]) + "\n")
    code, printed, _ = run_cli(capsys, "analyze", "tunes", folder, "--render", out)
    assert code == 0 and "wrote 2 files" in printed
    assert sorted(p.name for p in out.iterdir()) == ["both#1.mid", "both#1.png"]
    assert (out / "both#1.mid").read_bytes()[:4] == b"MThd"
    monkeypatch.setattr("shutil.which", lambda name: None)
    code, _, err = run_cli(capsys, "analyze", "tunes", folder, "--render", out, "--wav")
    one_line_error(code, err, "apt-get install fluidsynth")


@pytest.mark.parametrize("case, fragments", [
    ("missing", ("is not a folder",)), ("empty", ("holds no .abc files",)),
    ("binary", ("binary file",)), ("latin1", ("not UTF-8",))])
def test_bad_folders(tmp_path, capsys, case, fragments):
    folder = tmp_path / "tunes"
    if case != "missing":
        folder.mkdir()
    if case == "binary":
        (folder / "x.abc").write_bytes(b"MThd\x00\x00\x00\x06")
    if case == "latin1":
        (folder / "x.abc").write_bytes("T:Gr\xfc\xdfe\nK:C\nC|\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "analyze", "tunes", folder)
    one_line_error(code, err, *fragments)


@pytest.fixture
def folk_run(tmp_path):
    corpus = tmp_path / "tunes.txt"
    corpus.write_text(tune_text(300), encoding="utf-8")
    run = tmp_path / "folk-run"
    fit(load_config(None, TINY + [f"data.path={corpus}", "train.max_steps=30"]), run, log=lambda m: None)
    return run


def test_sample_whole_tunes(folk_run, tmp_path, capsys):
    out = tmp_path / "sampled"
    code, printed, _ = run_cli(capsys, "sample", folk_run, "--format", "abc", "--num-samples", 3, "-o", out,
                               "--length", 400, "--seed", 1)
    assert code == 0 and "wrote 3 tunes" in printed
    files = sorted(out.glob("*.abc"))
    assert [f.name for f in files] == ["tune-001.abc", "tune-002.abc", "tune-003.abc"]
    for i, f in enumerate(files, start=1):
        text = f.read_text()
        assert text.startswith(f"X:{i}\nT:") and "\n\n" not in text.strip()     # one tune, ended at its blank line
    # the same seed draws the same tunes; the folder is not written over
    code, _, err = run_cli(capsys, "sample", folk_run, "--format", "abc", "-o", out)
    one_line_error(code, err, "already holds tune-001.abc")
    again = tmp_path / "again"
    run_cli(capsys, "sample", folk_run, "--format", "abc", "--num-samples", 3, "-o", again, "--length", 400,
            "--seed", 1)
    assert [f.read_text() for f in sorted(again.glob("*.abc"))] == [f.read_text() for f in files]


def test_stop_ends_each_sample(folk_run):
    from seqlab.api import load

    run = load(folk_run)
    texts = run.sample("\n\nT:", 400, num_samples=4, seed=0, stop="\n\n")
    full = run.sample("\n\nT:", 400, num_samples=4, seed=0)
    for cut, whole in zip(texts, full):
        assert "\n\n" not in cut and whole.startswith(cut)
        assert len(cut) == len(whole) or whole[len(cut):].startswith("\n\n")


def test_tunes_start_after_warmup_tunes_of_the_models_own(folk_run):
    """warmup=1: one tune drawn from the blank line and thrown away, then the batch continues
    from the model's state after it; warmup=0 samples from the blank line straight away."""
    from seqlab.api import load

    run = load(folk_run)
    warm = run.sample("\n\nT:", 400, seed=1, stop="\n\n")
    expected = run.sample("\n\nT:" + warm.rstrip("\n") + "\n\nT:", 400, num_samples=3, seed=0, stop="\n\n")
    assert run.tunes(3, "T:", 400, seed=0, warmup=1) == ["T:" + t.rstrip() for t in expected]
    cold = run.sample("\n\nT:", 400, num_samples=3, seed=0, stop="\n\n")
    assert run.tunes(3, "T:", 400, seed=0, warmup=0) == ["T:" + t.rstrip() for t in cold]
    assert len(run.tunes(1, "T:", 400, seed=0)) == 1


@pytest.mark.parametrize("argv, fragment", [
    (["--format", "abc"], "give the folder"),
    (["-o", "somewhere"], "names the folder for --format abc"),
    (["--format", "abc", "-o", "x", "--beam", "2"], "drop --beam"),
    (["--warmup", "2"], "drop it for text"),
    (["--format", "abc", "-o", "x", "--warmup", "-1"], "--warmup must be from 0 to"),
])
def test_sample_format_refusals(folk_run, capsys, argv, fragment):
    code, _, err = run_cli(capsys, "sample", folk_run, *argv)
    one_line_error(code, err, fragment)


def test_folk_bench_report(tmp_path, monkeypatch):
    """`seqlab bench folk` at a tiny size on generated tunes: every model trains, writes tunes that
    are checked, and the report holds the rows, the reference and the commands."""
    from seqlab.bench import folk
    from seqlab.data import sources

    sources.corpus("folk").folder.mkdir(parents=True)
    sources.corpus("folk").text_path.write_text(tune_text(400), encoding="utf-8")
    monkeypatch.setattr(folk, "TCN", ["model.name=tcn", "model.embedding_size=8", "model.hidden_size=16",
                                      "model.num_layers=3", "model.kernel_size=3"])
    monkeypatch.setattr(folk, "LSTM", ["model.name=lstm", "model.embedding_size=8", "model.hidden_size=16"])
    out = tmp_path / "bench" / "folk"
    assert folk.main(["--steps", "4", "--orders", "2", "3", "--tunes", "3", "--reference-tunes", "4", "--length",
                      "150", "--threads", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = json.loads((tmp_path / "bench" / "results" / "folk.json").read_text())
    assert [r["label"].split()[0] for r in report["results"]] == ["LSTM", "TCN", report["results"][2]["name"]]
    assert report["results"][2]["name"] in ("ngram-2", "ngram-3")
    assert all(r["tunes"]["summary"]["tunes"] == 3 for r in report["results"])
    assert report["reference"]["summary"]["tunes"] == 4 and report["reference"]["summary"]["read_share"] == 1.0
    table = (tmp_path / "bench" / "folk.md").read_text()
    assert "real held-out tunes" in table and "seqlab sample" in table
    assert len(list((tmp_path / "runs" / "lstm" / "tunes").glob("tune-*.abc"))) == 3
    shown = tmp_path / "bench" / "folk"                       # the gallery: real tunes always read, so always drawn
    assert {"real-1.abc", "real-1.mid", "real-1.png", "real-2.abc"} <= {p.name for p in shown.iterdir()}
    # --sample-only: the same runs sampled again, their training figures and commit kept
    assert folk.main(["--sample-only", "--tunes", "2", "--warmup", "0", "--reference-tunes", "4", "--length", "150",
                      "--threads", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    again = json.loads((tmp_path / "bench" / "results" / "folk.json").read_text())
    assert again["trained_commit"] == report["commit"]
    for old, new in zip(report["results"], again["results"]):
        assert (new["label"], new["valid_bpc"], new["command"]) == (old["label"], old["valid_bpc"], old["command"])
        assert new["tunes"]["summary"]["tunes"] == 2 and "--warmup 0" in new["sample_command"]
    assert "were sampled from those runs by `--sample-only`" in (tmp_path / "bench" / "folk.md").read_text()
    # a second --sample-only, at a later commit, still names the commit that trained the runs
    path = tmp_path / "bench" / "results" / "folk.json"
    path.write_text(json.dumps({**again, "commit": "later00"}))
    assert folk.main(["--sample-only", "--tunes", "2", "--warmup", "0", "--reference-tunes", "4", "--length", "150",
                      "--threads", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert json.loads(path.read_text())["trained_commit"] == report["commit"]


def test_folk_bench_sample_only_needs_an_earlier_report(tmp_path, capsys):
    from seqlab.cli import main

    assert main(["bench", "folk", "--sample-only", "--out", str(tmp_path / "folk")]) != 0
    err = capsys.readouterr().err
    assert "run it once without --sample-only" in err and "Traceback" not in err


@pytest.mark.skipif(__import__("shutil").which("fluidsynth") is None,
                    reason="needs Debian's fluidsynth and fluid-soundfont-gm (make sound)")
def test_render_wav_plays_the_notes(tmp_path, capsys):
    """--wav through fluidsynth: a mono 16 kHz file as long as the tune, sounding its pitch."""
    from seqlab.data.audio import read_wav

    folder, out = tmp_path / "tunes", tmp_path / "rendered"
    folder.mkdir()
    (folder / "a.abc").write_text("T:La\nM:4/4\nL:1/4\nK:C\nA A A A | A4 |\n")        # A4 = 440 Hz for 4 s at 120 bpm
    code, _, _ = run_cli(capsys, "analyze", "tunes", folder, "--render", out, "--wav")
    assert code == 0
    samples, rate = read_wav(out / "a.wav", rate=None)
    assert rate == 16000 and 4.0 <= len(samples) / rate <= 8.0                     # the tune, then the release
    steady = samples[int(2.2 * rate):int(3.8 * rate)]                                # inside the long A
    peak = np.argmax(np.abs(np.fft.rfft(steady * np.hanning(len(steady))))) * rate / len(steady)
    assert abs(peak - 440) < 3 or abs(peak - 880) < 6                                 # the note or its octave
    # a long tune is cut at 30 s, faded out
    (folder / "b.abc").write_text("T:Long\nM:4/4\nL:1/4\nK:C\n" + "A A A A | " * 30 + "\n")
    code, _, _ = run_cli(capsys, "analyze", "tunes", folder, "--render", out, "--wav")
    samples, rate = read_wav(out / "b.wav", rate=None)
    assert code == 0 and len(samples) == 30 * rate and abs(samples[-1]) < 1e-3
