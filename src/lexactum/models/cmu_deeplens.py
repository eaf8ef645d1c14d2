"""CMU DeepLens (Lanusse et al. 2018) as the seed wrote it: a stem and 15 pre-activation residual blocks."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import BatchNorm, Conv, Dense, Flatten, Group, Pool, Residual
from lexactum.models.registry import register_model

REFERENCE = "Lanusse et al. 2018, MNRAS 473, 3895 (CMU DeepLens: deep learning for strong lens finding)"

#: (in, out) filters of the five groups of three blocks; the first block of groups 2-5 downsamples.
GROUPS = ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512))
BLOCKS_PER_GROUP = 3


@register_model("cmu_deeplens", reference=REFERENCE)
class CmuDeepLens(KerasNetwork):
    """Stem conv 32@7x7 + batch norm, 5 groups of 3 residual blocks (101 -> 7), avg-pool 2, dense 1."""

    LAYERS = (
        Conv(32, 7, "elu", name="stem"),
        BatchNorm(name="stem_bn"),  # the seed has no activation after this batch norm
        Group("blocks", tuple(  # 101 -> 101 -> 51 -> 26 -> 13 -> 7
            Residual(in_filters, out_filters, downsample=group > 0 and index == 0)
            for group, (in_filters, out_filters) in enumerate(GROUPS) for index in range(BLOCKS_PER_GROUP))),
        Pool(2, average=True, name="pool"),  # -> 3
        Flatten(),
        Dense(1, "sigmoid", name="fc"),
    )
