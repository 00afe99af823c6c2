"""`make gpu-check` runs on a GPU only when a session is lent one; until then its script runs
here end to end with --dry-run (CPU, toy sizes), so it is known to work (issue 14, point 6)."""
import json

from seqlab.cli import main


def test_gpu_check_dry_run_runs_every_part(tmp_path, capsys):
    out = tmp_path / "gpu"
    assert main(["bench", "gpu-check", "--dry-run", "--out", str(out)]) == 0
    report = json.loads((out / "results" / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    assert [p["precision"] for p in report["precision"]] == ["fp32", "bf16", "compile"]
    assert all(p["tokens_per_s"] > 0 for p in report["precision"])
    assert (out / "gpu_speed.md").is_file() and report["speed_rows"]
    assert "dry run on the CPU" in (out / "gpu_check.md").read_text()
    assert "adding/lstm-chrono" in capsys.readouterr().out        # the full-profile cells, listed
