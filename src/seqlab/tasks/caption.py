"""One-to-many from an image: captioning (models/captioner.py) on composed digit scenes (data/scenes.py).

    seqlab data fetch mnist
    seqlab train --config configs/caption.toml --out runs/caption            # Show, Attend and Tell
    seqlab train --config configs/caption.toml task.attention=none           # Show and Tell
    seqlab caption runs/caption --image scene.png --beam 5 --attention map.png

Data (`data.corpus`): `scenes`, 1-5 real MNIST digits on a 64 x 96 canvas with a generated
caption ("three above seven , then one"); `segments`, the same scenes of seven-segment
glyphs drawn here (nothing to fetch). task.train_examples / task.test_examples scenes
(default 20,000 / 2,000; the validation split as many as the test split), each split drawn
from its own digit images.

Training is teacher-forced, through the one engine like every task (resume, NaN rollback,
DDP). With attention the loss adds Xu et al.'s doubly stochastic penalty, weighted by
task.doubly_stochastic. The periodic validation decodes greedily; `seqlab eval` decodes
with beam search (task.beam_size) and adds BLEU-1..3, and exact match by number of digits.
BLEU is sacrebleu's corpus BLEU over the space-joined words.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data import scenes
from seqlab.data.images import load_mnist
from seqlab.data.sequences import pad
from seqlab.data.vocab import BOS, EOS, PAD, Vocab
from seqlab.decode import seq2seq as decode
from seqlab.models.captioner import ATTENTIONS, Captioner, doubly_stochastic
from seqlab.models.seq2seq import sequence_loss, strip_eos
from seqlab.registry import register
from seqlab.tasks.base import ExampleTask, batched, encode_words
from seqlab.tasks.translate import bleu

CORPORA = ("scenes", "segments")
DEFAULT_COUNTS = (20000, 2000)                  # training scenes; validation and test scenes each
SEEDS = {"train": 1, "valid": 2, "test": 3}     # of the scene layouts (the digit images differ by split too)


def digit_source(corpus: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 28, 28) float in [0, 1], labels (n,)) the scenes of a split are made of."""
    if corpus == "segments":
        return scenes.glyphs(5000 if split == "train" else 1000, seed=10 + SEEDS[split])
    images, labels = load_mnist()[split]
    return images.reshape(-1, 28, 28), labels


def image_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(255.0)[:, None]


