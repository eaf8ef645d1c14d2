"""A whole training run: data, run folder, fit, model file, test evaluation, in the order that loses nothing to
a fault; everything that can refuse the run does so before anything is written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch

from lexactum import processes, runs
from lexactum.devices import cpu_threads, idle_cpu_count, resolve_precision
from lexactum.distributed import Distribution, is_global_zero
from lexactum.errors import LexactumError
from lexactum.memory import steady_heap
from lexactum.progress import wanted
from lexactum.trainers import run_stopping_cleanly
from lexactum.training.config import TrainConfig
from lexactum.training.extras import check_no_leakage, check_same_extras, extra_images, plan_extras
from lexactum.training.module import LensFinderModule, quiet_warnings
from lexactum.training.trainer import (
    _epochs,
    _resume_hint,
    _stopped_early,
    _torch_flags_restored,
    build_trainer,
    epochs_done,
    load_checkpoint,
)


@dataclass
class TrainResult:
    """What a run produced: its folder, the model file, the test metrics and the per-epoch history."""

    run_dir: Path
    model_path: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)
    best_val_auc: float = float("nan")
    epochs_trained: int = 0


#: What global rank 0 tells the processes Lightning starts inside its fit (they run the command line again,
#: from the start, with these in their environment): the run folder it chose, and its pid, to end with it.
RUN_DIR_VARIABLE = "LEXACTUM_RUN_DIR"
RANK_ZERO_PID_VARIABLE = "LEXACTUM_RANK_ZERO_PID"


def train(config: TrainConfig) -> TrainResult | None:
    """One whole run: dataset -> prepared cache -> split -> fit -> model file -> test evaluation, and the run
    folder recording all of it. Everything that can refuse the run (bad settings, a resume that cannot
    continue, an output that is taken or cannot be written, a test part that cannot be scored) fails with a
    LexactumError before anything is written or trained.

    On several processes (DDP, ``config.devices``/``num_nodes``) every process calls this; global rank 0
    alone claims and writes the run folder, the model file and the evaluation, and returns the result. The
    others only train, in the run folder rank 0 chose (``config.run_dir``, else the one it passes to the
    processes Lightning starts), and return None."""
    distribution = config.validate()
    steady_heap()  # batch-sized blocks must not grow the heap epoch after epoch
    if not config.resume:
        return _train(config, distribution)
    if config.run_dir is None:
        raise LexactumError("resume needs the run folder to continue (run_dir)")
    runs.read_config(config.run_dir)  # a folder that holds no run is refused before anything is made in it
    if not is_global_zero():  # rank 0 holds the run for all of them
        return _train(config, distribution)
    # Two processes continuing one run would write the same checkpoints and records: the second is refused
    # (the checks that follow read the run, so they come after the claim).
    with runs.claimed(config.run_dir, "is being trained"):
        return _train(config, distribution)


def _train(config: TrainConfig, distribution: Distribution) -> TrainResult | None:
    from lexactum.data import ChallengeDataset
    from lexactum.data.loader import split_indices

    zero = is_global_zero()
    if not zero:
        _follow_rank_zero()
    split = config.resolved_split()
    precision = resolve_precision(config.precision, distribution.accelerator)
    epochs_done, finished = _check_resume(config) if config.resume else (0, False)
    if not config.resume and config.run_dir is not None and zero:
        runs.check_output_folder(Path(config.run_dir), "--run-dir")
    dataset = ChallengeDataset(config.dataset, survey=config.survey)
    test_dataset = ChallengeDataset(config.test_dataset, survey=dataset.survey) if config.test_dataset else None
    loader_split = split[:2] if test_dataset is not None else split
    split_indices(len(dataset), loader_split, config.seed)  # a dataset too small for the split fails here
    extras = plan_extras(config, dataset.survey)  # bad grades, IDs not in their dataset: before long work
    if config.resume:
        check_same_extras(Path(config.run_dir), extras)
    model_path = None
    if zero:
        model_path = _choose_model_path(config, dataset.survey.name, Path(config.run_dir) if config.resume else None)

    threads = (cpu_threads(config.threads or _thread_share(distribution)) if distribution.accelerator == "cpu"
               else contextlib.nullcontext())
    with quiet_warnings(), threads:
        datamodule = _prepare_data(config, dataset, test_dataset, loader_split, zero, extras)
        with contextlib.ExitStack() as claim:
            if zero:
                run_dir = _start_run(config, datamodule, distribution, precision, model_path, claim)
            else:
                run_dir = _rank_zero_run_dir(config)
            module = _fit(config, distribution, datamodule, run_dir, dataset.survey.n_bands, precision,
                          epochs_done, finished)
            if not zero:
                return None
            return _finish_run(config, module, datamodule, run_dir, _evaluation_device(distribution), model_path)


def _follow_rank_zero() -> None:
    """On a process Lightning started from global rank 0: end as soon as rank 0 ends (a kill -9 of the command
    gives rank 0 no chance to stop it, and it would wait for rank 0 in its next collective until a timeout)."""
    pid = os.environ.get(RANK_ZERO_PID_VARIABLE)
    if pid:
        processes.die_with(int(pid))


def _rank_zero_run_dir(config: TrainConfig) -> Path:
    """The run folder of a process other than global rank 0: the one given to all, or the one rank 0 chose and
    passed to the processes Lightning started (``TrainConfig.validate`` requires one under srun or torchrun,
    which start every process at once, and on several nodes)."""
    chosen = config.run_dir if config.run_dir is not None else os.environ.get(RUN_DIR_VARIABLE)
    if not chosen:
        raise LexactumError("this process is not global rank 0 and was not told the run folder: give --run-dir")
    return Path(chosen)


def _thread_share(distribution: Distribution) -> int:
    """Torch CPU threads of each of the processes on this machine: the idle cores shared out (at least 1)."""
    per_node = distribution.world_size // distribution.num_nodes
    return max(1, idle_cpu_count() // per_node)


def _evaluation_device(distribution: Distribution):
    """Where rank 0 scores the test part after training: its own device (the first of those it trained on)."""
    if distribution.accelerator != "cuda":
        return torch.device("cpu")
    devices = distribution.devices
    return torch.device("cuda", devices[0] if isinstance(devices, list) else 0)


@contextlib.contextmanager
def _launch_environment(run_dir: Path, distribution: Distribution):
    """During rank 0's fit, the variables the processes Lightning starts then inherit: the run folder, rank 0's
    pid, and OMP_NUM_THREADS (which also keeps Lightning from resetting the threads chosen here)."""
    if not distribution.is_distributed or not is_global_zero():
        yield
        return
    values = {RUN_DIR_VARIABLE: str(Path(run_dir).absolute()), RANK_ZERO_PID_VARIABLE: str(os.getpid()),
              "OMP_NUM_THREADS": str(torch.get_num_threads())}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _prepare_data(config: TrainConfig, dataset, test_dataset, loader_split, zero: bool = True, extras=None):
    """The prepared, split data, with the ``extras`` (graded objects) in the training part; a test part that
    cannot be scored, or extras in the validation or test part, are refused here, before any training.
    Only global rank 0 (``zero``) shows the preparation's progress and warnings."""
    from lexactum.evaluation.metrics import check_both_classes
    from lexactum.training.sharding import TrainingDataModule

    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = TrainingDataModule(
        dataset, batch_size=config.batch_size, split=loader_split, seed=config.seed, test_dataset=test_dataset,
        num_workers=config.num_workers, normalisation=config.normalisation, cache_dir=config.cache_dir,
        progress=zero and wanted(config.progress),
    )
    datamodule.setup("fit")
    if zero:
        _check_not_blank(datamodule.prepared, datamodule.train_indices)
    labels = np.asarray(datamodule.prepared_test.labels)[datamodule.test_indices]
    where = (f"test dataset {test_dataset.path}" if test_dataset is not None
             else f"the test part of {dataset.path} (split {tuple(loader_split)}, seed {config.seed})")
    if (labels < 0).any():
        raise LexactumError(f"{where}: {int((labels < 0).sum())} objects have no label; the test part must be "
                            "labelled to be scored")
    try:
        check_both_classes(labels.astype(np.int64))
    except LexactumError as exc:
        fix = "choose a test dataset with both" if test_dataset is not None else "change the split or the seed"
        raise LexactumError(f"{where} cannot be scored: {exc}; {fix}") from exc
    if extras is not None:
        check_no_leakage(extras, datamodule, say=zero)
        datamodule.add_extra(extra_images(extras, config.normalisation, say=zero), extras.labels, extras.record())
    return datamodule


