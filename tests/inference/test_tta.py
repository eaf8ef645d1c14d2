"""Test-time augmentation: the eight exact symmetries, and the mean probability kept exact for confident views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lexactum.errors import LexactumError
from lexactum.inference.options import check_tta
from lexactum.inference.tta import AveragedViews, dihedral, with_views


def numpy_view(image: np.ndarray, k: int) -> np.ndarray:
    """The reference: numpy's own rotation and mirror of the last two axes."""
    turned = np.rot90(image, k % 4, axes=(-2, -1))
    return turned[..., ::-1] if k >= 4 else turned


def test_the_eight_views_are_the_distinct_symmetries_of_the_square():
    image = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    views = [dihedral(image, k) for k in range(8)]
    for k, view in enumerate(views):
        np.testing.assert_array_equal(view.numpy(), numpy_view(image.numpy(), k))
    assert len({view.numpy().tobytes() for view in views}) == 8


class Linear(torch.nn.Module):
    """A network whose logit depends on orientation (a weighted sum with a fixed asymmetric weight map)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.weight = torch.nn.Parameter(torch.randn(1, 7, 7, generator=generator) * scale)

    def forward(self, images):
        return (images * self.weight).sum(dim=(1, 2, 3))


@pytest.mark.parametrize("n", [4, 8])
def test_averaged_views_equal_a_manual_average_of_the_transforms(n):
    images = torch.randn(5, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    network = Linear()
    manual = np.mean([torch.sigmoid(network(dihedral(images, k)).double()).detach().numpy() for k in range(n)],
                     axis=0)
    averaged = torch.sigmoid(AveragedViews(network, n)(images)).detach().numpy()
    np.testing.assert_allclose(averaged, manual, rtol=1e-6)  # float32 sums in another order
    assert not np.allclose(averaged, torch.sigmoid(network(images).double()).detach().numpy())


def test_confident_views_keep_their_distance_from_one():
    """log(mean p) - log(mean (1-p)): two views with p = 1 - 1e-13 and 1 - 3e-13 average to 1 - 2e-13, which a
    plain mean of float64 probabilities rounded to 1 would lose (and tie with every other confident lens)."""
    images = torch.ones(1, 1, 7, 7)

    class TwoLogits(torch.nn.Module):
        def forward(self, views):
            return torch.tensor([-np.log(1e-13), -np.log(3e-13)], dtype=torch.float64)

    wrapped = AveragedViews(TwoLogits(), 4)
    wrapped.n = 2  # the network above answers for two views
    one_minus_p = torch.sigmoid(-wrapped(images)).item()
    assert one_minus_p == pytest.approx(2e-13, rel=1e-6)


def test_one_view_is_the_network_itself_and_bad_counts_are_refused():
    network = Linear()
    assert with_views(network, 1) is network
    for bad in (0, 2, 3, 16, True, "8"):
        with pytest.raises(LexactumError, match="--tta must be one of 1, 4, 8"):
            check_tta(bad)
