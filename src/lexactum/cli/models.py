"""``lexactum models``: the networks that can be trained, their sizes and where they come from."""

from __future__ import annotations

EPILOG = """examples:
  lexactum models              table of the networks
  lexactum models --json       the same as JSON, for scripts
"""


def add_parser(subparsers, formatter_class):
    parser = subparsers.add_parser(
        "models",
        help="list the available networks",
        description="List the registered networks with their trainable parameters for space (1 band) and "
                    "ground (4 bands) images and the paper each one follows.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def describe_models() -> list[dict]:
    """Name, parameter counts for 1 and 4 bands, and reference of every registered network."""
    import torch

    from lexactum.models.registry import create_model, get_entry, list_models

    rows = []
    for name in list_models():
        counts = {}
        for bands in (1, 4):
            with torch.device("meta"):  # shapes only: no memory, no initialisation cost
                model = create_model(name, in_channels=bands)
            counts[bands] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append({"name": name, "parameters_1_band": counts[1], "parameters_4_bands": counts[4],
                     "reference": get_entry(name).reference})
    return rows


def run(args) -> int:
    rows = describe_models()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    headers = ("network", "params (1 band)", "params (4 bands)", "reference")
    table = [(r["name"], f"{r['parameters_1_band']:,}", f"{r['parameters_4_bands']:,}", r["reference"])
             for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers[:3])]
    for row in (headers, *table):
        name, one_band, four_bands, reference = row
        print(f"{name:<{widths[0]}}  {one_band:>{widths[1]}}  {four_bands:>{widths[2]}}  {reference}")
    return 0
