"""data/synthetic.py's one-bit memory (Bengio et al. 1994): the bit, the noise, determinism.
(The adding problem and copy memory are tested with their task: tests/tasks/test_sequence.py.)"""
import pytest
import torch

from seqlab import SeqlabError
from seqlab.data.synthetic import one_bit


def test_onebit_label_is_the_sign_of_the_first_input_and_the_rest_is_noise():
    x, y = one_bit(7, 500, seed=0, noise=0.5)
    assert x.shape == (500, 7, 1) and y.shape == (500,) and x.dtype == y.dtype == torch.float32
    assert set(x[:, 0, 0].tolist()) == {-1.0, 1.0}
    assert torch.equal(y, (x[:, 0, 0] > 0).float())
    assert 0.3 < y.mean() < 0.7                                  # both classes drawn
    noise = x[:, 1:, 0]
    assert abs(noise.std().item() - 0.5) < 0.03                  # σ as asked, 3,000 draws
    assert abs(noise.mean().item()) < 0.05
    # the noise carries no information about the label
    assert abs(noise.mean(1)[y == 1].mean() - noise.mean(1)[y == 0].mean()) < 0.05


def test_onebit_lengths_and_determinism():
    for T in (1, 2, 50):
        assert one_bit(T, 3, seed=1, noise=0.1)[0].shape == (3, T, 1)
    a, b, c = one_bit(5, 4, seed=2, noise=1.0), one_bit(5, 4, seed=2, noise=1.0), one_bit(5, 4, seed=3, noise=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(one_bit(5, 4, seed=2, noise=0.0)[0][:, 1:], torch.zeros(4, 4, 1))
    for bad in ((0, 4, 1.0), (5, -1, 1.0), (5, 4, -0.1)):
        with pytest.raises(SeqlabError, match="one_bit"):
            one_bit(bad[0], bad[1], noise=bad[2])
