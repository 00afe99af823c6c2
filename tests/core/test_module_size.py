"""Every module stays under 400 lines (issue 16): past that, split it by what it does."""
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "seqlab"


def test_every_module_is_under_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) >= 400}
    assert not long, long
