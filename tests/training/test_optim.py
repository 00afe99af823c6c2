import torch

from seqlab.config import TrainConfig
from seqlab.training.optim import PlateauDecay, make_optimizer


def test_plateau_decays_after_patience_and_counts_for_early_stopping():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = PlateauDecay(factor=0.5, patience=2)
    lrs, bests = [], []
    for loss in [3.0, 2.0, 2.5, 2.4, 2.2, 2.1, 1.0]:
        bests.append(plateau.update(loss, opt))
        lrs.append(opt.param_groups[0]["lr"])
    assert bests == [True, True, False, False, False, False, True]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert plateau.bad_evals == 0
    restored = PlateauDecay(0.5, 2)
    restored.load_state_dict(plateau.state_dict())
    assert restored == plateau


def test_optimizers():
    model = torch.nn.Linear(2, 2)
    assert isinstance(make_optimizer(model, TrainConfig(optimizer="adam")), torch.optim.Adam)
    sgd = make_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8


def test_cosine_schedule_with_warmup():
    from seqlab.training.optim import scheduled_lr
    cfg = TrainConfig(lr=1.0, schedule="cosine", max_steps=100, warmup_steps=10)
    lrs = [scheduled_lr(cfg, s, 123.0) for s in range(100)]
    assert lrs[0] == 0.1 * 0.5 * (1 + __import__("math").cos(0.0))     # warm-up ramp
    assert abs(lrs[50] - 0.5) < 1e-12                                  # half-way: half the rate
    assert lrs[99] < 0.001 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    plateau = TrainConfig(lr=1.0, schedule="plateau", warmup_steps=4)
    assert [scheduled_lr(plateau, s, 0.3) for s in (0, 3, 4, 50)] == [0.25, 1.0, 0.3, 0.3]
    assert scheduled_lr(TrainConfig(lr=0.7, schedule="constant"), 5, 0.1) == 0.7
