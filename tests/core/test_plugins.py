"""A model family, a task and a verb from outside seqlab (tests/plugin_example, found through its
entry points only; conftest.py puts it on the path as installing it would): with no file of
seqlab edited, training, the verb on the command line and in Python, --help and the option checks
work. Resume, NaN rollback and DDP of its task are tests/training/test_every_task.py's (it runs
every registered task, this one included). And the core keeps knowing nothing of its rooms:
the registry names no seqlab module, checks.py no family or task, the API and the command line
branch on no task's name."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import seqlab
from seqlab.cli import main
from seqlab.registry import names

SRC = Path(seqlab.__file__).parent
TRAIN = ["task=toy", "model=toy", "model.toy_width=6", "train.max_steps=40", "train.eval_every=20",
         "train.batch_size=16", "train.progress=false", "train.threads=1", "train.device=cpu"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    return out


def test_the_plugin_is_found_by_its_entry_points():
    assert "toy" in names("task") and "toy" in names("model") and "majority" in names("verb")
    assert "seqlab_toy" not in (SRC / "registry.py").read_text()


def test_train_and_the_verb_in_python(toy_run):
    run = seqlab.load(toy_run)
    assert run.task == "toy" and run.config["model"]["toy_width"] == 6 and run.config["task"]["toy_length"] == 9
    assert "majority" in run.offers and "majority" in dir(run)
    answers = run.majority(["11111", "00000", "1"])
    assert [a["bits"] for a in answers] == ["11111", "00000", "1"]
    assert answers[0]["more_ones"] > 0.5 > answers[1]["more_ones"]        # 40 updates learn the easy ends
    assert json.loads((toy_run / "config.json").read_text())["config"]["model"]["toy_width"] == 6
    with pytest.raises(seqlab.SeqlabError, match="bit strings"):
        run.majority("01x")


def test_the_verb_on_the_command_line(toy_run, capsys):
    assert main(["majority", str(toy_run), "--bits", "111", "--bits", "000"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["bits"] for p in printed] == ["111", "000"]
    with pytest.raises(SystemExit) as e:                               # --bits is required: argparse says so
        main(["majority", str(toy_run)])
    assert e.value.code == 2
    assert "--bits" in capsys.readouterr().err


def test_the_verb_refuses_another_tasks_run_and_other_verbs_refuse_the_toy_run(toy_run, tmp_path, capsys):
    from conftest import make_text
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000))
    lm = tmp_path / "lm"
    assert main(["train", f"data.path={corpus}", "model.hidden_size=8", "model.num_layers=1", "train.max_steps=2",
                 "train.batch_size=2", "train.bptt_steps=8", "train.progress=false", "--out", str(lm)]) == 0
    capsys.readouterr()
    assert main(["majority", str(lm), "--bits", "1"]) == 2          # refusals of a run exit 2
    err = capsys.readouterr().err
    assert "task.name=lm run" in err and "task.name=toy" in err and "Traceback" not in err
    assert main(["sample", str(toy_run)]) == 2
    err = capsys.readouterr().err
    assert "task.name=toy run" in err and "seqlab majority" in err
    with pytest.raises(seqlab.SeqlabError, match="task.name=toy"):
        seqlab.load(lm).majority("1")


def test_help_lists_the_verb_and_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "majority" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["majority", "--help"])
    assert "--bits" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "model.toy_width=8" in out and "task.toy_length=9" in out


def test_the_option_checks_hold_for_declared_options(tmp_path, capsys):
    for extra, says in ((["model.toy_leak=2"], "model.toy_leak must be in [0, 1)"),
                        (["task.toy_length=4"], "task.toy_length must be an odd number"),
                        (["model.toy_width=many"], "model.toy_width: expected int"),
                        (["model.hidden_size=32"], "would not use model.hidden_size=32"),
                        (["model.toy_nope=1"], "unknown option 'model.toy_nope'")):
        assert main(["train", *TRAIN, *extra, "--out", str(tmp_path / "x")]) == 2, extra
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    # a declared option of the toy family is refused where another family would not use it
    assert main(["train", "model=lstm", "model.toy_width=4", "train.max_steps=1", "--out", str(tmp_path / "y")]) == 2
    assert "would not use model.toy_width=4" in capsys.readouterr().err


def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path):
    """A package whose module fails to import must not take the built-in tasks down."""
    pkg = tmp_path / "site"
    (pkg / "broken_plugin").mkdir(parents=True)
    (pkg / "broken_plugin" / "__init__.py").write_text("raise ImportError('its dependency is missing')\n")
    info = pkg / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[seqlab.plugins]\ntask.broken = broken_plugin\n")
    code = "from seqlab.registry import names; print(' '.join(names('task')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(pkg)})
    assert done.returncode == 0, done.stderr
    assert "lm" in done.stdout.split() and "broken" not in done.stdout.split()
    assert "skipping the plug-in module broken_plugin" in done.stderr and "dependency is missing" in done.stderr


# -- the core knows nothing of the rooms above it ---------------------------------------------------

def _strings(path: Path) -> list[str]:
    """The string constants of a module's code (its docstrings left out)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_the_registry_names_no_seqlab_module():
    tree = ast.parse((SRC / "registry.py").read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names] + \
        [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [m for m in imported if m and m.startswith("seqlab.")] == []
    assert [s for s in _strings(SRC / "registry.py") if s.startswith("seqlab.") and s != "seqlab.plugins"] == []  # the group


def test_checks_name_no_family_and_no_task():
    known = set(names("model")) | set(names("task"))
    assert [s for s in _strings(SRC / "checks.py") if s in known] == []


def _task_name_comparisons(path: Path) -> list[str]:
    known = set(names("task"))
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                values = [part] if isinstance(part, ast.Constant) else \
                    list(part.elts) if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else []
                found += [f"{path.name}:{node.lineno} {v.value!r}" for v in values
                          if isinstance(v, ast.Constant) and v.value in known]
    return found


def test_the_api_and_the_command_line_branch_on_no_task_name():
    modules = sorted((SRC / "api").glob("*.py")) + sorted(SRC.glob("cli*.py"))
    assert [hit for m in modules for hit in _task_name_comparisons(m)] == []


def test_only_the_recurrent_builder_knows_which_cell_carries_a_memory():
    """The encoder, the seq2seq decoder, the conditional LM, the forecasters and the LM ask
    models/body.py (has_cell, zero_state, hidden_of, step_cell) instead of testing the name."""
    assert [p.name for p in SRC.rglob("*.py") if "is_lstm" in p.read_text()] == []
    cells = {"lstm", "gru", "rnn", "jordan"}
    for rel in ("models/encoder.py", "models/seq2seq.py", "models/forecasters.py", "models/recurrent.py",
                "tasks/conditional.py"):
        for node in ast.walk(ast.parse((SRC / rel).read_text())):
            if isinstance(node, ast.Compare):
                named = [v.value for v in [node.left, *node.comparators] if isinstance(v, ast.Constant)]
                assert not set(named) & cells, f"{rel}:{node.lineno} compares the cell name"


def test_train_help_narrows_to_what_a_run_would_use(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help", "task=classify", "model=gru"])
    out = capsys.readouterr().out
    assert "task.name=classify with model.name=gru uses" in out
    assert "    task.pooling=" in out and "    model.gru_form=" in out
    assert "    task.beam_size=" not in out and "    model.peephole=" not in out and "    train.bptt_steps=" not in out
    with pytest.raises(SystemExit):
        main(["train", "--help", "model=toy", "task=toy"])                 # a plug-in's family and task
    out = capsys.readouterr().out
    assert "    model.toy_width=8" in out and "    task.toy_length=9" in out and "    model.hidden_size=" not in out
    with pytest.raises(SystemExit):
        main(["train", "--help", "model"])                                 # one section
    out = capsys.readouterr().out
    assert "    model.peephole=" in out and "    train.lr=" not in out
    with pytest.raises(SystemExit) as e:
        main(["train", "--help", "modle"])
    assert "'modle' is not a section" in str(e.value)
