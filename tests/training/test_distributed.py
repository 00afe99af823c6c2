"""Data-parallel training under torchrun (gloo on CPU) equals one process with the same global batch."""
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from seqlab import SeqlabError
from seqlab.config import load_config
from seqlab.training.distributed import World
from seqlab.training.engine import fit

# dropout off: each rank draws its own masks, which one process cannot reproduce
SMALL = ["model.embedding_size=16", "model.hidden_size=32", "model.num_layers=2", "model.dropout=0",
         "train.batch_size=4", "train.bptt_steps=20", "train.bptt_stride=8", "train.eval_every=10",
         "train.log_every=5", "train.progress=false", "train.eval_batch_size=4", "train.eval_tokens=400",
         "train.threads=1", "train.device=cpu", "train.checkpoint_every=4"]


def torchrun(processes: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", "seqlab.cli", "train", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def newest_weights(run):
    return load_file(max((run / "checkpoints").glob("step-*")) / "weights.safetensors")


def assert_close(a: dict, b: dict, tolerance: float = 1e-5):
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= tolerance, worst
    return worst


def test_two_processes_under_torchrun_equal_one_process(tmp_path, text_file):
    args = SMALL + [f"data.path={text_file}", "train.max_steps=25"]
    done = torchrun(2, args + ["--out", str(tmp_path / "two")])
    assert "x 2 processes" in done.stdout
    assert done.stdout.count("stopped: reached train.max_steps=25") == 1       # only rank 0 speaks
    fit(load_config(None, args), tmp_path / "one", log=lambda m: None)
    one, two = newest_weights(tmp_path / "one"), newest_weights(tmp_path / "two")
    # the same update on every rank, from the mean of the ranks' gradients = the global gradient;
    # only the order of float additions differs
    assert_close(one, two)


@pytest.mark.slow
def test_resume_with_another_number_of_processes(tmp_path, text_file):
    """Saved by 2 processes at update 12, resumed by 1 to update 25: the uninterrupted result."""
    args = SMALL + [f"data.path={text_file}"]
    torchrun(2, args + ["train.max_steps=12", "--out", str(tmp_path / "run")])
    full = load_config(None, args + ["train.max_steps=25"])
    fit(None, tmp_path / "run", resume=True, overrides=full, log=lambda m: None)
    fit(full, tmp_path / "one", log=lambda m: None)
    assert_close(newest_weights(tmp_path / "one"), newest_weights(tmp_path / "run"))


def test_rows_per_process_and_an_uneven_batch():
    assert [World(rank, 4).rows(8) for rank in range(4)] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    with pytest.raises(SeqlabError, match="multiple of 4"):
        World(1, 4).rows(6)


# -- the other options for large runs: bf16 autocast and torch.compile (they pay off on GPUs;
#    here they must run on CPU and train the same model to nearly the same place) ------------

def final_valid_loss(run):
    import json
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "valid"][-1]


def test_bf16_autocast_runs_on_cpu_and_changes_the_arithmetic(tmp_path, text_file):
    args = SMALL + [f"data.path={text_file}", "train.max_steps=20"]
    fit(load_config(None, args), tmp_path / "fp32", log=lambda m: None)
    fit(load_config(None, args + ["train.precision=bf16"]), tmp_path / "bf16", log=lambda m: None)
    fp32, bf16 = newest_weights(tmp_path / "fp32"), newest_weights(tmp_path / "bf16")
    assert all(w.dtype == fp32[k].dtype for k, w in bf16.items())           # master weights stay float32
    difference = max((fp32[k] - bf16[k]).abs().max().item() for k in fp32)
    assert 0 < difference < 0.05                 # bfloat16 products (8-bit mantissa): close, not equal
    assert abs(final_valid_loss(tmp_path / "fp32") - final_valid_loss(tmp_path / "bf16")) < 0.05


@pytest.mark.slow
def test_compiled_training_step_matches_eager(tmp_path, text_file):
    args = SMALL + [f"data.path={text_file}", "train.max_steps=20"]
    fit(load_config(None, args), tmp_path / "eager", log=lambda m: None)
    fit(load_config(None, args + ["train.compile=true"]), tmp_path / "compiled", log=lambda m: None)
    assert_close(newest_weights(tmp_path / "eager"), newest_weights(tmp_path / "compiled"), 1e-4)
