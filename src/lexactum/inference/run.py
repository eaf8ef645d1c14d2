"""``lexactum predict`` as a library call: check everything, score the missing shards on every process, merge.

Every process of a distributed run executes :func:`predict` (Lightning re-runs the command for its other
processes; torchrun and srun start them all). The checks only read, so all processes decide alike; only
global rank 0 writes the manifest before scoring and the merged files after it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lexactum.errors import LexactumError
from lexactum.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_SHARD_SIZE

#: Files a finished prediction leaves in --out (with config.json and, when objects were left out, left_out.csv).
RESULT_FILES = ("scores.csv", "submission.txt")
#: Options that change the merged files but not the shards.
MERGE_OPTIONS = ("combine", "parquet", "allow_nonfinite")


@dataclass
class PredictRequest:
    """What ``lexactum predict`` was asked: every option, with its default defined here once."""

    input: str
    models: list[str]
    out: str | None = None
    survey: str | None = None
    tta: int = 1
    combine: str = "mean"
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    accelerator: str | None = None
    devices: int | None = None
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    workers: int | None = None
    shard_size: int | None = None
    parquet: bool = False
    overwrite: bool = False
    allow_nonfinite: bool = False
    ids_file: str | None = None
    images_key: str = "images"
    ids_key: str = "ids"
    show_progress: bool | None = None
    extra: dict = field(default_factory=dict)


def default_out(input_path: str) -> Path:
    """``predictions/<input name>`` (the name without its ending for a cube file)."""
    path = Path(input_path).expanduser()
    name = path.name.split(".")[0] if path.is_file() else path.name
    return Path("predictions") / (name or "input")


def _manifest(request: PredictRequest, source, members, plan) -> dict:
    """What the shards depend on: the same manifest means the same scores, whatever the process count."""
    from lexactum.inference.shards import fingerprint_file, fingerprint_ids

    path = Path(source.path)
    stamp = os.stat(path) if path.is_file() else None
    return {
        "input": str(path.resolve()), "input_kind": source.kind, "n_objects": len(source),
        "ids_sha256": fingerprint_ids(source.ids),
        "input_file": None if stamp is None else {"bytes": stamp.st_size, "mtime_ns": stamp.st_mtime_ns},
        "survey": source.survey.name,
        "models": [{"path": str(m.path.resolve()), "sha256": fingerprint_file(m.path)} for m in members],
        "tta": request.tta, "shard_size": plan.shard_size,
    }


def _check_finished(out_dir: Path, manifest: dict, request: PredictRequest) -> bool:
    """True when ``out_dir`` already holds this very prediction, merged with the same options; an error when it
    holds results of another one (they are never replaced without --overwrite). Shards of an unfinished run
    take precedence: the same command then finishes that run."""
    from lexactum.inference.shards import MANIFEST, SHARDS_FOLDER
    from lexactum.runs import read_json

    present = [name for name in RESULT_FILES if (out_dir / name).exists()]
    if not present or request.overwrite or (out_dir / SHARDS_FOLDER / MANIFEST).is_file():
        return False
    config = read_json(out_dir / "config.json") if (out_dir / "config.json").is_file() else {}
    merged_as = {key: config.get(key) for key in MERGE_OPTIONS}
    if config.get("prediction") == manifest and merged_as == {key: getattr(request, key) for key in MERGE_OPTIONS}:
        return True
    raise LexactumError(f"{out_dir} already holds {', '.join(present)} of another prediction: use --overwrite "
                        "to replace them, or another --out")


def predict(request: PredictRequest) -> dict | None:
    """Score ``request.input`` with its committee; the summary on global rank 0, ``None`` on the others."""
    from lexactum.checks import positive_whole
    from lexactum.data.sources import open_source
    from lexactum.distributed import follow_launcher, is_global_zero, resolve_distribution
    from lexactum.inference.committee import check_bands, load_committee
    from lexactum.inference.options import check_tta
    from lexactum.inference.outputs import check_parquet
    from lexactum.inference.shards import ShardPlan, check_manifest, start_shards
    from lexactum.memory import steady_heap
    from lexactum.runs import check_output_folder

    follow_launcher()
    steady_heap()  # before the loader workers fork: peak memory must not grow with the number of batches
    positive_whole(request.batch_size, "--batch-size")
    shard_size = positive_whole(DEFAULT_SHARD_SIZE if request.shard_size is None else request.shard_size,
                              "--shard-size")
    check_tta(request.tta)
    if request.workers is not None and (isinstance(request.workers, bool) or int(request.workers) < 0):
        raise LexactumError(f"--workers must be 0 or more, got {request.workers}")
    if request.parquet:
        check_parquet()
    distribution = resolve_distribution(request.device, request.accelerator, request.devices, request.num_nodes,
                                        request.strategy)
    members = load_committee(request.models, request.survey)
    survey = request.survey or next((m.survey for m in members if m.survey), None)
    source = open_source(request.input, survey=survey, ids_file=request.ids_file,
                         images_key=request.images_key, ids_key=request.ids_key)
    check_bands(members, source.survey.n_bands, source.describe())
    _check_normalised(source, members)
    out_dir = Path(request.out) if request.out else default_out(request.input)
    plan = ShardPlan(len(source), shard_size, request.batch_size)
    manifest = _manifest(request, source, members, plan)
    if _check_finished(out_dir, manifest, request):
        return {"already_done": True, "out": str(out_dir), "n": None} if is_global_zero() else None
    state = check_manifest(out_dir, manifest, request.overwrite)
    check_output_folder(out_dir)  # on every process: all refuse alike, none waits for a rank 0 that stopped
    if is_global_zero():
        start_shards(out_dir, manifest, state)
    writer = _score_shards(request, distribution, source, members, plan, out_dir)
    if writer is None:
        return None
    return _merge(request, source, members, plan, out_dir, manifest, distribution, writer)


def _check_normalised(source, members) -> None:
    """A cache holds images in one normalisation: every member must have been trained with it."""
    if not source.normalised:
        return
    other = [m for m in members if m.normalisation != source.normalised]
    if other:
        raise LexactumError(f"{source.path} is a cache of {source.normalised}-normalised images, but {other[0].path} "
                            f"was trained on {other[0].normalisation}; give the dataset's folder instead, or "
                            f"prepare a cache with --normalisation {other[0].normalisation}")


def default_workers(distribution) -> int:
    """DataLoader workers per process: one per 4 cores a process has (1 to 4), none on a single core.

    Counted from the cores this process may use, not from the load at the start: on 2 cores, 1 worker cut
    lens_flow's wait for data from 20-25% to 5-6% (FITS, HDF5), and a default that followed the load average
    made two identical commands run differently."""
    from lexactum.devices import usable_cores

    cores = usable_cores()
    per_process = max(1, cores // distribution.world_size)
    return max(1, min(4, per_process // 4)) if per_process > 1 else 0


def _score_shards(request, distribution, source, members, plan, out_dir):
    """Run Lightning's predict over the shards still missing; the writer on global rank 0 after every
    process has finished (a barrier), ``None`` on the others."""
    from lexactum.devices import resolve_precision
    from lexactum.distributed import is_global_zero
    from lexactum.inference.engine import CommitteeScorer, ShardedSource, ShardWriter, quiet_lightning
    from lexactum.inference.shards import done_shards
    from lexactum.progress import wanted
    from lexactum.trainers import make_trainer, run_stopping_cleanly
    from lexactum.training.trainer import hide_lightning_advertising

    precision = resolve_precision(request.precision or "32-true", distribution.accelerator)
    workers = default_workers(distribution) if request.workers is None else int(request.workers)
    writer = ShardWriter(out_dir, plan, show_progress=wanted(request.show_progress))
    writer.settings = {"workers_used": workers, "precision_used": precision}
    if done_shards(out_dir) >= set(range(plan.n_shards)):  # a restart after the last shard: merge only
        return writer if is_global_zero() else None
    normalisations = [m.normalisation for m in members]
    datamodule = ShardedSource(source, plan, out_dir, normalisations, workers,
                               pin_memory=distribution.accelerator == "cuda")
    hide_lightning_advertising()
    scorer = CommitteeScorer([m.network for m in members], normalisations, request.tta)
    with quiet_lightning():
        trainer = make_trainer("predict", distribution, precision, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                               callbacks=[writer])
        hint = f"the finished shards are kept in {out_dir}: the same command scores the rest"
        run_stopping_cleanly(trainer, "predict", lambda: hint, scorer, datamodule=datamodule,
                             return_predictions=False)
        trainer.strategy.barrier("lexactum-predict-merge")
    return writer if trainer.is_global_zero else None


def _merge(request, source, members, plan, out_dir, manifest, distribution, writer) -> dict:
    """Rank 0: the shards into the ranked scores, the submission and left_out.csv, with config.json, together."""
    from lexactum.evaluation.evaluate import finite_scores, nonfinite_rows, write_left_out
    from lexactum.inference import outputs
    from lexactum.inference.committee import combine
    from lexactum.inference.shards import read_shards, remove_shards
    from lexactum.runs import all_or_nothing, write_config

    member_scores, blank = read_shards(out_dir, plan, len(members))
    ids = np.asarray(source.ids)
    if blank.all():
        raise LexactumError(f"{source.path}: no image has a finite pixel (all NaN or masked): nothing to score")
    left_out = list(source.left_out_rows()) + [
        {"ID": i, "reason": "image has no finite pixel", "file": ""} for i in outputs.plain_ids(ids[blank])]
    usable = np.flatnonzero(~blank)
    values = member_scores[usable]
    bad = ~np.isfinite(values).all(axis=1)
    committee = combine(np.nan_to_num(values), request.combine)
    committee[bad] = values[bad, np.argmax(~np.isfinite(values[bad]), axis=1)]  # a member's NaN or inf, shown
    named = ", ".join(str(m.path) for m in members)
    keep = finite_scores(committee, ids[usable], named, request.allow_nonfinite)
    left_out += nonfinite_rows(ids[usable][~keep], committee[~keep])
    chosen, scores = usable[keep], committee[keep]
    order = outputs.ranked(scores)
    labels = np.asarray(source.labels)
    labels = labels if (labels >= 0).any() else None
    several = len(members) > 1
    names = [m.name for m in members]
    with all_or_nothing():
        outputs.write_scores_csv(out_dir / outputs.SCORES_FILE, ids[chosen][order], scores[order],
                                 member_scores[chosen][order] if several else None, names,
                                 None if labels is None else labels[chosen][order])
        if request.parquet:
            outputs.write_parquet(out_dir / outputs.PARQUET_FILE, ids[chosen][order], scores[order],
                                  member_scores[chosen][order] if several else None, names,
                                  None if labels is None else labels[chosen][order])
        outputs.write_submission(out_dir / outputs.SUBMISSION_FILE, ids[chosen], scores)
        left_out_file = write_left_out(out_dir, left_out)
        summary = {"n": int(len(chosen)), "scores": str(out_dir / outputs.SCORES_FILE),
                   "submission": str(out_dir / outputs.SUBMISSION_FILE), "left_out": left_out,
                   "left_out_file": None if left_out_file is None else str(left_out_file),
                   "images_scored_here": writer.images, "data_wait_share": writer.wait_share,
                   "first_batch_wait_s": writer.first_wait_seconds,
                   "seconds": writer.first_wait_seconds + writer.wait_seconds + writer.busy_seconds,
                   **writer.settings}
        write_config(out_dir, _record(request, source, members, distribution, manifest, summary))
    remove_shards(out_dir)
    return summary


def _record(request, source, members, distribution, manifest, summary) -> dict:
    """config.json of a prediction: the request, what it resolved to, and the counts and timings."""
    options = {k: v for k, v in asdict(request).items() if k not in ("extra", "show_progress")}
    return {"command": "predict", **options, "input": str(Path(request.input).resolve()),
            "input_kind": source.kind, "input_description": source.describe(), "survey": source.survey.name,
            "n_objects": len(source), "n_scored": summary["n"], "left_out": len(summary["left_out"]),
            "members": [{"name": m.name, "path": str(m.path.resolve()), "normalisation": m.normalisation}
                        for m in members],
            "distribution": distribution.describe(), "world_size": distribution.world_size,
            "data_wait_share_rank0": summary["data_wait_share"], "seconds_rank0": summary["seconds"],
            "first_batch_wait_s_rank0": summary["first_batch_wait_s"], "workers_used": summary["workers_used"],
            "precision_used": summary["precision_used"],
            "prediction": manifest}