def _check_not_blank(prepared, train_indices) -> None:
    """Blank images (all NaN, masked or constant) teach a network nothing: refuse a training part made only of
    them (a run would end with a model scoring everything 0.5, without a word), and say when some are."""
    note = prepared.blank_note()
    if note is None:
        return
    if np.isin(train_indices, prepared.blank).all():
        raise LexactumError(f"{note}: the whole training part is blank, nothing to learn; check the image files")
    print(f"warning: {note}", file=sys.stderr, flush=True)


def _start_run(config: TrainConfig, datamodule, distribution: Distribution, precision: str, model_path: Path,
               claim: contextlib.ExitStack) -> Path:
    """Create (or, when resuming, check) the run folder, then write its records: config.json, split.json.

    A new run claims its folder (into ``claim``, held until the run ends) before it looks for an earlier run
    there, so that two runs started into one ``--run-dir`` cannot both write it; a resume holds its claim
    already."""
    dataset, test_dataset = datamodule.dataset, datamodule.test_dataset
    parts = {"train": datamodule.train_ids, "val": datamodule.val_ids, "test": datamodule.test_ids}
    labels = {"train": datamodule.prepared.labels[datamodule.train_indices],
              "val": datamodule.prepared.labels[datamodule.val_indices],
              "test": datamodule.prepared_test.labels[datamodule.test_indices]}
    if config.resume:
        run_dir = Path(config.run_dir)
        _check_same_split(run_dir, parts, labels)
    elif config.run_dir is None:
        run_dir = runs.new_run_dir(dataset.survey.name, config.network, root=config.runs_root)
        claim.enter_context(runs.claimed(run_dir, "is being trained"))
    else:
        run_dir = runs.ensure_folder(Path(config.run_dir))
        claim.enter_context(runs.claimed(run_dir, "is being trained"))
        if (run_dir / runs.CONFIG).exists():
            raise LexactumError(f"{run_dir} already holds a run: resume it or choose another run folder")
    test_path = str(test_dataset.path) if test_dataset is not None else None
    record = config.record()
    record.update(survey=dataset.survey.name, dataset=str(dataset.path), test_dataset=test_path,
                  run_dir=str(run_dir))
    for key in ("extra_labels", "extra_dataset", "extra_ids"):  # a resume may start from another folder
        if record.get(key) is not None:
            record[key] = str(Path(record[key]).resolve())
    resolved = {"config": record, "device": str(_evaluation_device(distribution)), "precision": precision,
                "processes": distribution.world_size, "torch_threads": torch.get_num_threads(),
                "n_images": len(dataset), "model_file": str(model_path),
                "extra": _extra_summary(datamodule), "resumed": []}
    if config.resume:
        previous = runs.read_config(run_dir)
        resolved["created"] = previous.get("created")
        resolved["resumed"] = [*previous.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    runs.write_config(run_dir, resolved)
    extra = {} if datamodule.extra_record is None else {"extra": datamodule.extra_record}
    runs.write_split(run_dir, parts, labels, fractions=list(config.resolved_split()), seed=config.seed,
                     dataset=str(dataset.path), test_dataset=test_path, **extra)
    return run_dir


def _extra_summary(datamodule) -> dict | None:
    """The extra examples in a line of config.json (their IDs are in split.json), or None."""
    record = datamodule.extra_record
    return None if record is None else {k: v for k, v in record.items() if k not in ("ids", "labels")}


def _fit(config: TrainConfig, distribution: Distribution, datamodule, run_dir: Path, n_bands: int,
         precision: str, epochs_done: int = 0, finished: bool = False) -> LensFinderModule | None:
    """Train (from last.ckpt when resuming); with early stopping, end with the best epoch's weights.

    A resumed run that has already trained ``config.epochs`` epochs, or ``finished`` (stopped early), trains
    nothing: its checkpoints are finished instead (model file, test evaluation), e.g. after a failure once
    training was done. Processes other than global rank 0 return None once trained.
    """
    zero = is_global_zero()
    module = LensFinderModule(config.network, n_bands, augment=config.augment, seed=config.seed)
    last = run_dir / runs.LAST_CHECKPOINT
    if config.resume and (finished or epochs_done >= config.epochs):
        if not zero:
            return None
        how = "stopped early after" if epochs_done < config.epochs else "already trained"
        print(f"{run_dir}: {how} {_epochs(epochs_done)}, nothing to train; writing the model file "
              f"and the test evaluation from its checkpoints", flush=True)
        module.load_state_dict(load_checkpoint(last)["state_dict"])
        module.epochs_trained = epochs_done
    else:
        with _torch_flags_restored(), _launch_environment(run_dir, distribution):
            trainer = build_trainer(run_dir, config.epochs, precision=precision, patience=config.patience,
                                    progress=config.progress, distribution=distribution)
            run_stopping_cleanly(trainer, "fit", lambda: _resume_hint(run_dir), module, datamodule=datamodule,
                                 ckpt_path=last if config.resume else None, weights_only=True)
        if not zero:
            return None
        module.epochs_trained = _epochs_trained(trainer, last)
    best = run_dir / runs.BEST_CHECKPOINT
    if config.patience is not None and best.is_file():
        module.load_state_dict(load_checkpoint(best)["state_dict"])
    return module


def _epochs_trained(trainer, last: Path) -> int:
    """The epochs trained, as the last checkpoint counts them: with ``--strategy ddp_spawn`` the training ran in
    other processes, and the count of this process's Trainer stayed 0."""
    from lexactum.training.trainer import epochs_done

    return epochs_done(load_checkpoint(last)) if last.is_file() else int(trainer.current_epoch)


def _finish_run(config: TrainConfig, module: LensFinderModule, datamodule, run_dir: Path, torch_device,
                model_path: Path) -> TrainResult:
    """The model file first (trained weights outlive any failure after training), then the training curves
    and the test evaluation (scores.csv, metrics.json, roc.png), then the same model file with the metrics."""
    history = runs.read_csv(run_dir / runs.METRICS_CSV)
    best_auc = _best_val_auc(history)
    network = module.network.eval()
    network.metadata = _model_metadata(config, module, datamodule, run_dir, best_auc)
    model_path = _save_new_model(config, network, model_path, run_dir)
    try:
        metrics = _evaluate(config, network, datamodule, run_dir, torch_device, history, module.epochs_trained)
    except (LexactumError, OSError) as exc:
        reason = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
        raise LexactumError(f"{reason} (after training: the model is saved as {model_path}, without test "
                            f"metrics; the run is in {run_dir})") from exc
    network.metadata["metrics"] = {k: _json_float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
    _write_model(network, model_path, run_dir)
    return TrainResult(run_dir=run_dir, model_path=model_path, metrics=metrics, history=history,
                       best_val_auc=best_auc, epochs_trained=module.epochs_trained)


def _model_metadata(config: TrainConfig, module: LensFinderModule, datamodule, run_dir: Path,
                    best_auc: float) -> dict:
    """What the model file says about how it was made (the test metrics are added after the evaluation)."""
    return {
        "survey": datamodule.prepared.survey.name, "network": config.network, "epochs": module.epochs_trained,
        "epochs_requested": config.epochs, "seed": config.seed, "batch_size": config.batch_size,
        "augment": config.augment, "normalisation": config.normalisation,
        "split": {"fractions": list(config.resolved_split()), "seed": config.seed,
                  "n_train": len(datamodule.train_indices), "n_val": len(datamodule.val_indices),
                  "n_test": len(datamodule.test_indices)},
        "dataset": str(datamodule.prepared.dataset_path), "run_dir": str(run_dir),
        "test_dataset": str(datamodule.prepared_test.dataset_path) if config.test_dataset else None,
        "best_val_auc": _json_float(best_auc), "extra": _extra_summary(datamodule),
    }


def _evaluate(config: TrainConfig, network, datamodule, run_dir: Path, torch_device, history: list[dict],
              epochs: int) -> dict:
    """The training curves and the test evaluation: everything after training that may still fail."""
    from lexactum.evaluation.evaluate import evaluate_model
    from lexactum.evaluation.plots import plot_training_curves

    survey = datamodule.prepared.survey
    if history:
        plot_training_curves(run_dir / runs.METRICS_CSV, run_dir / runs.CURVES,
                             title=f"{survey.name} {config.network}")
    return evaluate_model(network, datamodule.prepared_test, datamodule.test_indices, run_dir,
                          device=torch_device, batch_size=max(config.batch_size, 64), bootstrap=config.bootstrap,
                          seed=config.seed, show_progress=wanted(config.progress), verbose=False,
                          title=f"{survey.name} {config.network}, {epochs} epochs")


def _check_resume(config: TrainConfig) -> tuple[int, bool]:
    """Everything that can refuse a resume, before anything in the run folder is written (a refused resume
    leaves config.json and split.json as they were): the folder, its config.json, an intact last.ckpt, and
    no fewer epochs than it has trained. Returns the epochs it has trained, and whether it is finished: it
    stopped early and no more epochs than its own are asked for (Lightning does not keep that it stopped,
    and would train on, and might change the best checkpoint, hence the model)."""
    if config.run_dir is None:
        raise LexactumError("resume needs the run folder to continue (run_dir)")
    run_dir = Path(config.run_dir)
    last = run_dir / runs.LAST_CHECKPOINT
    if not last.is_file():
        raise LexactumError(f"{run_dir}: no {runs.LAST_CHECKPOINT} to resume from")
    saved_epochs = runs.read_config(run_dir).get("config", {}).get("epochs")
    checkpoint = load_checkpoint(last)
    done = epochs_done(checkpoint)
    if config.epochs < done:
        raise LexactumError(f"--resume {run_dir}: the run has already trained {_epochs(done)}; "
                            f"give --epochs {done} or more")
    return done, _stopped_early(checkpoint) and saved_epochs is not None and config.epochs <= saved_epochs


def _choose_model_path(config: TrainConfig, survey: str, own_run: Path | None) -> Path:
    """The model file, settled before training. An explicit one that exists is refused unless ``overwrite``
    (or ``backup_existing``, or it is the resumed run's own model); a default name that is taken moves to a
    free ``-2``, ``-3``... name, said here, so no other model is ever replaced."""
    from lexactum.models.files import default_model_path, free_model_path

    def own(path: Path) -> bool:
        return _is_own_model(path, own_run)

    explicit = config.model_out is not None
    path = Path(config.model_out) if explicit else default_model_path(
        survey, config.network, config.epochs, models_dir=config.models_dir)
    runs.check_output_folder(path.parent, "--model-out" if explicit else "models folder")
    if explicit and path.exists() and not (path.is_file() and (config.overwrite or config.backup_existing)) \
            and not own(path):
        hint = "a folder; give a file name" if path.is_dir() else "exists; give --overwrite to replace it"
        raise LexactumError(f"--model-out {path}: {hint}, or choose another name")
    if not explicit and not config.overwrite:
        chosen = free_model_path(path, reusable=own)
        if chosen != path:
            print(f"{path} holds another model: this run's model will be saved as {chosen}", flush=True)
        path = chosen
    if path.is_dir():
        raise LexactumError(f"model file {path}: is a folder")
    return path


def _save_new_model(config: TrainConfig, network, path: Path, run_dir: Path) -> Path:
    """Write the model to ``path`` chosen before training; a file that appeared there since is not replaced
    (the model goes to a free name, said) unless ``overwrite``, or is kept aside (``backup_existing``)."""
    from lexactum.models.files import backup_model_file, free_model_path

    own_run = run_dir if config.resume else None
    if (path.exists() or path.is_symlink()) and not config.overwrite and not _is_own_model(path, own_run):
        if config.backup_existing and path.is_file():
            print(f"{path} held another model: kept as {backup_model_file(path)}", flush=True)
        else:
            taken, path = path, free_model_path(path)
            print(f"{taken} appeared during training: the model is saved as {path}", flush=True)
    _write_model(network, path, run_dir)
    return path


def _write_model(network, path: Path, run_dir: Path) -> None:
    from lexactum.models import save_model

    try:
        save_model(network, path, metadata=network.metadata)
    except OSError as exc:
        raise LexactumError(f"{_os_error_text(exc, path)}; the model file was not written, the run folder "
                            f"{run_dir} keeps the trained checkpoints: once that is fixed, "
                            f"'lexactum train --resume {run_dir}' writes it") from exc


def _is_own_model(path: Path, run_dir: Path | None) -> bool:
    """Whether the model file at ``path`` was written by the run in ``run_dir`` (its metadata names that
    folder): a resumed run may replace its own model, never another."""
    if run_dir is None or not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            saved = json.loads((handle.metadata() or {}).get("run_dir", "null"))
    except Exception:  # noqa: BLE001 - unreadable or foreign: not this run's
        return False
    return isinstance(saved, str) and Path(saved).resolve() == run_dir.resolve()


def _os_error_text(exc: OSError, path=None) -> str:
    """The one line for an OSError met while writing ``path``: a WriteError's own text (it names its file
    already), else the file and the reason as :func:`lexactum.errors.describe_os_error` words them."""
    from lexactum.errors import WriteError, describe_os_error

    if isinstance(exc, WriteError):
        return str(exc)
    return describe_os_error(exc, path if exc.filename is None else None, "write" if exc.filename is None else None)


def _check_same_split(run_dir: Path, parts: dict, labels: dict) -> None:
    """A resumed run must see the same split with the same labels; the split changes when the dataset's
    objects changed, the labels when its catalog did (runs from before labels were recorded: IDs only)."""
    saved = runs.read_split(run_dir) if (run_dir / runs.SPLIT).is_file() else {}
    for name, ids in parts.items():
        if name in saved and [int(i) for i in ids] != saved[name].get("ids"):
            raise LexactumError(f"{run_dir}: the dataset's {name} part differs from the run's {runs.SPLIT} "
                                "(were objects added or removed?); cannot resume")
        recorded = saved[name].get("labels") if isinstance(saved.get(name), dict) else None
        if recorded is not None and (not isinstance(recorded, list) or len(recorded) != len(labels[name])):
            raise LexactumError(f"{run_dir / runs.SPLIT}: damaged ({name} labels); cannot resume")
        if recorded is not None and [int(v) for v in labels[name]] != recorded:
            changed = sum(int(a) != b for a, b in zip(labels[name], recorded, strict=True))
            raise LexactumError(f"{run_dir}: {changed} label(s) of the {name} part differ from the run's "
                                f"{runs.SPLIT} (was the catalog changed?); cannot resume")


def _best_val_auc(history: list[dict]) -> float:
    values = [float(r["val_auc"]) for r in history if r.get("val_auc") not in (None, "")]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else float("nan")


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else None
