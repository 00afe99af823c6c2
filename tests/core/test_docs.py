"""`make docs`: pdoc renders the public API from its docstrings (the pages are not committed,
so this is what keeps them buildable)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pdoc_renders_the_public_api(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pdoc", "seqlab.api", "seqlab.export", "-o", str(tmp_path / "api"),
                           "--docformat", "google"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    page = (tmp_path / "api" / "seqlab" / "api.html").read_text(encoding="utf-8")
    for name in ("seqlab.train", "seqlab.load", "sample", "score", "classify", "export"):
        assert name in page, name
    assert "per-token log-probabilities" in page                     # Run.score's own docstring
    assert "warning" not in done.stderr.lower(), done.stderr[-2000:]
