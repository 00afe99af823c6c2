"""task.name=toy: is a bit string mostly ones? A task with its own option (task.toy_length) and
its own verb (`run.majority("0110")`, `seqlab majority RUN --bits 0110`), trained by seqlab's
one engine, so resume, NaN rollback and DDP come with it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab import SeqlabError
from seqlab.options import declare
from seqlab.registry import register
from seqlab.tasks.base import ExampleTask, batched
from seqlab.training.task import Verb

from seqlab_toy.model import Leaky

declare("task", "toy_length", 9, "toy: the longest bit string generated (odd lengths only, so there is no tie)")
BITS = {"0": 1, "1": 2}                 # ids (0 pads)


class MajorityNet(Leaky):
    def __init__(self, cfg):
        super().__init__(cfg, 3)
        self.head = nn.Linear(cfg.toy_width, 2)

    def forward(self, x, lengths):
        states, _ = self.run(x, torch.zeros(x.size(0), self.width, device=x.device))
        return self.head(states[torch.arange(x.size(0)), lengths - 1])       # (B, 2)


def majority(run, bits: str | list[str]) -> list[dict]:
    """For each bit string, the probability that it holds more ones than zeros."""
    items = [bits] if isinstance(bits, str) else list(bits)
    if not items or any(not b or set(b) - set("01") for b in items):
        raise SeqlabError("give bit strings of 0 and 1, e.g. '0110'")
    task = run.prepared_task
    batch = task.collate([(b, 0) for b in items], run.device)
    with torch.no_grad():
        p = F.softmax(run.model(batch["x"], batch["lengths"]), -1)[:, 1]
    return [{"bits": b, "more_ones": round(float(q), 6)} for b, q in zip(items, p)]


def _arguments(parser) -> None:
    parser.add_argument("--bits", action="append", required=True, help="a bit string (repeatable)")


MAJORITY = register("verb", "majority")(Verb(
    "majority", majority, help="the probability that each bit string is mostly ones", task="toy",
    arguments=_arguments, command=lambda run, args: majority(run, args.bits)))


@register("task", "toy")
class ToyTask(ExampleTask):
    name = "toy"
    models = ("toy",)
    metric, higher_is_better = "accuracy", True
    model_options = {"toy": ("embedding_size", "toy_width", "toy_leak")}
    task_options = ("toy_length",)
    verbs = (MAJORITY,)

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        if cfg.task.toy_length < 1 or cfg.task.toy_length % 2 == 0:
            raise SeqlabError(f"task.toy_length must be an odd number of 1 or more, got {cfg.task.toy_length}")

    def prepare(self, log=print) -> None:
        rng = np.random.default_rng(self.cfg.train.seed)
        examples = []
        for _ in range(240):
            n = int(rng.choice(np.arange(1, self.cfg.task.toy_length + 1, 2)))
            bits = "".join(rng.choice(["0", "1"], n))
            examples.append((bits, int(bits.count("1") > n // 2)))
        self.source = "generated bit strings"
        self.split(examples)
        log(self.describe())

    def lengths(self, examples):
        return [len(b) for b, _ in examples], None

    def collate(self, examples, device):
        width = max(len(b) for b, _ in examples)
        x = torch.tensor([[BITS[c] for c in b] + [0] * (width - len(b)) for b, _ in examples], device=device)
        return {"x": x, "lengths": torch.tensor([len(b) for b, _ in examples], device=device),
                "y": torch.tensor([y for _, y in examples], device=device)}

    def build_model(self) -> nn.Module:
        return MajorityNet(self.cfg.model)

    def loss(self, model, batch, step):
        return F.cross_entropy(model(batch["x"], batch["lengths"]), batch["y"]), len(batch["y"])

    def evaluate(self, model, examples, device, final=False):
        loss = right = 0.0
        for part in batched(list(examples), 64):
            batch = self.collate(part, device)
            logits = model(batch["x"], batch["lengths"])
            loss += float(F.cross_entropy(logits, batch["y"], reduction="sum"))
            right += int((logits.argmax(-1) == batch["y"]).sum())
        return {"loss": loss / len(examples), "accuracy": 100.0 * right / len(examples)}
