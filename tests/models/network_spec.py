"""Numbers of docs/spec/models.md that several test files check the networks against."""

from __future__ import annotations

#: Trainable parameters of the Keras originals (spec table), for 1 and 4 bands.
SPEC_PARAMETERS = {
    "cas_swinburne": (4_025_153, 4_060_001),
    "lastro_epfl": (5_673_921, 5_674_689),
    "cmu_deeplens": (3_515_713, 3_520_417),
    "wsi_net": (2_607_937, 2_612_641),
    "lens_flow": (98_862, 100_062),
    "lens_finder": (10_315_777, 10_320_577),
}
#: Keras's totals, which add the batch-norm moving mean and variance (buffers here).
SPEC_KERAS_TOTALS = {**SPEC_PARAMETERS, "lastro_epfl": (5_676_449, 5_677_217),
                     "cmu_deeplens": (3_526_721, 3_531_425), "wsi_net": (2_608_385, 2_613_089)}
