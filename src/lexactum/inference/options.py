"""The committee options ``predict`` and ``evaluate`` share (--model repeated, --tta, --combine), defined once.

Kept free of torch: the CLI imports this module to build its parsers.
"""

from __future__ import annotations

from lexactum.errors import LexactumError

#: Images per batch and process in predict.
DEFAULT_BATCH_SIZE = 256
#: Objects per shard of predict's resumable output: small enough that a kill loses little, large enough that
#: a billion-object survey makes a manageable number of files.
DEFAULT_SHARD_SIZE = 16384
#: View counts of test-time augmentation: the identity, the four quarter turns, all eight symmetries.
TTA_CHOICES = (1, 4, 8)
#: How a committee's members' probabilities become one score (see lexactum.inference.committee.combine).
COMBINE_CHOICES = ("mean", "rank", "min")


def add_committee_arguments(parser, what: str = "score") -> None:
    parser.add_argument("--model", required=True, action="append", metavar="FILE",
                        help="model file (.safetensors or the seed's .h5), its name in models/, or a quoted glob; "
                             f"repeat it (or use a glob) to {what} with a committee of networks")
    parser.add_argument("--tta", type=int, choices=TTA_CHOICES, default=1, metavar="N",
                        help="test-time augmentation: average each network's probability over 4 quarter turns "
                             "or all 8 flips and turns (default 1: none)")
    parser.add_argument("--combine", choices=COMBINE_CHOICES, default="mean",
                        help="committee score: mean of the probabilities (default), mean rank, or the minimum "
                             "(a candidate every member must like)")


def check_tta(n) -> int:
    """``n`` as a view count of :data:`TTA_CHOICES`; one LexactumError line otherwise."""
    if isinstance(n, bool) or n not in TTA_CHOICES:
        raise LexactumError(f"--tta must be one of {', '.join(map(str, TTA_CHOICES))} (views averaged), got {n!r}")
    return int(n)
