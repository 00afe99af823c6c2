"""The package as users install it: `python -m build` makes a wheel and an sdist; the wheel
installs into a fresh virtual environment (dependencies pinned by requirements.lock, torch
from this machine's wheel directory as `make venv` finds it) and trains, samples and
evaluates from there, with the C++ kernel's source inside it. About 50 s here (a fresh
environment installs torch from the local wheel directory)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*argv, cwd, env=None, timeout=900) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_trains_samples_evaluates(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", dist, ROOT, cwd=tmp_path)
    wheel, = dist.glob("seqlab-*.whl")
    sdist, = dist.glob("seqlab-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "seqlab/models/kernels/native/lstm.cpp" in names and "seqlab/analysis/viz_page.html" in names
    assert "seqlab/api/run.py" in names and not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, seqlab = venv / "bin" / "python", venv / "bin" / "seqlab"
    run(python, "-m", "pip", "install", "--quiet", "-c", ROOT / "requirements.lock", wheel, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["SEQLAB_DATA"] = str(tmp_path / "cache")
    where = run(python, "-c", "import seqlab; print(seqlab.__file__)", cwd=tmp_path, env=env)
    assert str(venv) in where, where                                  # the installed copy, not the checkout
    assert "export" in run(seqlab, "--help", cwd=tmp_path, env=env)
    assert "torch" in run(seqlab, "info", cwd=tmp_path, env=env)
    (tmp_path / "text.txt").write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 200)
    run(seqlab, "train", "data.path=text.txt", "model.hidden_size=32", "model.num_layers=1", "train.max_steps=30",
        "train.eval_every=15", "train.progress=false", "--out", "runs/w", cwd=tmp_path, env=env)
    sample = run(seqlab, "sample", "runs/w", "--prime", "the ", "--length", "20", "--seed", "1", cwd=tmp_path, env=env)
    assert sample.startswith("the ") and len(sample) >= 24
    assert "bpc" in run(seqlab, "eval", "runs/w", "--split", "valid", cwd=tmp_path, env=env)
    api = run(python, "-c", "import seqlab; r = seqlab.load('runs/w'); print(round(r.score('the cat')['bits_per_token'], 3))",
              cwd=tmp_path, env=env)
    assert float(api) > 0
    assert sdist.stat().st_size > 10_000
