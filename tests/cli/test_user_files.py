"""Nothing a user owns is overwritten or leaked (issue 28): every verb that writes a file refuses
an existing one unless --overwrite, never writes over its own input, claims its name only at
the end (a file that appears meanwhile is kept), leaves no temporary behind; readers of outside
files open only regular files inside the folder they were given, bounded in size."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_text
from helpers import T, time_limit
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.io import Output, atomic_path, output_folder, sweep_temporaries


def one_line_refusal(capsys, argv, *words) -> str:
    with time_limit(120):
        assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("userfiles")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(8000), encoding="utf-8")
    assert main(["train", f"data.path={corpus}", *T, "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def hmm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmmrun")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    assert main(["train", f"data.path={corpus}", "model=hmm", "model.hidden_size=4", "train.progress=false",
                 "--out", str(root / "hmm")]) == 0
    return root / "hmm"


# -- the one output writer ----------------------------------------------------------------------

def test_output_refuses_existing_inputs_and_folders(tmp_path):
    thesis = tmp_path / "t.txt"
    thesis.write_text("thesis")
    with pytest.raises(SeqlabError, match="exists; add --overwrite"):
        Output(thesis, "-o")
    with pytest.raises(SeqlabError, match="is also this command's input"):
        Output(thesis, "-o", overwrite=True, inputs=[thesis])
    link = tmp_path / "link.txt"
    link.symlink_to(thesis)
    with pytest.raises(SeqlabError, match="is also this command's input"):
        Output(link, "-o", overwrite=True, inputs=[thesis])          # the same file by another name
    with pytest.raises(SeqlabError, match="is a folder"):
        Output(tmp_path, "-o")
    with pytest.raises(SeqlabError, match="overwrite=True"):
        Output(thesis, "path")                                       # the API's spelling
    assert thesis.read_text() == "thesis"


def test_a_file_that_appears_while_working_is_kept(tmp_path):
    target = tmp_path / "out.bin"
    out = Output(target, "-o")
    with pytest.raises(SeqlabError, match="was created by something else"):
        with out.writing() as tmp:
            tmp.write_bytes(b"ours")
            target.write_text("theirs")                             # another process, meanwhile
    assert target.read_text() == "theirs" and leftovers(tmp_path) == []
    # with overwrite the file is replaced, atomically
    Output(target, "-o", overwrite=True).write_bytes(b"ours")
    assert target.read_bytes() == b"ours"


def test_two_writers_to_one_name_one_wins_the_other_is_told(tmp_path):
    target = tmp_path / "out.sqz"
    outs = [Output(target, "-o") for _ in range(2)]                 # both checked before either wrote
    results = []

    def write(i):
        try:
            outs[i].write_bytes(bytes([i]) * 1000)
            results.append(("ok", i))
        except SeqlabError:
            results.append(("refused", i))
    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for r, _ in results) == ["ok", "refused"]
    winner = next(i for r, i in results if r == "ok")
    assert target.read_bytes() == bytes([winner]) * 1000 and leftovers(tmp_path) == []


def test_umask_is_respected_and_exceptions_leave_no_temporary(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib

        import seqlab.io
        importlib.reload(seqlab.io)                                  # the umask is read once, at import
        seqlab.io.Output(tmp_path / "a.txt", "-o").write_text("x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        importlib.reload(seqlab.io)
    with pytest.raises(RuntimeError):
        with Output(tmp_path / "b.txt", "-o").writing() as tmp:
            tmp.write_text("half")
            raise RuntimeError("the work failed")
    assert not (tmp_path / "b.txt").exists() and leftovers(tmp_path) == []


def test_a_killed_writers_temporary_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "model.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".{target.name}.{int(dead.stdout)}-0123abcd.tmp"
    stale.write_bytes(b"x" * 10000)                              # what a SIGKILL mid-write leaves
    mine = tmp_path / f".{target.name}.{os.getpid()}-0123abcd.tmp"   # a live writer's (ours): kept
    mine.write_bytes(b"y")
    other = tmp_path / ".model.safetensors.notes.tmp"               # not a name seqlab makes: kept
    other.write_bytes(b"z")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and not stale.exists() and mine.exists() and other.exists()
    assert sweep_temporaries(target) == 0


def test_output_folder_claims_each_name(tmp_path):
    (tmp_path / "tune-002.abc").write_text("mine")
    with pytest.raises(SeqlabError, match="already holds tune-002.abc"):
        output_folder(tmp_path, "-o", ["tune-001.abc", "tune-002.abc"])
    outs = output_folder(tmp_path, "-o", ["tune-001.abc", "tune-002.abc"], overwrite=True)
    outs["tune-002.abc"].write_text("new")
    assert (tmp_path / "tune-002.abc").read_text() == "new"


# -- 1. verbs that replaced user files ------------------------------------------------------------

def test_export_keeps_an_existing_file(lm, tmp_path, capsys):
    thesis = tmp_path / "t.txt"
    thesis.write_text("thesis")
    one_line_refusal(capsys, ["export", str(lm), "-o", str(thesis), "--format", "onnx"], "exists", "--overwrite")
    assert thesis.read_text() == "thesis" and thesis.stat().st_mode & 0o777 != 0o600


def test_export_hmm_as_arpa_gives_the_true_cause(hmm_run, tmp_path, capsys):
    err = one_line_refusal(capsys, ["export", str(hmm_run), "-o", str(tmp_path / "x.arpa")], "ARPA holds n-gram")
    assert "exports with format onnx" not in err and "cannot be exported" in err


def test_viz_never_destroys_its_input(lm, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes " * 30)
    one_line_refusal(capsys, ["viz", str(lm), "--text", str(notes), "--out", str(notes), "--overwrite"],
                     "is also this command's input")
    one_line_refusal(capsys, ["viz", str(lm), "--text", str(notes), "--out", str(notes)], "input")
    assert notes.read_text() == "my notes " * 30
    page = tmp_path / "page.html"
    assert main(["viz", str(lm), "--text", str(notes), "--out", str(page), "--chars", "100"]) == 0
    one_line_refusal(capsys, ["viz", str(lm), "--text", str(notes), "--out", str(page)], "exists", "--overwrite")
    assert main(["viz", str(lm), "--text", str(notes), "--out", str(page), "--chars", "100", "--overwrite"]) == 0


def test_analyze_tunes_json_never_replaces_a_tune(tmp_path, capsys):
    gen = tmp_path / "gen"
    gen.mkdir()
    tune = "X:1\nT:a\nM:2/4\nL:1/8\nK:C\nCDEF|GABc|\n"
    (gen / "tune-001.abc").write_text(tune)
    one_line_refusal(capsys, ["analyze", "tunes", str(gen), "--json", str(gen / "tune-001.abc"), "--overwrite"],
                     "input")
    (gen / "tune-001.png").write_text("my picture")
    one_line_refusal(capsys, ["analyze", "tunes", str(gen), "--render", str(gen)], "tune-001")
    assert (gen / "tune-001.abc").read_text() == tune and (gen / "tune-001.png").read_text() == "my picture"


def test_spectrogram_and_saturation_keep_existing_pictures(lm, tmp_path, capsys):
    from seqlab.data.audio import write_wav
    wav = tmp_path / "a.wav"
    write_wav(wav, np.zeros(2000))
    png = tmp_path / "mine.png"
    png.write_bytes(b"my picture")
    one_line_refusal(capsys, ["analyze", "spectrogram", str(wav), "--out", str(png)], "exists")
    one_line_refusal(capsys, ["analyze", "spectrogram", str(wav), "--out", str(wav), "--overwrite"], "input")
    one_line_refusal(capsys, ["analyze", "saturation", str(lm), "--out", str(png)], "exists")
    assert png.read_bytes() == b"my picture"
    assert main(["analyze", "spectrogram", str(wav), "--out", str(png), "--overwrite"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_compress_refuses_its_input_and_a_file_made_while_coding(tmp_path, capsys, monkeypatch):
    source = tmp_path / "notes.txt"
    source.write_text(make_text(3000))
    one_line_refusal(capsys, ["compress", str(source), "-o", str(source), "--overwrite"], "input")
    one_line_refusal(capsys, ["decompress", str(source), "-o", str(source), "--overwrite"], "input")
    out = tmp_path / "notes.sqz"
    import seqlab.compress.codec as codec
    real = codec.compress

    def slow(*a, **k):
        blob = real(*a, **k)
        out.write_text("someone else's")          # appears while seqlab codes
        return blob
    monkeypatch.setattr(codec, "compress", slow)
    one_line_refusal(capsys, ["compress", str(source), "-o", str(out), "--adaptive", "ngram"],
                     "created by something else")
    assert out.read_text() == "someone else's" and leftovers(tmp_path) == []


def test_compress_options_that_do_not_apply_are_refused(tmp_path, capsys, lm):
    source = tmp_path / "n.txt"
    source.write_text("abc" * 100)
    one_line_refusal(capsys, ["compress", str(source), "--adaptive", "ngram", "--hidden", "64"], "--hidden", "no LSTM")
    one_line_refusal(capsys, ["compress", str(source), "--adaptive", "lstm", "--order", "4"], "--order")
    one_line_refusal(capsys, ["compress", str(source), "--model", str(lm), "--adaptive", "lstm"], "--adaptive")
    one_line_refusal(capsys, ["compress", str(source), "--streams", "100000000"], "--streams must be between")


def test_sample_outputs_are_claimed(lm, tmp_path, capsys):
    folder = tmp_path / "tunes"
    folder.mkdir()
    (folder / "tune-001.abc").write_text("mine")
    one_line_refusal(capsys, ["sample", str(lm), "--format", "abc", "--num-samples", "2", "-o", str(folder),
                              "--length", "20"], "tune-001.abc")
    assert (folder / "tune-001.abc").read_text() == "mine"


# -- 2. readers of outside files -------------------------------------------------------------------

def test_gallery_follows_no_link_out_of_its_folder(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$hash:19000:0:99999:7:::")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tune-001.abc").write_text("X:1\nT:a\nK:C\nCDEF|\n")
    (shared / "x.abc").symlink_to(secret)
    page = tmp_path / "page.html"
    one_line_refusal(capsys, ["gallery", str(shared), "--out", str(page)], "x.abc", "outside")
    assert not page.exists()
    (shared / "x.abc").unlink()
    (shared / "y.abc").symlink_to(shared / "tune-001.abc")         # a link inside the folder is fine
    assert main(["gallery", str(shared), "--out", str(page)]) == 0
    assert "19000" not in page.read_text()


def test_gallery_checks_what_it_embeds(tmp_path, capsys):
    from PIL import Image
    shared = tmp_path / "g"
    shared.mkdir()
    (shared / "fake.wav").write_bytes(b"RIFF....not a wave at all")
    one_line_refusal(capsys, ["gallery", str(shared), "--out", str(tmp_path / "p.html")], "fake.wav", "not a PCM WAV")
    (shared / "fake.wav").unlink()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(shared / "pic.png")
    data = (shared / "pic.png").read_bytes()
    (shared / "pic.png").write_bytes(data[:len(data) // 2])
    one_line_refusal(capsys, ["gallery", str(shared), "--out", str(tmp_path / "p.html")], "pic.png", "not a whole PNG")
    os.mkfifo(shared / "pic.png.fifo.abc")
    (shared / "pic.png").unlink()
    one_line_refusal(capsys, ["gallery", str(shared), "--out", str(tmp_path / "p.html")], "FIFO")


def test_spectrogram_of_a_fifo_does_not_block(tmp_path, capsys):
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    one_line_refusal(capsys, ["analyze", "spectrogram", str(fifo), "--out", str(tmp_path / "s.png")], "FIFO")


def wav_header(rate=8000, channels=1, width=2, data=b"\x00\x01" * 10, fmt_size=16) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width, 8 * width)
    fmt += b"\x00" * (fmt_size - 16) if fmt_size >= 16 else b""
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt[:max(fmt_size, 0)] + b"data" + \
        struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("case", ["odd", "rate0", "huge_fmt", "empty", "truncated"])
def test_bad_wavs_are_one_line(tmp_path, capsys, case):
    path = tmp_path / "x.wav"
    path.write_bytes({"odd": wav_header(data=b"\x00\x01\x02"), "rate0": wav_header(rate=0),
                      "huge_fmt": wav_header()[:16] + struct.pack("<I", 2 ** 31) + wav_header()[20:],
                      "empty": b"", "truncated": wav_header()[:30]}[case])
    argv = ["analyze", "spectrogram", str(path), "--out", str(tmp_path / "s.png")]
    if case == "odd":                     # a cut-off last sample is dropped, as other readers do
        assert main(argv) == 0
        return
    err = one_line_refusal(capsys, argv, "x.wav")
    assert "()" not in err


def test_long_tunes_are_bounded(tmp_path, capsys):
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "long.abc").write_text("X:1\nT:long\nM:4/4\nL:1/8\nK:C\n" + "CDEF GABc|" * 4000 + "\n")
    (gen / "line.abc").write_text("X:1\nT:line\nK:C\n" + "C" * 1_000_000 + "\n")
    report = tmp_path / "r.json"
    with time_limit(60):
        assert main(["analyze", "tunes", str(gen), "--json", str(report)]) == 0
    summary = json.loads(report.read_text())["summary"]
    assert summary["tunes"] == 2 and summary["too_long"] == 2


def test_deeply_nested_run_json_is_one_line(lm, tmp_path, capsys):
    import shutil
    for name in ("config.json", "vocab.json"):
        run = tmp_path / name.split(".")[0]
        shutil.copytree(lm, run)
        (run / name).write_text("[" * 100_000 + "]" * 100_000)
        one_line_refusal(capsys, ["eval", str(run)])
        one_line_refusal(capsys, ["sample", str(run), "--length", "5"])


def test_a_token_cache_with_foreign_ids_is_refused_and_leaves_no_run(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(4000))
    assert main(["train", f"data.path={corpus}", *T, "data.memmap=true", "--out", str(tmp_path / "r1")]) == 0
    (cache,) = (Path(os.environ["SEQLAB_DATA"]) / "memmap").rglob("tokens.npy")
    ids = np.load(cache, mmap_mode="r+")
    ids[3] = np.iinfo(ids.dtype).max                    # an id no vocabulary of this corpus has
    ids.flush()
    del ids
    one_line_refusal(capsys, ["train", f"data.path={corpus}", *T, "data.memmap=true", "--out", str(tmp_path / "r2")],
                     "outside its vocabulary")
    assert not (tmp_path / "r2").exists()


# -- 4. lengths, seeds, counts where they enter -------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--length", "1000000000000", "--num-samples", "2"], "--length must be at most"),
    (["--seed", "99999999999999999999999"], "--seed must be from 0"),
    (["--length", "100000", "--num-samples", "10000"], "more than the"),
    (["--beam", "100000"], "--beam must be at most"),
])
def test_sample_ranges(lm, capsys, argv, words):
    one_line_refusal(capsys, ["sample", str(lm), *argv], words)


def test_api_wrong_types_raise_seqlab_errors(lm):
    import seqlab
    assert issubclass(seqlab.SeqlabError, ValueError)
    run = seqlab.load(lm)
    bad = [lambda: seqlab.load(5), lambda: seqlab.train(["train.max_steps=1"], out=5), lambda: seqlab.train({1: 2}),
           lambda: run.sample(length="5"), lambda: run.sample(length=3.5), lambda: run.sample(temperature="hot"),
           lambda: run.sample(prime=123), lambda: run.sample(seed="x"), lambda: run.score("abc", streams="2"),
           lambda: run.sample(seed=2 ** 70), lambda: run.export(5), lambda: run.score(5),
           lambda: run.sample(greedy="yes"), lambda: run.tunes("3")]
    for i, call in enumerate(bad):
        with pytest.raises(seqlab.SeqlabError) as e:
            call()
        assert "\n" not in str(e.value), i


# -- 5. signals and pipes ---------------------------------------------------------------------------

def test_train_piped_into_head_finishes(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6000))
    run = tmp_path / "run"
    cmd = (f"{sys.executable} -m seqlab.cli train data.path={corpus} {' '.join(T)} train.max_steps=30 "
           f"train.eval_every=10 train.log_every=1 --out {run} | head -1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 141 or done.returncode == 0, done.stderr   # head's SIGPIPE status, or 0
    assert (run / "model.safetensors").is_file() and (run / "result.json").is_file(), done.stderr
    assert json.loads((run / "result.json").read_text())     # the run finished: a report exists
    assert "Traceback" not in done.stderr


def test_sigterm_stops_training_with_a_checkpoint(tmp_path):
    import signal
    import time
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20000))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "seqlab.cli", "train", f"data.path={corpus}", *T,
                             "train.max_steps=100000", "train.eval_every=100000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(run.glob("checkpoints/step-*")):
        time.sleep(0.2)
    time.sleep(2.0)                                  # well into the loop
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    said = out + err                                 # training's log goes to stdout
    assert "stopped by SIGTERM" in said and f"--resume {run}" in said, said
    steps = [json.loads((c / "manifest.json").read_text())["step"] for c in run.glob("checkpoints/step-*")]
    assert max(steps) > 0 and "Traceback" not in err


@pytest.mark.slow       # ~9 s; the unwinding it relies on is tested above with an exception
def test_sigterm_outside_training_leaves_no_temporary(tmp_path):
    import signal
    import time
    source = tmp_path / "big.txt"
    source.write_text(make_text(400_000))
    out = tmp_path / "big.sqz"
    proc = subprocess.Popen([sys.executable, "-m", "seqlab.cli", "compress", str(source), "-o", str(out),
                             "--adaptive", "lstm"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err, err
    assert not out.exists() and leftovers(tmp_path) == []


# -- 9. advice that fits ----------------------------------------------------------------------------

def test_train_into_a_foreign_folder_does_not_advise_what_is_refused(tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000))
    err = one_line_refusal(capsys, ["train", f"data.path={corpus}", *T, "--out", str(folder)], "not a seqlab run")
    assert "--overwrite" not in err and "--resume" not in err


def test_a_huge_png_names_its_size(tmp_path):
    from seqlab.data.scenes import read_image
    path = tmp_path / "huge.png"
    # a valid PNG header claiming 20000 x 20000 pixels (Pillow refuses it before decoding)
    import zlib
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(SeqlabError) as e:
        read_image(path)
    assert "pixels" in str(e.value) and "DecompressionBomb" not in str(e.value)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.6, 1.0])
def test_ctrl_c_in_the_first_second_is_one_line(tmp_path, delay):
    """Ctrl-C while the command still imports torch (the console script's own start)."""
    import signal
    import time
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from seqlab.cli.launch import main; sys.exit(main())",
                             "train", f"data.path={corpus}", *T, "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err         # 0: it finished before the signal came
    assert "Traceback" not in err, err
