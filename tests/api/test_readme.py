"""The README's Python examples, run as written (in a scratch folder): they must never rot."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 1


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(python_blocks()[index], f"README.md python block {index + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.strip(), "an example that prints nothing shows the reader nothing"
    if "seqlab.train(" in python_blocks()[index]:
        run = namespace["run"]
        assert (tmp_path / "runs" / "poem" / "result.json").is_file() and run.result["bpc"] > 0
