"""The house's floors (../shared/DESIGN.md) hold: import-linter checks the contracts written in
pyproject.toml — cli -> bench -> api, analysis -> tasks -> train, decode -> models, data -> core,
siblings marked `|` independent — and no import cycle inside any package, at any depth, over every
import, those inside functions included."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "lint-imports is missing: `make test` installs import-linter from requirements.lock"
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout, done.stdout[-2000:]
    assert "floors:" in done.stdout and "no cycles:" in done.stdout
