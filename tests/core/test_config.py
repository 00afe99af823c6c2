from pathlib import Path

import pytest

from seqlab import SeqlabError
from seqlab.config import ModelConfig, all_keys, load_config


def test_defaults_and_overrides_are_typed():
    cfg = load_config(None, ["model.hidden_size=256", "train.lr=1e-3", "model.tie_weights=false",
                             "train.progress=off", "data.level=word"])
    assert cfg.model.hidden_size == 256 and cfg.train.lr == 1e-3
    assert cfg.model.tie_weights is False and cfg.train.progress is False
    assert cfg.data.level == "word"


def test_presets_load(tmp_path):
    for name in ("demo", "char-lstm"):
        cfg = load_config(Path(__file__).parents[2] / "configs" / f"{name}.toml")
        assert cfg.model.name == "lstm"


def test_unknown_key_lists_valid_keys():
    with pytest.raises(SeqlabError, match="unknown option 'model.hiden_size'.*model.hidden_size"):
        load_config(None, ["model.hiden_size=3"])
    with pytest.raises(SeqlabError, match="unknown section"):
        load_config(None, ["modle.hidden_size=3"])


def test_wrong_type_is_named():
    with pytest.raises(SeqlabError, match=r"model.hidden_size: expected int, got 'big'"):
        load_config(None, ["model.hidden_size=big"])


def test_toml_wrong_type(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[train]\nbatch_size = "many"\n')
    with pytest.raises(SeqlabError, match="train.batch_size: expected int"):
        load_config(p)


@pytest.mark.parametrize("override", ["model.hidden_size=0", "train.batch_size=-1", "train.bptt_steps=0",
                                      "model.num_layers=0", "train.lr=0", "model.dropout=1.5"])
def test_sizes_of_zero_or_below_are_rejected(override):
    with pytest.raises(SeqlabError, match=override.split("=")[0]):
        load_config(None, [override])


def test_every_option_has_help():
    keys = all_keys()
    assert len(keys) > 30
    assert all(help_text for *_, help_text in keys)


def test_a_presets_values_the_chosen_model_would_not_use_go_back_to_defaults_and_are_named(tmp_path):
    """`--config sentiment model=bow`: the preset's encoder sizes and pooling do not apply to the
    bag of words; they are put back to the defaults (config.json stays true) and named, while
    the same values typed on the command line are refused."""
    from seqlab.training.engine import make_task
    cfg = load_config(Path(__file__).parents[2] / "configs" / "sentiment.toml", ["model.name=bow", "train.lr=0.01"])
    assert cfg.notes == ["model.dropout=0.5", "model.embedding_size=128", "model.hidden_size=128",
                         "model.num_layers=1", "task.pooling='max'"]
    assert cfg.model.hidden_size == ModelConfig().hidden_size and cfg.task.pooling == "final"
    assert cfg.train.lr == 0.01 and cfg.task.lowercase                  # what bow uses stays
    make_task(cfg)                                                       # and it trains
    typed = load_config(None, ["task=classify", "data=sentiment", "model=bow", "model.hidden_size=128"])
    with pytest.raises(SeqlabError, match="would not use model.hidden_size=128"):
        make_task(typed)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (Path(__file__).parents[2] / "configs").glob("*.toml")))
def test_every_shipped_config_is_valid(preset, monkeypatch):
    """Each configs/*.toml loads by name, and its task accepts every option it sets."""
    from seqlab.registry import get
    monkeypatch.chdir(Path(__file__).parents[2])
    cfg = load_config(preset, [])
    task = get("task", cfg.task.name)
    task.validate(cfg)
    task.check_options(cfg)
