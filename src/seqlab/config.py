"""Typed configuration: dataclasses, TOML presets and dotted `key=value` overrides.

    cfg = load_config("configs/demo.toml", ["model.hidden_size=256", "train.lr=1e-3"])

Every field carries its help text; `seqlab train --help` prints them all with defaults.
An unknown key or a value of the wrong type is a one-line SeqlabError naming the valid keys.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab import SeqlabError
from seqlab.checks import validate
from seqlab.options import DECLARABLE, _DECLARED, _Section, load_declaring, declare, declared, opt  # noqa: F401
from seqlab.registry import get


@dataclass
class DataConfig(_Section):
    _section = "data"
    corpus: str = opt("shakespeare", "named corpus (see `seqlab data list`); ignored when data.path is set")
    path: str = opt("", "a UTF-8 text file or a folder of them to use as the corpus instead")
    level: str = opt("char", "tokens: 'char', 'word' (words split on whitespace, <eos> at each line end), 'subword' "
                     "(sentencepiece BPE learned from the training split) or 'byte' (the 256 byte values: any file)")
    subword_size: int = opt(4000, "data.level=subword: pieces in the vocabulary (at least 300: the 256 bytes are "
                                  "pieces of their own, so no text is <unk>)")
    valid_fraction: float = opt(0.05, "share of the token stream (from the end, before test) held out for validation")
    test_fraction: float = opt(0.05, "share of the token stream (at the very end) held out for testing")
    max_vocab: int = opt(0, "word level: keep the most frequent N words, the rest become <unk> (0 = all)")
    min_count: int = opt(1, "word level: words seen fewer times in train become <unk>")
    lowercase: bool = opt(False, "language models: lower-case the text before it is tokenised (fewer distinct "
                                 "words; the other tasks have task.lowercase)")
    memmap: bool = opt(False, "stream the corpus once into a token file on disk (uint8/uint16/int32) and train from it "
                       "memory-mapped, for corpora larger than memory")


@dataclass
class ModelConfig(_Section):
    _section = "model"
    name: str = opt("lstm", "model: rnn (Elman), jordan, lstm, gru, mingru, minlstm; window, tcn, wavenet; ngram")
    embedding_size: int = opt(64, "size of the token embedding")
    hidden_size: int = opt(512, "units per recurrent layer")
    num_layers: int = opt(2, "stacked recurrent layers")
    dropout: float = opt(0.2, "dropout on non-recurrent connections (Zaremba et al. 2014)")
    tie_weights: bool = opt(False, "share embedding and output weights (needs embedding_size == hidden_size)")
    forget_bias: float = opt(1.0, "initial LSTM forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015)")
    nonlinearity: str = opt("tanh", "rnn: 'tanh' or 'relu'")
    peephole: bool = opt(False, "lstm: gates also see the cell state (Gers & Schmidhuber 2000)")
    coupled: bool = opt(False, "lstm: one gate for input and forget, f = 1 - i (Greff et al. 2017)")
    layer_norm: bool = opt(False, "layer-normalised recurrence (Ba et al. 2016)")
    gru_form: str = opt("pytorch", "gru: 'pytorch' (reset gate after W_hn h, as cuDNN) or 'cho' (before, Cho et al. 2014)")
    residual: bool = opt(False, "add each layer's input to its output from layer 2 on")
    variational: bool = opt(False, "dropout masks drawn once per sequence, not per step (Gal & Ghahramani 2016)")
    recurrent_dropout: float = opt(0.0, "dropout on h_{t-1} inside the recurrence, one mask per sequence (Gal & Ghahramani 2016)")
    zoneout: float = opt(0.0, "probability that a state unit keeps its previous value at a step (Krueger et al. 2017)")
    norm_stabilizer: float = opt(0.0, "weight of the penalty mean_t (|h_t| - |h_{t-1}|)^2 (Krueger & Memisevic 2016)")
    recurrent_init: str = opt("default", "recurrent weights: 'default' (uniform), 'orthogonal' or 'identity' (Le et al. 2015), per gate")
    recurrent_gain: float = opt(1.0, "multiply the initial recurrent weights by this: above 1 the Jacobians start above 1 "
                                "and gradients explode (Pascanu et al. 2013; seqlab analyze clipping)")
    kernel_size: int = opt(3, "tcn / wavenet: convolution width")
    dilation_cycle: int = opt(10, "wavenet: dilations 1, 2, ..., 2^(cycle-1), repeated over num_layers")
    skip_channels: int = opt(0, "wavenet: channels of the skip path (0 = hidden_size)")
    channels: int = opt(64, "caption: channels of the CNN encoder's last convolution, the features of each image "
                        "region (the first two convolutions have a quarter and a half of it)")
    context: int = opt(8, "window: tokens the fixed-window model sees (Bengio et al. 2003)")
    order: int = opt(5, "ngram: tokens per n-gram, 1-20")
    smoothing: str = opt("kneser_ney", "ngram: 'add_k', 'witten_bell', 'kneser_ney' or 'modified_kneser_ney'")
    add_k: float = opt(1.0, "ngram: the k of add-k smoothing (1 = Laplace)")
    chrono: int = opt(0, "lstm / gru: chrono initialisation of the gate biases for lags up to N steps (Tallec & Ollivier "
                      "2018); 0 = off")
    impl: str = opt("auto", "'fused' (PyTorch's nn.RNN/LSTM/GRU), 'fast' (seqlab's cells, hand-written sequence backward), "
                    "'loop' (seqlab's cells, per-step autograd) or 'auto' (fused when it can, else fast)")


@dataclass
class TrainConfig(_Section):
    _section = "train"
    batch_size: int = opt(64, "parallel streams per batch")
    bptt_steps: int = opt(100, "k2 of TBPTT(k1, k2): steps back-propagated through at each update")
    bptt_stride: int = opt(0, "k1 of TBPTT(k1, k2): new tokens per update (0 = same as bptt_steps)")
    state_resets: float = opt(0.05, "share of streams whose carried state is reset to the initial state at each "
                                    "update, so the model learns to start from it (sampling and scoring do); 0 = off")
    optimizer: str = opt("adam", "'adam', 'sgd' (with momentum) or 'rmsprop'")
    lr: float = opt(2e-3, "learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(0.0, "L2 weight decay")
    grad_accum: int = opt(1, "compute each update's batch in N parts, one after another, gradients summed: the "
                             "same update with about 1/N of the activation memory (train.batch_size is the whole)")
    clip_norm: float = opt(1.0, "clip the global gradient norm to this (Pascanu et al. 2013); 0 = off")
    max_steps: int = opt(0, "stop after this many updates (0 = no limit)")
    max_epochs: int = opt(10, "stop after this many passes over the training split (0 = no limit)")
    max_time: float = opt(0.0, "stop after this many seconds of training (0 = no limit)")
    log_every: int = opt(50, "record the training loss every N updates (metrics.jsonl, progress bar)")
    eval_every: int = opt(500, "evaluate on the validation split every N updates (and at the end)")
    eval_tokens: int = opt(0, "validate on the first N validation tokens during training (0 = all)")
    eval_batch_size: int = opt(32, "parallel streams when evaluating")
    schedule: str = opt("plateau", "learning rate: 'plateau' (decay when valid stalls), 'cosine' (to 0 at max_steps), 'constant'")
    warmup_steps: int = opt(0, "raise the learning rate linearly from 0 over the first N updates")
    lr_decay: float = opt(0.5, "multiply the learning rate by this when validation stops improving")
    lr_patience: int = opt(1, "evaluations without improvement before decaying the learning rate")
    early_stop: int = opt(5, "stop after N evaluations without improvement (0 = never)")
    seed: int = opt(1234, "random seed (weights, dropout, sampling)")
    device: str = opt("auto", "'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when available)")
    threads: int = opt(0, "CPU threads for PyTorch: 0 = the cores other work leaves free, rechecked every "
                       "second (a fair share of a busy machine); N = exactly N, bit-reproducible under any load")
    progress: bool = opt(True, "show a live progress bar")
    logger: str = opt("none", "also log the records to 'tensorboard' (RUN/tensorboard/; tensorboard --logdir RUN) "
                      "or 'none'")
    checkpoint_every: int = opt(0, "save a resumable checkpoint every N updates (0 = at every evaluation); "
                                "SIGKILL loses at most the updates since the last one")
    keep_checkpoints: int = opt(2, "checkpoints kept (newest first); an older one is the fallback when the newest is damaged")
    nan_retries: int = opt(3, "non-finite losses in a row rolled back to the last checkpoint before the run stops")
    nan_lr_factor: float = opt(0.5, "multiply the learning rate by this at each rollback after a non-finite loss")
    stop_at: float = opt(0.0, "stop once the validation metric that picks the best model reaches this (accuracy "
                         "at or above it, a loss at or below it); 0 = off")
    precision: str = opt("fp32", "'fp32', or 'bf16' (autocast: matrix products in bfloat16, weights and optimizer in "
                         "float32; pays off on GPUs with bf16 units)")
    init_from: str = opt("", "start from the best weights of this run (fine-tuning; the same model options, a new "
                         "optimiser, schedule and update count): language models read the new text with its "
                         "vocabulary, tokens it lacks as <unk>; '' = off")
    compile: bool = opt(False, "run the training step through torch.compile (pays off on GPUs for long runs; "
                        "the first updates are slow while it compiles)")


@dataclass
class TaskConfig(_Section):
    _section = "task"
    name: str = opt("lm", "what to learn: lm (next token), classify, tag, translate, forecast, conditional, bilm, "
                    "sequence (the adding problem, copy memory, pixel MNIST, piano rolls; see tasks/), speech (WaveNet on audio)")
    target: str = opt("class", "classify: 'class' (labels; sentiment: positive when its score > 0) or 'score' (regression)")
    pooling: str = opt("final", "classify: sequence summary from the encoder: 'final' states, 'mean' or 'max' over time")
    bidirectional: bool = opt(True, "classify / tag / translate: read the input in both directions")
    char_size: int = opt(0, "tag: also build each word from its characters with a Bi-LSTM of this size (Ling et al. 2015); 0 = off")
    tagset: str = opt("base", "tag (Brown): 'base' strips the -TL/-HL/-NC/FW- markers from each tag; 'full' keeps them")
    lowercase: bool = opt(False, "lower-case the input words")
    attention: str = opt("bahdanau", "translate: 'bahdanau' (additive), 'luong_dot', 'luong_general' or 'none'; "
                         "caption: 'bahdanau' (Xu et al.'s soft attention) or 'none' (Show and Tell)")
    doubly_stochastic: float = opt(1.0, "caption with attention: weight of Xu et al.'s penalty (1 - Σ_t α_ti)², "
                                   "averaged over regions; 0 = off")
    sampling: str = opt("none", "translate: scheduled sampling (Bengio et al. 2015): none, linear, exponential, inverse_sigmoid")
    sampling_k: float = opt(0.0, "scheduled sampling: k of the decay (linear: start, exponential: base < 1, "
                              "inverse_sigmoid: k >= 1); 0 = the schedule's default")
    sampling_c: float = opt(0.0, "scheduled sampling, linear: decrease per update (0 = reach the floor at train.max_steps)")
    sampling_min: float = opt(0.0, "scheduled sampling: the lowest probability of feeding the true token")
    beam_size: int = opt(5, "translate / caption: beam width when evaluating, translating and captioning")
    length_penalty: float = opt(0.6, "translate / caption: alpha of the GNMT length penalty ((5+|Y|)/6)^alpha")
    max_length: int = opt(0, "drop training examples with more tokens than this (0 = keep all)")
    batching: str = opt("sort_source", "mini-batches (Morishita et al. 2017): shuffle, sort_source, sort_target, "
                        "sort_both, token_budget")
    max_tokens: int = opt(0, "batching=token_budget: padded tokens per batch (0 = batch_size x the mean length)")
    condition: str = opt("init", "conditional: the class vector sets the initial state ('init'), joins every input "
                         "('input') or both")
    length: int = opt(0, "sequence: T of the adding problem / the copy-memory delay (0 = the paper's 600 / 1000); "
                      "speech: samples scored per training window (0 = 2000)")
    speaker: bool = opt(True, "speech: condition the WaveNet on the speaker (global conditioning, van den Oord et al. 2016)")
    noise: float = opt(0.5, "sequence, data=onebit: standard deviation of the Gaussian inputs after the bit "
                       "(Bengio et al. 1994)")
    train_examples: int = opt(0, "sequence / caption: training examples generated or taken (0 = the task's default)")
    test_examples: int = opt(0, "sequence / caption: test (and validation) examples generated or taken "
                             "(0 = the task's default)")
    horizon: int = opt(0, "forecast: values held out for testing, and as many before them for validation (0 = per series)")
    transform: str = opt("auto", "forecast: 'auto' (chosen on validation), 'none', or e.g. 'log,1,12' (log, then differences)")
    period: int = opt(0, "forecast: seasonal period for MASE and the seasonal naive forecast (0 = the series' own)")
    ar_order: int = opt(0, "forecast, model.name=ar: the p of AR(p); 0 = chosen by AIC")
    elmo: str = opt("", "tag / classify: path of a task.name=bilm run whose frozen layers, mixed by learned weights, "
                    "join each word's input (Peters et al. 2018); '' = off")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def all_keys() -> list[tuple[str, type, Any, str]]:
    """(dotted key, type, default, help) for every option, in declaration order."""
    rows = []
    for section, cls in _section_classes().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rows.append((f"{section}.{f.name}", hints[f.name], f.default, f.metadata.get("help", "")))
        for name, (typ, default, help_text) in _DECLARED.get(section, {}).items():
            rows.append((f"{section}.{name}", typ, default, help_text))
    return rows


# No option has a use for a value this large; bounding every integer keeps a typo from
# reaching an allocation or a loop (each family and task checks its own, tighter, ranges).
INT_LIMIT = 2**31 - 1


def _coerce(key: str, typ: type, value: Any) -> Any:
    """Convert a TOML value or a command-line string to the field's type, or explain why not;
    floats must be finite and integers below INT_LIMIT in size."""
    value = _convert(key, typ, value)
    if typ is float and not math.isfinite(value):
        raise SeqlabError(f"{key} must be a finite number, got {value}")
    if typ is int and abs(value) > INT_LIMIT:
        raise SeqlabError(f"{key}={value} is far too large (the limit is {INT_LIMIT:,})")
    return value


def _convert(key: str, typ: type, value: Any) -> Any:
    if isinstance(typ, types.UnionType):  # only `str | None` style is used; take the first
        typ = typing.get_args(typ)[0]
    if isinstance(value, str) and typ is not str:
        text = value.strip()
        try:
            if typ is bool:
                low = text.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if typ is int:
                return int(text)
            if typ is float:
                return float(text)
        except ValueError:
            raise SeqlabError(f"{key}: expected {typ.__name__}, got {value!r}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise SeqlabError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _set(cfg: Config, key: str, value: Any) -> None:
    valid = [k for k, *_ in all_keys()]
    if key not in valid and key.split(".")[0] in DECLARABLE:
        load_declaring()                    # perhaps a family's or a task's own option
        valid = [k for k, *_ in all_keys()]
    if key not in valid:
        section = key.split(".")[0]
        near = [k for k in valid if k.startswith(section + ".")] or valid
        raise SeqlabError(f"unknown option {key!r}; valid: {', '.join(near)}")
    section, name = key.split(".", 1)
    sub = getattr(cfg, section)
    hints = typing.get_type_hints(type(sub))
    typ = hints[name] if name in hints else _DECLARED[section][name][0]
    setattr(sub, name, _coerce(key, typ, value))


def apply(cfg: Config, values: dict[str, Any]) -> Config:
    """Apply a nested dict ({"model": {"hidden_size": 256}}) of options."""
    for section, body in values.items():
        if section not in SECTIONS:
            raise SeqlabError(f"unknown section {section!r}; valid: {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise SeqlabError(f"{section}: expected a table of options, got {body!r}")
        for name, value in body.items():
            _set(cfg, f"{section}.{name}", value)
    return cfg


# `task=classify` is short for `task.name=classify`; likewise data= and model=.
SHORTHAND = {"task": "task.name", "data": "data.corpus", "model": "model.name"}


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """["model.hidden_size=256", "task=tag"] -> {"model": {"hidden_size": "256"}, "task": {"name": "tag"}}"""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = SHORTHAND.get(key.strip(), key)
        if not sep or "." not in key:
            raise SeqlabError(f"override {item!r} is not of the form section.key=value (e.g. model.hidden_size=256)")
        section, name = key.strip().split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def load_config(preset: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The preset (a TOML file, or a name in configs/), then the overrides, validated. A value
    the preset sets that the run would not use (the sentiment preset's model sizes when
    model.name=bow) is put back to its default and named in `cfg.notes`; the same value given
    on the command line is refused when training starts."""
    cfg = Config()
    preset_keys: set[str] = set()
    if preset:
        path = Path(preset)
        if not path.is_file() and not path.suffix and (Path("configs") / f"{preset}.toml").is_file():
            path = Path("configs") / f"{preset}.toml"
        if not path.is_file():
            raise SeqlabError(f"config preset not found: {preset}")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
            apply(cfg, values)
            preset_keys = {f"{section}.{key}" for section, body in values.items() if isinstance(body, dict)
                           for key in body}
        except tomllib.TOMLDecodeError as e:
            raise SeqlabError(f"{path}: not valid TOML ({e})") from None
        except UnicodeDecodeError as e:
            raise SeqlabError(f"{path}: not UTF-8 text (byte {e.start}); save the preset as UTF-8") from None
        except OSError as e:
            raise SeqlabError(f"{path}: cannot read ({e.strerror})") from None
    given = parse_overrides(overrides or [])
    apply(cfg, given)
    cfg.notes = _unused_preset_values(cfg, preset_keys - {f"{s}.{k}" for s, body in given.items() for k in body})
    validate(cfg)
    return cfg


