"""``lexactum convert``: turn one of the seed's Keras ``.h5`` models into a LEXACTUM model file."""

from __future__ import annotations

EPILOG = """\
examples:
  lexactum convert models/space_cmu_deeplens_50epochs.h5
      writes models/space_cmu_deeplens_50epochs.safetensors next to it
  lexactum convert ground_lens_flow.h5 --out lens_flow_ground.safetensors
      a bare name is looked up in models/, as the seed's --model_name is
  lexactum convert old.h5 --overwrite
      replaces an existing old.safetensors

The network (one of the six seed networks) and the survey (1 band: space, 4 bands: ground) are recognised
from the file's layers; the output records the source path, its SHA-256 and the Keras version. No
TensorFlow is needed and nothing in the file is executed.
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a seed Keras .h5 model to a .safetensors model file",
        description="Read a Keras .h5 model saved by the seed program (no TensorFlow needed), recognise "
                    "which seed network it is, and write it as a LEXACTUM model file.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("model", help="the Keras .h5 file (a bare file name is also looked up in models/)")
    parser.add_argument("--out", default=None,
                        help="output model file (default: the input's path with the .safetensors suffix)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lexactum.models.files import resolve_model_path
    from lexactum.models.keras_h5 import convert_keras_file

    source = resolve_model_path(args.model)
    out = convert_keras_file(source, args.out, overwrite=args.overwrite)
    print(f"converted {source} -> {out}")
    return 0
