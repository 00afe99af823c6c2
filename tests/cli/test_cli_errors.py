"""Every bad input gives one clear line on stderr, a non-zero exit, no traceback, no half-written file."""
import json

import pytest

from seqlab.cli import main
from seqlab.config import load_config
from seqlab.training.engine import fit

from conftest import TINY


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def trained(tmp_path, text_file):
    run = tmp_path / "trained"
    fit(load_config(None, TINY + [f"data.path={text_file}", "train.max_steps=10"]), run, log=lambda m: None)
    return run


def no_temp_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_missing_path(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "data.path=/no/such/file.txt", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "no such file or folder", "/no/such/file.txt")
    assert not (tmp_path / "r").exists()


def test_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, _, err = run_cli(capsys, "train", f"data.path={empty}", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "empty")
    assert not (tmp_path / "r").exists()


def test_binary_file(capsys, tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    code, _, err = run_cli(capsys, "train", f"data.path={binary}", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "binary")


def test_text_that_is_not_utf8(capsys, tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Ça été un été très chaud.\n".encode("latin-1") * 50)
    code, _, err = run_cli(capsys, "train", f"data.path={latin}", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "not UTF-8", "offset 0", "iconv")


def test_text_too_small_for_the_batch(capsys, tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("hello world\n" * 3)
    code, _, err = run_cli(capsys, "train", f"data.path={tiny}", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "train.batch_size")


@pytest.mark.parametrize("override", ["model.hidden_size=0", "train.batch_size=-4", "train.bptt_steps=0",
                                      "model.embedding_size=-1", "train.eval_every=0"])
def test_sizes_of_zero_or_below(capsys, tmp_path, text_file, override):
    code, _, err = run_cli(capsys, "train", f"data.path={text_file}", override, "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, override.split("=")[0], "greater than 0")


def test_unknown_option_and_bad_type(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "model.hidden=3")
    assert_one_line_error(code, err, "unknown option", "model.hidden_size")
    code, _, err = run_cli(capsys, "train", "train.lr=fast")
    assert_one_line_error(code, err, "train.lr", "expected float")
    code, _, err = run_cli(capsys, "train", "model.name=transformer", f"--out={tmp_path / 'r'}")
    assert_one_line_error(code, err, "unknown model 'transformer'", "lstm")


@pytest.mark.parametrize("argv", [
    ["--length", "0"], ["--length", "-5"], ["--temperature", "0"], ["--top-k", "-1"],
    ["--top-p", "0"], ["--top-p", "1.5"], ["--beam", "-2"], ["--greedy", "--beam", "3"],
])
def test_bad_sampling_options(capsys, trained, argv):
    code, _, err = run_cli(capsys, "sample", str(trained), *argv)
    assert_one_line_error(code, err)


def test_prime_outside_the_vocabulary(capsys, trained):
    code, _, err = run_cli(capsys, "sample", str(trained), "--prime", "The king ☃ said Ω", "--length", "5")
    assert_one_line_error(code, err, "never saw", "'☃'", "'Ω'")


def test_resume_a_run_that_does_not_exist(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "run directory not found")
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "run directory not found")
    code, _, err = run_cli(capsys, "sample", str(tmp_path))
    assert_one_line_error(code, err, "not a seqlab run")


@pytest.mark.parametrize("name", ["model.safetensors", "weights.safetensors", "state.pt"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupted_checkpoint(capsys, trained, name, damage):
    # a damaged newest checkpoint falls back to the previous one (tests/training/test_faults.py);
    # here every checkpoint is damaged, so there is nothing left to resume from
    paths = [trained / name] if name == "model.safetensors" else sorted(trained.glob(f"checkpoints/step-*/{name}"))
    assert paths
    for path in paths:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x80\x02garbage" + data[64:200])
    argv = ["train", "--resume", str(trained), "train.max_steps=20"] if name != "model.safetensors" \
        else ["sample", str(trained), "--length", "5"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, name)
    assert no_temp_files(trained)


def test_corrupted_config(capsys, trained):
    (trained / "config.json").write_text('{"config": ')
    code, _, err = run_cli(capsys, "eval", str(trained))
    assert_one_line_error(code, err, "config.json", "corrupted")


def test_out_dir_is_never_clobbered(capsys, trained, text_file, tmp_path):
    code, _, err = run_cli(capsys, "train", f"data.path={text_file}", "--out", str(trained), *TINY)
    assert_one_line_error(code, err, "already exists", "--overwrite", "--resume")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(capsys, "train", f"data.path={text_file}", "--out", str(precious), "--overwrite", *TINY)
    assert_one_line_error(code, err, "not a seqlab run")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_eval_and_sample_on_a_good_run(capsys, trained, text_file):
    code, out, err = run_cli(capsys, "eval", str(trained), "--split", "valid", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tokens"] > 0 and result["bpc"] > 0
    code, out, err = run_cli(capsys, "eval", str(trained), "--file", str(text_file))
    assert code == 0 and "bpc" in out
    code, out, err = run_cli(capsys, "sample", str(trained), "--prime", "The king", "--length", "40", "--seed", "3")
    assert code == 0 and out.startswith("The king") and len(out) == len("The king") + 40 + 1
    code, again, _ = run_cli(capsys, "sample", str(trained), "--prime", "The king", "--length", "40", "--seed", "3")
    assert again == out
    code, out, _ = run_cli(capsys, "sample", str(trained), "--prime", "The", "--length", "20", "--beam", "3")
    assert code == 0 and len(out) == 3 + 20 + 1


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for key in ("model.hidden_size=512", "train.bptt_stride=0", "train.clip_norm=1.0", "examples:"):
        assert key in out