def _unused_preset_values(cfg: Config, preset_only: set[str]) -> list[str]:
    """Put back to their defaults the preset's values this run would not use; name them."""
    if not preset_only:
        return []
    try:
        honoured = get("task", cfg.task.name).honoured(cfg)
    except SeqlabError:
        return []                  # an unknown task or model: validate says so
    defaults = {"model": ModelConfig(), "task": TaskConfig(), "train": TrainConfig()}
    notes = []
    for key in sorted(preset_only):
        section, name = key.split(".", 1)
        if section in honoured and name not in honoured[section]:
            value = getattr(getattr(cfg, section), name)
            if value != getattr(defaults[section], name):
                notes.append(f"{key}={value!r}")
                setattr(getattr(cfg, section), name, getattr(defaults[section], name))
    return notes


def to_dict(cfg: Config) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    for section in DECLARABLE:
        out[section].update(getattr(cfg, section).extras())
    return out


def from_dict(values: dict[str, Any]) -> Config:
    cfg = apply(Config(), values)
    validate(cfg)
    return cfg


def diff(old: Config, new: Config) -> list[str]:
    """Human-readable differences, `key: old -> new`, for the resume warning."""
    a, b = to_dict(old), to_dict(new)
    return [f"{s}.{k}: {a[s][k]!r} -> {b[s][k]!r}" for s in a for k in a[s] if a[s][k] != b[s][k]]
