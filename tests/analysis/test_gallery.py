"""`seqlab gallery`: one offline page of generated tunes and speech, checked in headless
Chromium: every sound plays (its audio decodes to the right length), every picture loads."""
from __future__ import annotations

import numpy as np

from seqlab.cli import main
from seqlab.data.audio import write_wav
from seqlab.data.midi import midi_bytes


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_folders(tmp_path):
    from fractions import Fraction

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tunes, speech = tmp_path / "tunes", tmp_path / "speech"
    tunes.mkdir()
    speech.mkdir()
    (tunes / "tune-001.abc").write_text("X:1\nT:Eins <b>&</b>\nM:2/4\nL:1/8\nK:G\nd2A2 | ddA2 |\n")
    (tunes / "tune-001.mid").write_bytes(midi_bytes([(Fraction(0), Fraction(1, 4), 74)]))
    fig = plt.figure(figsize=(2, 1))
    fig.savefig(tunes / "tune-001.png")
    plt.close(fig)
    t = np.arange(4000) / 8000
    write_wav(tunes / "tune-001.wav", 0.3 * np.sin(2 * np.pi * 440 * t))
    write_wav(speech / "beth-generated.wav", 0.3 * np.sin(2 * np.pi * 220 * t[:2400]))
    (speech / "notes.json").write_text("{}")                 # not a kind the gallery shows
    return tunes, speech


def test_gallery_page_in_chromium(tmp_path, capsys, browser):
    tunes, speech = make_folders(tmp_path)
    out = tmp_path / "gallery.html"
    code, printed, _ = run_cli(capsys, "gallery", tunes, speech, "--out", out, "--title", "made")
    assert code == 0 and "5 files from 2 folder(s)" in printed
    browser.open(out)
    assert browser.errors() == []
    durations = browser.evaluate("""Promise.all(Array.from(document.querySelectorAll('audio')).map((a) =>
        a.readyState >= 1 ? a.duration : new Promise((done) => a.addEventListener('loadedmetadata', () => done(a.duration)))))""")
    assert [round(d, 3) for d in durations] == [0.5, 0.3]
    assert browser.evaluate("Array.from(document.images).map((i) => i.complete && i.naturalWidth > 0)") == [True]
    assert browser.evaluate("document.querySelector('pre').textContent").startswith("X:1\nT:Eins <b>&</b>")
    assert browser.evaluate("document.querySelectorAll('a[download]').length") == 1
    assert browser.evaluate("Array.from(document.querySelectorAll('.card h3')).map((h) => h.textContent)") == \
        ["tune-001", "beth-generated"]


def test_gallery_refusals(tmp_path, capsys):
    code, _, err = run_cli(capsys, "gallery", tmp_path / "nope", "--out", tmp_path / "g.html")
    assert code != 0 and "is not a folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "gallery", tmp_path / "empty", "--out", tmp_path / "g.html")
    assert code != 0 and "no .wav, .png, .abc or .mid files" in err and not (tmp_path / "g.html").exists()
