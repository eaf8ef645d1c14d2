"""WSI-Net's classification branch (after Ni et al. 2019) as the seed adapted it to lens finding."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import Activation, BatchNorm, Conv, Dense, Flatten, Pool, Residual
from lexactum.models.registry import register_model

REFERENCE = ("after Ni et al. 2019, MLMI 2019, LNCS 11861 (WSI-Net: branch-based and hierarchy-aware "
             "network for whole-slide images)")


@register_model("wsi_net", reference=REFERENCE)
class WsiNet(KerasNetwork):
    """Stem conv, two residual blocks (101 -> 51), two conv + batch-norm + ReLU stages, max-pool 2, dense."""

    LAYERS = (
        Conv(32, 7, "elu", name="stem"),
        Residual(16, 32, downsample=False, name="block1"),
        Residual(32, 64, downsample=True, name="block2"),  # 101 -> 51
        Conv(32, 1, "elu", name="conv_a"), BatchNorm(name="bn_a"), Activation("relu"),
        Conv(32, 5, "elu", name="conv_b"), BatchNorm(name="bn_b"), Activation("relu"),
        Pool(2, name="pool"),  # -> 25
        Flatten(),
        Dense(128, name="fc1"),  # linear, as in the seed
        Dense(1, "sigmoid", name="fc2"),
    )
