"""``lexactum explain`` as a library call: for chosen objects, one picture each of the cutout, its Grad-CAM
overlay and its occlusion map side by side, to see what a network looked at when it scored them."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lexactum.errors import DataError, LexactumError

#: Characters kept in file names made from IDs (others become '_').
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def explain(model: str | os.PathLike, dataset: str | os.PathLike, ids: list[str], out: str | os.PathLike,
            overwrite: bool = False) -> list[Path]:
    """Write ``out``/<ID>.png for each of ``ids`` (objects of ``dataset``) as ``model`` sees them; returns the
    files. Every ID is checked before any picture is drawn; the pictures appear together or not at all."""
    from lexactum.data.sources import open_source
    from lexactum.inspection.inputs import find_ids
    from lexactum.models.files import load_model, resolve_model_path
    from lexactum.runs import all_or_nothing, check_output_folder

    wanted = list(dict.fromkeys(str(i).strip() for i in ids))
    if not wanted or any(not i for i in wanted):
        raise LexactumError("--id: give the ID of at least one object (an ID may not be empty)")
    model_path = resolve_model_path(model)
    network = load_model(model_path)
    source = open_source(dataset)
    made_for = network.metadata.get("survey")
    if made_for and str(made_for).lower() != source.survey.name:
        raise DataError(f"{dataset}: holds {source.survey.name} images, but {model_path} was trained on "
                        f"{made_for} images")
    positions, found = find_ids(source, wanted)
    if not found.all():
        missing = [i for i, ok in zip(wanted, found.tolist(), strict=True) if not ok]
        more = f"; {len(missing) - 1} more of the IDs are not either" if len(missing) > 1 else ""
        raise DataError(f"--id {missing[0]}: not in the dataset {source.path} ({len(source)} objects"
                        f"{_id_range(source)}){more}")
    out = Path(out)
    check_output_folder(out)
    paths = [out / f"{_UNSAFE.sub('_', i)}.png" for i in wanted]
    taken = [p for p in paths if p.exists()]
    if taken and not overwrite:
        raise LexactumError(f"{taken[0]} already exists: use --overwrite to replace it, or choose another --out")
    figures = _pictures(network, source, positions)
    with all_or_nothing():
        for object_id, path, panels in zip(wanted, paths, figures, strict=True):
            _draw(path, object_id, panels, model_path.name)
    return paths


def _id_range(source) -> str:
    ids = source.ids
    return f", IDs {ids.min()}..{ids.max()}" if ids.dtype.kind in "iu" and len(ids) else ""


def _pictures(network, source, positions) -> list[tuple]:
    """Per object: (thumbnail, Grad-CAM overlay, whether Grad-CAM found any evidence for a lens, occlusion
    map), for the network as it was trained."""
    from lexactum.data.normalise import normalise
    from lexactum.evaluation.evaluate import model_normalisation
    from lexactum.inspection.pictures import overlay, thumbnails
    from lexactum.inspection.saliency import grad_cam, heat, occlusion

    raw = source.read_batch(positions)
    images = raw if source.normalised else normalise(raw, model_normalisation(network), source.survey.mask_value)
    thumbs = thumbnails(raw, source.survey)
    cams = heat(grad_cam(network, images))
    occluded = occlusion(network, images)
    return [(thumb, overlay(thumb, cam), bool(cam.max() > 0), occ[::-1])
            for thumb, cam, occ in zip(thumbs, cams, occluded, strict=True)]


def _draw(path: Path, object_id: str, panels: tuple, model_name: str) -> None:
    """One PNG: the cutout, Grad-CAM over it, and the occlusion map (red: hiding the patch lowers the score)."""
    from lexactum.evaluation.plots import _pyplot, save_figure

    thumb, cam, evidence, occluded = panels
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    axes[0].imshow(thumb, cmap="gray" if thumb.ndim == 2 else None, interpolation="nearest")
    axes[0].set_title(f"ID {object_id}")
    axes[1].imshow(cam, interpolation="nearest")
    axes[1].set_title("Grad-CAM (last convolution)" if evidence else "Grad-CAM: no region argued for a lens",
                      fontsize=None if evidence else 9)
    limit = float(abs(occluded).max()) or 1.0
    shown = axes[2].imshow(occluded, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[2].set_title("occlusion (logit drop)")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.set_axis_off()
    fig.suptitle(f"{model_name}: what the network looked at", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
