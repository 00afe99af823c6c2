"""WaveNet on raw audio (van den Oord et al. 2016): speech, one 8-bit mu-law sample at a time,
"conditioned on the speaker ID" (global conditioning) or not.

    seqlab data fetch speech
    seqlab train task=speech data=speech model=wavenet --out runs/speech     # or --config wavenet-speech
    seqlab sample runs/speech --condition beth --seconds 2 -o beth.wav

Dimension legend: B batch, R receptive field, T scored samples per window, V = 256 mu-law levels.

Each utterance (data/audio.py: 8 kHz, synthetic voices, split by sentence) is mu-law
companded to V = 256 ids and preceded by R samples of silence. A training batch is B
windows of R + T ids, each from a random training utterance at a random place (drawn from
(train.seed, epoch, update)); the WaveNet reads x = window[:-1] and is scored on its last T
predictions, each of which sees a full receptive field (of speech or of the silence before
it). With task.speaker (the default) every gated layer adds a learned bias per speaker, so
the same network speaks in each voice; task.speaker=false trains the unconditional model.

Scored in bits per sample: every sample of every held-out utterance given all before it
(the periodic validation reads the first 10 seconds of each voice's validation speech; the
final report all of valid and test). `evaluate_with(..., speaker=s)` scores with another
speaker's label: conditioning helps when the right label costs fewer bits than a wrong one.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.audio import RATE, load_speech
from seqlab.models.wavenet import WaveNetLM, mu_law_encode
from seqlab.registry import register
from seqlab.training.task import Task

LEVELS = 256
SILENCE = int(mu_law_encode(torch.zeros(1), LEVELS)[0])      # the id of a zero sample
DEFAULT_WINDOW = 2000                                         # T, scored samples per training window
VALIDATION_SECONDS = 10                                       # per voice, in the periodic validation


def mu_law_ids(samples: np.ndarray) -> Tensor:
    """int16 samples -> (N,) long mu-law ids."""
    return mu_law_encode(torch.as_tensor(samples.astype(np.float32) / 32768), LEVELS)


class Speaking(nn.Module):
    """A WaveNet with its speaker fixed (or none): the plain LM protocol, so the decoders'
    sampling (decode/sampling.py) draws speech through the per-layer queues of `step`."""

    def __init__(self, model: WaveNetLM, speaker: int | None):
        super().__init__()
        self.model, self.speaker = model, speaker

    def _cond(self, batch_size: int) -> Tensor | None:
        if self.speaker is None:
            return None
        return torch.full((batch_size,), self.speaker, dtype=torch.long, device=self.model.head.weight.device)

    def init_state(self, batch_size: int):
        return self.model.init_state(batch_size)

    def forward(self, x: Tensor, state=None):
        return self.model(x, state, self._cond(x.size(0)))

    def step(self, x_t: Tensor, state):
        return self.model.step(x_t, state, self._cond(x_t.size(0)))


@register("task", "speech")
class SpeechTask(Task):
    name = "speech"
    offers = ("speak",)
    models = ("wavenet",)
    datasets = ("speech",)
    metric = "bits_per_sample"
    task_options = ("speaker", "length")
    unit, rate = "samples", "samples_per_s"

    @classmethod
    def validate(cls, cfg: Config) -> None:
        if cfg.data.path:
            raise SeqlabError("task.name=speech reads data.corpus=speech (seqlab data fetch speech); "
                              "data.path is not read")
        super().validate(cfg)
        if cfg.task.length < 0:
            raise SeqlabError(f"task.length (samples scored per window) must be 0 or more, got {cfg.task.length}")

    @property
    def window(self) -> int:
        return self.cfg.task.length or DEFAULT_WINDOW

    # -- data -----------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        data = load_speech()
        self.voices, self.source = list(data["voices"]), f"speech ({data['rate']} Hz, {len(data['voices'])} voices)"
        if data["rate"] != RATE:
            raise SeqlabError(f"the cached speech is {data['rate']} Hz, not {RATE}; seqlab data fetch speech again")
        self.splits = {s: [(mu_law_ids(x), speaker) for x, speaker in data[s]] for s in ("train", "valid", "test")}
        if not self.splits["train"] or not self.splits["valid"]:
            raise SeqlabError("the speech corpus has an empty training or validation split; fetch it again")

    def describe(self) -> str:
        return (f"{self.source}: " + ", ".join(f"{s} {len(u)} utterances ({sum(len(x) for x, _ in u) / RATE / 60:.1f} min)"
                                               for s, u in self.splits.items()) + f"; voices {', '.join(self.voices)}")

    def meta(self) -> dict[str, Any]:
        return {"voices": self.voices, "rate": RATE, "levels": LEVELS, "speaker": self.cfg.task.speaker}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.voices = list(meta["voices"])

    # -- model ----------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return WaveNetLM(self.cfg.model, LEVELS, len(self.voices) if self.cfg.task.speaker else 0)

    def condition(self, speakers: Tensor, device: torch.device) -> Tensor | None:
        return speakers.to(device) if self.cfg.task.speaker else None

    # -- what the engine drives -----------------------------------------------------------------

    def epoch_length(self, epoch: int) -> int:
        samples = sum(len(x) for x, _ in self.splits["train"])
        return max(samples // (self.cfg.train.batch_size * self.window), 1)

    def train_batch(self, epoch: int, index: int, device: torch.device):
        """B windows (B, R + T) of training speech and their speakers (B,), from (seed, epoch, index)."""
        rng = np.random.default_rng([self.cfg.train.seed, epoch, index])
        train, B, T = self.splits["train"], self.cfg.train.batch_size, self.window
        R = self.receptive_field
        rows, speakers = [], []
        for u in rng.integers(len(train), size=B):
            ids, speaker = train[u]
            padded = torch.cat([torch.full((R,), SILENCE, dtype=torch.long), ids])
            start = int(rng.integers(max(len(padded) - (R + T), 0) + 1))
            window = padded[start:start + R + T]
            if len(window) < R + T:                                   # a short utterance: silence after it
                window = torch.cat([window, torch.full((R + T - len(window),), SILENCE, dtype=torch.long)])
            rows.append(window)
            speakers.append(speaker)
        rows, speakers = torch.stack(rows), torch.tensor(speakers)   # (B, R + T), (B,)
        world = getattr(self, "world", None)
        if world is not None and world.parallel:
            rows, speakers = rows[world.rank::world.size], speakers[world.rank::world.size]
        return rows.to(device), speakers

    @property
    def receptive_field(self) -> int:
        from seqlab.models.wavenet import receptive_field
        m = self.cfg.model
        return receptive_field(m.kernel_size, m.num_layers, m.dilation_cycle)

    def loss(self, model: nn.Module, batch, step: int) -> tuple[Tensor, int]:
        rows, speakers = batch
        T = rows.size(1) - self.receptive_field
        logits, _ = model(rows[:, :-1], None, self.condition(speakers, rows.device))   # (B, R + T - 1, V)
        scored = logits[:, -T:]                                                         # (B, T, V)
        targets = rows[:, -T:]                                                          # (B, T)
        return F.cross_entropy(scored.reshape(-1, LEVELS), targets.reshape(-1)), targets.numel()

    def train_summary(self, mean_loss: float) -> dict[str, float]:
        return {"loss": mean_loss, "bits_per_sample": mean_loss / math.log(2)}

    # -- scoring --------------------------------------------------------------------------------

    def evaluate_with(self, model: nn.Module, utterances: Sequence, device: torch.device,
                      speaker: int | None = None, limit: int = 0) -> dict[str, float]:
        """Bits per sample of whole utterances (each after R samples of silence), with each one's
        own speaker label, or with `speaker`'s for all of them; `limit` > 0 reads at most that
        many samples of each utterance."""
        R, nats, count = self.receptive_field, 0.0, 0
        for ids, own in utterances:
            ids = ids[:limit] if limit else ids
            x = torch.cat([torch.full((R,), SILENCE, dtype=torch.long), ids[:-1]]).to(device)[None]   # (1, R + N - 1)
            label = torch.tensor([own if speaker is None else speaker])
            logits, _ = model(x, None, self.condition(label, device))                  # (1, R + N - 1, V)
            scored = logits[0, -len(ids):] if len(ids) > 1 else logits[0, -1:]
            nats += F.cross_entropy(scored.float(), ids.to(device)[-len(scored):], reduction="sum").item()
            count += len(scored)
        loss = nats / max(count, 1)
        return {"loss": loss, "bits_per_sample": loss / math.log(2), "samples": count}

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        if final:
            return self.evaluate_with(model, examples, device)
        # the periodic validation: the first VALIDATION_SECONDS of each voice's speech
        budget = {v: VALIDATION_SECONDS * RATE for v in range(len(self.voices))}
        chosen = []
        for ids, speaker in examples:
            if budget.get(speaker, 0) > 0:
                chosen.append((ids[:budget[speaker]], speaker))
                budget[speaker] -= len(chosen[-1][0])
        return self.evaluate_with(model, chosen, device)

    def finish(self, run, model: nn.Module, device: torch.device, log: Callable[[str], None],
               best_step: Any) -> dict[str, float]:
        with torch.no_grad():
            result = {f"test_{k}": v for k, v in self.evaluate_with(model, self.splits["test"], device).items()}
            result.update(self.evaluate_with(model, self.splits["valid"], device))
        log(f"best model (update {best_step}): test {result['test_bits_per_sample']:.4f} bits per sample, "
            f"valid {result['bits_per_sample']:.4f}")
        return result
