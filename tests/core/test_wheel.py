"""The package as users install it: `python -m build` makes a wheel and an sdist; the wheel
installs into a fresh virtual environment (dependencies pinned by requirements.lock, torch
from this machine's wheel directory as `make venv` finds it) and trains, samples and
evaluates from there, with the C++ kernel's source inside it, and finds its models and tasks
through the entry points the wheel carries. By default the fresh environment borrows the
dependencies of the test's own environment (a .pth file; the wheel installs with --no-deps), so
the test takes seconds; `-m slow` also installs them from requirements.lock as a user would
(about 80 s here: torch from the local wheel directory)."""
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*argv, cwd, env=None, timeout=900) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("deps", ["borrowed", pytest.param("installed", marks=pytest.mark.slow)])
def test_the_wheel_installs_into_a_fresh_venv_and_trains_samples_evaluates(tmp_path, deps):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", dist, ROOT, cwd=tmp_path)
    wheel, = dist.glob("seqlab-*.whl")
    sdist, = dist.glob("seqlab-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "seqlab/models/kernels/native/lstm.cpp" in names and "seqlab/analysis/viz_page.html" in names
    assert "seqlab/api/run.py" in names and not any(n.startswith("tests/") for n in names)
    points, = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    points = zipfile.ZipFile(wheel).read(points).decode()
    assert "[seqlab.plugins]" in points and "task.lm = seqlab.tasks.lm" in points     # how it finds its tasks

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, seqlab = venv / "bin" / "python", venv / "bin" / "seqlab"
    if deps == "installed":
        run(python, "-m", "pip", "install", "--quiet", "-c", ROOT / "requirements.lock", wheel, cwd=tmp_path)
    else:
        # the test environment's packages as a plain path entry: its .pth files (the editable
        # install of this checkout among them) are not run, so seqlab is the wheel's
        site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
        Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=tmp_path)
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