@register("task", "caption")
class CaptionTask(ExampleTask):
    name = "caption"
    offers = ("caption",)
    models = ("lstm",)
    model_options = {"lstm": ("embedding_size", "hidden_size", "dropout", "forget_bias", "channels")}
    task_options = ("attention", "doubly_stochastic", "beam_size", "length_penalty", "train_examples",
                    "test_examples", "batching")
    datasets = CORPORA
    metric = "bleu"
    higher_is_better = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.vocab = Vocab(list(scenes.WORDS), "word")

    @property
    def tgt_vocab(self) -> Vocab:                    # the name translate's decoding helpers read
        return self.vocab

    @classmethod
    def validate(cls, cfg: Config) -> None:
        if cfg.data.path:
            raise SeqlabError("task.name=caption reads generated scenes (data.corpus=scenes or segments), not "
                              "data.path; remove data.path")
        super().validate(cfg)
        t = cfg.task
        if t.attention not in ATTENTIONS:
            raise SeqlabError(f"caption: task.attention must be 'bahdanau' (Xu et al.'s soft attention) or 'none' "
                              f"(Show and Tell); got {t.attention!r}")
        if t.doubly_stochastic < 0:
            raise SeqlabError(f"task.doubly_stochastic must be 0 or more, got {t.doubly_stochastic}")
        if t.doubly_stochastic != 1.0 and t.attention == "none":
            raise SeqlabError("task.doubly_stochastic weighs the attention penalty; without attention "
                              "(task.attention=none) remove it")
        for key in ("train_examples", "test_examples"):
            if getattr(t, key) < 0:
                raise SeqlabError(f"task.{key} must be 0 or more, got {getattr(t, key)}")
        if t.beam_size < 1:
            raise SeqlabError(f"task.beam_size must be 1 or more, got {t.beam_size}")

    # -- data ---------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        t, corpus = self.cfg.task, self.cfg.data.corpus
        n_train, n_test = t.train_examples or DEFAULT_COUNTS[0], t.test_examples or DEFAULT_COUNTS[1]
        self.source = f"{corpus} (generated captions of {'MNIST digits' if corpus == 'scenes' else 'seven-segment glyphs'})"
        self.splits = {}
        for split, count in (("train", n_train), ("valid", n_test), ("test", n_test)):
            made = scenes.compose(*digit_source(corpus, split), count, seed=SEEDS[split])     # not train.seed
            self.splits[split] = [(made.images[i], encode_words(self.vocab, made.captions[i]), i)
                                  for i in range(count)]

    def lengths(self, examples: Sequence) -> tuple[list[int], None]:
        return [len(e[1]) + 1 for e in examples], None          # the captions: what gets padded

    def epoch_note(self, epoch: int) -> str:
        note = super().epoch_note(epoch)
        if epoch == 0 and self.cfg.train.schedule == "plateau":
            # measured: from scratch the captioner learns the grammar, then sits ~800 updates on a
            # plateau before it reads the digits; the plateau schedule cut the rate there and it never did
            note += ("\nnote: train.schedule=plateau can lower the learning rate during the captioner's long "
                     "first plateau, before it learns to read the digits; configs/caption.toml uses "
                     "train.schedule=cosine")
        return note

    def describe(self) -> str:
        return f"{super().describe()}, {len(self.vocab) - 4} words, attention {self.cfg.task.attention}"

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.itos[4:], "height": scenes.HEIGHT, "width": scenes.WIDTH}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.vocab = Vocab(meta["vocab"], "word")

    # -- model, loss, metrics ------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return Captioner(self.cfg.model, len(self.vocab), attention=self.cfg.task.attention,
                         image_size=(scenes.HEIGHT, scenes.WIDTH))

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        tgt_in, _ = pad([[BOS, *e[1]] for e in examples])
        tgt_out, _ = pad([[*e[1], EOS] for e in examples])
        return {"images": image_tensor(np.stack([e[0] for e in examples]), device),
                "tgt_in": tgt_in.to(device), "tgt_out": tgt_out.to(device)}

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        logits, weights = model(batch["images"], batch["tgt_in"])                  # (B, U, V), (B, U, R)
        loss = sequence_loss(logits, batch["tgt_out"])
        lam = self.cfg.task.doubly_stochastic
        if self.cfg.task.attention != "none" and lam:        # the config, not model.attends: under DDP the model is wrapped
            loss = loss + lam * doubly_stochastic(weights, batch["tgt_out"]).mean()
        return loss, int((batch["tgt_out"] != PAD).sum())

    def caption(self, model: nn.Module, images: np.ndarray, device: torch.device, beam: int = 1,
                alpha: float = 0.6, max_len: int = 20) -> list[list[int]]:
        """Token ids of each (H, W) uint8 image's caption (without <eos>)."""
        out = []
        for start in range(0, len(images), 64):
            x = image_tensor(images[start:start + 64], device)
            ones = torch.ones(x.size(0), dtype=torch.long, device=device)
            if beam > 1:
                out.extend(strip_eos(h[0].tokens) for h in decode.beam_search(model, x, ones, beam, max_len, alpha))
            else:
                out.extend(strip_eos(ids) for ids in decode.greedy(model, x, ones, max_len))
        return out

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False, beam: int | None = None) -> dict[str, float]:
        """Loss, BLEU-4 and exact match (greedy); `final` decodes with task.beam_size (or `beam`)
        and adds BLEU-1..3 and exact match by number of digits."""
        nll = count = 0.0
        for part in batched(list(examples), 128):
            batch = self.collate(part, device)
            logits, _ = model(batch["images"], batch["tgt_in"])
            n = int((batch["tgt_out"] != PAD).sum())
            nll += float(sequence_loss(logits, batch["tgt_out"])) * n
            count += n
        beam = (beam or self.cfg.task.beam_size) if final else 1
        hyps = self.caption(model, np.stack([e[0] for e in examples]), device, beam, self.cfg.task.length_penalty)
        refs = [e[1] for e in examples]
        hyp_text, ref_text = [self.vocab.decode(h) for h in hyps], [self.vocab.decode(r) for r in refs]
        exact = [h == r for h, r in zip(hyps, refs)]
        result = {"loss": nll / max(count, 1), "bleu": bleu(hyp_text, ref_text),
                  "sequence_accuracy": float(np.mean(exact)) if exact else 0.0}
        if final:
            for order in (1, 2, 3):
                result[f"bleu{order}"] = bleu(hyp_text, ref_text, order)
            digits = [sum(w in scenes.NAMES for w in r.split()) for r in ref_text]
            for n in range(1, scenes.MAX_DIGITS + 1):
                chosen = [ok for ok, d in zip(exact, digits) if d == n]
                if chosen:
                    result[f"exact_{n}_digits"] = float(np.mean(chosen))
        return result
