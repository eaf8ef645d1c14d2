"""transfer_check(): simulate setting A, train on it, score A's test part, an independent setting B and real images.

Every step reuses what a previous call with the same settings left in the output folder (the simulations
resume themselves, training resumes from its run folder, a finished model is reused), so a killed run
continues; the table, scores, histograms and config.json are written together at the end.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lexactum.checks import positive_whole
from lexactum.errors import LexactumError

#: Share of the training simulation kept for validation (early stopping is not used; it is reported).
VALIDATION_SHARE = 0.1
#: Each simulated set must expect at least this many lenses and non-lenses, or its metrics mean nothing.
MIN_PER_CLASS = 5
#: Names of the scored sets, in the table's order.
SET_A, SET_B, SET_REAL = "sim_A_test", "sim_B", "real"
#: Files and folders inside the output folder.
SIM_A, SIM_B, RUN, MODEL, CONFIG = "sim-A", "sim-B", "run", "model.safetensors", "config.json"
TABLE_CSV, TABLE_MD, HISTOGRAMS = "transfer.csv", "transfer.md", "histograms.png"
IMPOSTORS_CSV = "impostors-by-kind.csv"
#: Every simulated set is written as a training archive (its labels in classifications.csv).
LAYOUT = "train"


@dataclass
class TransferSettings:
    """What one transfer check does. ``settings_a`` and ``settings_b`` are extra keyword arguments of
    :func:`lexactum.simulate.writer.simulate_dataset` for set A and set B (e.g. ``randomise``); without them B
    differs from A only by its seed."""

    survey: str
    out: str | os.PathLike
    n_train: int = 6000
    n_test: int = 2000
    epochs: int = 15
    network: str = "lens_flow"
    batch_size: int = 32
    seed_a: int = 0
    seed_b: int = 1
    settings_a: dict = field(default_factory=dict)
    settings_b: dict = field(default_factory=dict)
    real: str | os.PathLike | None = None
    bootstrap: int = 1000
    device: str = "auto"
    workers: int | None = None
    overwrite: bool = False
    progress: bool | None = None
    """Progress bars: None shows them unless LEXACTUM_NO_PROGRESS is set; False also hides the stage lines."""

    def check(self) -> None:
        """Every setting at once, before anything is simulated (one line for the first that is wrong)."""
        from lexactum.data.surveys import get_survey
        from lexactum.evaluation.metrics import check_bootstrap
        from lexactum.simulate.presets import get_preset

        get_survey(self.survey)
        for name in ("n_train", "n_test", "epochs", "batch_size"):
            positive_whole(getattr(self, name), "--" + name.replace("_", "-"))
        for name in ("seed_a", "seed_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LexactumError(f"--{name.replace('_', '-')} must be a whole number >= 0, got {value!r}")
        if self.seed_a == self.seed_b and self.settings_a == self.settings_b:
            raise LexactumError(f"--seed-b {self.seed_b} equals --seed-a: set B would repeat set A's first objects")
        check_bootstrap(self.bootstrap, "--bootstrap")
        fraction = get_preset(self.survey).default_lens_fraction(LAYOUT)
        for name, n in (("--n-train", self.n_train), ("--n-test", self.n_test)):
            expected = n * min(fraction, 1.0 - fraction)
            if expected < MIN_PER_CLASS:
                least = int(-(-MIN_PER_CLASS // min(fraction, 1.0 - fraction)))
                raise LexactumError(f"{name} {n} is too small: with {fraction:.0%} lenses it holds about "
                                    f"{expected:.1f} of the rarer class; give at least {least} so that both "
                                    f"lenses and non-lenses are scored")
        _check_simulator_settings(self.settings_a, "--setting-a", self.survey)
        _check_simulator_settings(self.settings_b, "--setting-b", self.survey)

    def recorded(self) -> dict:
        """The settings as config.json holds them (the real folder resolved)."""
        values = asdict(self)
        values["out"] = str(Path(self.out).resolve())
        values["real"] = None if self.real is None else str(Path(self.real).expanduser().resolve())
        for key in ("overwrite", "progress", "workers", "device"):
            values.pop(key)
        return values

    def say(self, text: str) -> None:
        if self.progress is not False:
            print(f"transfer-check: {text}", file=sys.stderr, flush=True)


def _check_simulator_settings(settings: dict, option: str, survey: str) -> None:
    """Refuse knobs that this simulator does not take, and values it refuses, naming them (not an error
    after set A is simulated and trained on)."""
    from lexactum.simulate.writer import checked_params, simulate_dataset

    taken = set(inspect.signature(simulate_dataset).parameters) - {"out", "survey", "n", "layout", "seed",
                                                                    "workers", "overwrite", "progress"}
    unknown = sorted(set(settings) - taken)
    if unknown:
        raise LexactumError(f"{option} {unknown[0]}: not a setting of this simulator (it takes: "
                            f"{', '.join(sorted(taken))})")
    try:
        checked_params(survey, n=1, layout=LAYOUT, seed=0, **settings)
    except LexactumError as exc:
        raise LexactumError(f"{option}: {exc}") from None


def transfer_check(settings: TransferSettings) -> list[dict]:
    """Run the whole check; returns the table's rows (also in OUT/transfer.csv and transfer.md)."""
    from lexactum import runs
    from lexactum.transfer.real import read_real

    settings.check()
    out = Path(settings.out)
    runs.check_output_folder(out)
    real = read_real(settings.real, settings.survey) if settings.real is not None else None
    redo = _check_previous(out, settings)
    runs.ensure_folder(out)
    plan = _simulations(settings)
    sim_a = _simulate(settings, SIM_A, *plan[SIM_A], SIM_A in redo)
    model_path, run_dir = _trained_model(settings, sim_a)
    sim_b = _simulate(settings, SIM_B, *plan[SIM_B], SIM_B in redo)
    scored = [(SET_A, *_run_scores(run_dir)), (SET_B, *_score_dataset(settings, model_path, sim_b))]
    if real is not None:
        scored.append((SET_REAL, real.ids, real.labels, _score_real(settings, model_path, real)))
    return _write_outputs(settings, out, scored, _impostor_rows(scored, {SET_A: sim_a, SET_B: sim_b}))


def _impostor_rows(scored: list, folders: dict[str, Path]) -> list[dict]:
    """The scores of each simulated set's non-lenses per impostor kind, for the sets that list their
    impostors (randomised ones)."""
    from lexactum.simulate.writer import read_impostor_truth
    from lexactum.transfer.report import impostor_rows

    rows = []
    for name, ids, labels, scores in scored:
        truth = read_impostor_truth(folders[name]) if name in folders else None
        if truth is not None:
            rows += impostor_rows(name, ids, labels, scores, truth)
    return rows


#: The settings each simulated set and the training run are made from; the others only change the scoring,
#: which every call redoes.
_A_KEYS = ("survey", "n_train", "n_test", "seed_a", "settings_a")
MADE_FROM = {SIM_A: _A_KEYS, RUN: (*_A_KEYS, "epochs", "network", "batch_size"),
             SIM_B: ("survey", "n_test", "seed_b", "settings_b")}


def _check_previous(out: Path, settings: TransferSettings) -> set[str]:
    """What to make anew (SIM_A, RUN, SIM_B): nothing when the folder holds a check with the same settings (it
    continues), and with ``overwrite`` what the changed settings make (set B alone when only its settings
    changed: A and the trained network are kept; the training alone for other epochs, network or batch size).
    Another check's folder is refused without ``overwrite``, and so is a set simulated by another version of
    the simulator (other impostor rates, say): with ``overwrite`` it is simulated again, and trained on again."""
    import shutil

    from lexactum import runs

    changed = []
    if (out / CONFIG).is_file():
        before = {"settings_a": {}, **runs.read_json(out / CONFIG).get("settings", {})}  # none before --setting-a
        now = settings.recorded()
        changed = [k for k in now if k not in ("real", "bootstrap") and before.get(k) != now[k]]
    stale = _stale_simulations(out, settings)
    if not changed and not stale:
        return set()
    if not settings.overwrite and changed:
        raise LexactumError(f"--out {out}: holds a transfer check with other settings ({changed[0]} was "
                            f"{before.get(changed[0])!r}, now {now[changed[0]]!r}); give another --out, or "
                            f"--overwrite to redo it")
    if not settings.overwrite:
        name, key, was, now_value = stale[0]
        raise LexactumError(f"--out {out}: {name} was simulated by another version of the simulator ({key} was "
                            f"{was!r}, now {now_value!r}); --overwrite to simulate it again (and train again "
                            f"on set A)")
    redo = {name for name, keys in MADE_FROM.items() if set(keys) & set(changed)} | {s[0] for s in stale}
    if SIM_A in redo:
        redo.add(RUN)
    if RUN in redo and (out / RUN).is_dir():
        shutil.rmtree(out / RUN)
    return redo


def _stale_simulations(out: Path, settings: TransferSettings) -> list[tuple[str, str, object, object]]:
    """(set, parameter, recorded value, value now) for each simulated set in ``out`` whose manifest differs from
    what this simulator writes for the same settings (its first differing parameter)."""
    from lexactum.simulate.writer import checked_params, differing_params, recorded_params

    stale = []
    for name, (n, seed, extra) in _simulations(settings).items():
        made = recorded_params(out / name)
        if made is None:  # not simulated yet (or not by us: simulating it refuses the folder, naming it)
            continue
        now = checked_params(settings.survey, n, LAYOUT, seed, **extra)
        differing = differing_params(made, now)
        if differing:
            stale.append((name, differing[0], made.get(differing[0]), now[differing[0]]))
    return stale


def _simulations(settings: TransferSettings) -> dict[str, tuple[int, int, dict]]:
    """Each simulated set's (objects, seed, simulator settings): A holds the training and the test part."""
    return {SIM_A: (settings.n_train + settings.n_test, settings.seed_a, settings.settings_a),
            SIM_B: (settings.n_test, settings.seed_b, settings.settings_b)}


def _simulate(settings: TransferSettings, name: str, n: int, seed: int, extra: dict, anew: bool = False) -> Path:
    """Simulate (or resume, or reuse) set ``name``; ``anew`` replaces one made with other settings."""
    from lexactum.simulate.writer import simulate_dataset

    settings.say(f"simulating {name} ({n} {settings.survey} objects, seed {seed})")
    return simulate_dataset(Path(settings.out) / name, settings.survey, n, layout=LAYOUT, seed=seed,
                            workers=settings.workers, overwrite=anew,
                            progress=settings.progress is not False,
                            **extra)


def _training_config(settings: TransferSettings, sim_a: Path):
    """The TrainConfig of the check: A's folder split into training, validation and the last n_test objects'
    share as the test part (the run scores it); a run folder already there is resumed."""
    import shutil

    from lexactum import runs
    from lexactum.training import TrainConfig

    out = Path(settings.out)
    total = settings.n_train + settings.n_test
    overrides = {"epochs": settings.epochs, "device": settings.device, "model_out": str(out / MODEL),
                 "overwrite": True, "cache_dir": str(out / "cache"), "progress": settings.progress,
                 "bootstrap": 0}
    if (out / RUN / runs.LAST_CHECKPOINT).is_file():
        return TrainConfig.from_run(out / RUN, **overrides)
    if (out / RUN).is_dir():  # killed before its first epoch ended: nothing in it to keep
        shutil.rmtree(out / RUN)
    train_share = settings.n_train / total
    split = (train_share * (1 - VALIDATION_SHARE), train_share * VALIDATION_SHARE, settings.n_test / total)
    return TrainConfig(dataset=str(sim_a), survey=settings.survey, network=settings.network,
                       batch_size=settings.batch_size, split=split, seed=settings.seed_a,
                       run_dir=str(out / RUN), **overrides)


def _trained_model(settings: TransferSettings, sim_a: Path) -> tuple[Path, Path]:
    """(model file, run folder): reused when a finished check left them. Its training settings are this
    check's: :func:`_check_previous` has refused other ones, or removed the run they made."""
    from lexactum.training import train

    out = Path(settings.out)
    model_path, run_dir = out / MODEL, out / RUN
    if (out / CONFIG).is_file() and model_path.is_file() and (run_dir / "scores.csv").is_file():
        settings.say(f"reusing the model trained before: {model_path}")
        return model_path, run_dir
    settings.say(f"training {settings.network} for {settings.epochs} epochs on {SIM_A}")
    result = train(_training_config(settings, sim_a))
    return Path(result.model_path), Path(result.run_dir)


def _run_scores(run_dir: Path):
    """(ids, labels, scores) of the run's test part, from its scores.csv."""
    import numpy as np

    from lexactum import runs

    rows = runs.read_csv(run_dir / "scores.csv")
    if not rows:
        raise LexactumError(f"{run_dir / 'scores.csv'}: missing or empty; run the check again to redo it")
    return (np.array([int(r["ID"]) for r in rows]), np.array([int(r["label"]) for r in rows]),
            np.array([float(r["score"]) for r in rows]))


def _score_dataset(settings: TransferSettings, model_path: Path, folder: Path):
    from lexactum.data import ChallengeDataset
    from lexactum.evaluation.evaluate import score_files
    from lexactum.models import load_model

    settings.say(f"scoring {folder.name}")
    model = load_model(model_path, survey=settings.survey)
    dataset = ChallengeDataset(folder, survey=settings.survey)
    scores, _ = score_files(model, dataset, device=settings.device, show_progress=settings.progress)
    return dataset.ids, dataset.labels, scores


def _score_real(settings: TransferSettings, model_path: Path, real):
    from lexactum.data.normalise import normalise
    from lexactum.evaluation.evaluate import model_normalisation, score
    from lexactum.models import load_model

    settings.say(f"scoring {len(real.labels)} real images from {real.path}")
    model = load_model(model_path, survey=settings.survey)
    images = normalise(real.images.copy(), model_normalisation(model),
                       mask_value=_mask_value(settings.survey))
    return score(model, images, device=settings.device)


def _mask_value(survey: str):
    from lexactum.data.surveys import get_survey

    return get_survey(survey).mask_value


def _write_outputs(settings: TransferSettings, out: Path, scored: list, impostors: list[dict]) -> list[dict]:
    """scores-<set>.csv, transfer.csv, transfer.md, histograms.png, impostors-by-kind.csv (sets that list
    their impostors) and config.json, all or none of them."""
    from lexactum import runs
    from lexactum.transfer.report import COLUMNS, IMPOSTOR_COLUMNS, plot_histograms, table_row

    rows = []
    for name, _ids, labels, scores in scored:
        try:
            rows.append(table_row(name, labels, scores, settings.bootstrap))
        except LexactumError as exc:
            raise LexactumError(f"set {name}: {exc}") from None
    with runs.all_or_nothing():
        for name, ids, labels, scores in scored:
            runs.write_csv(out / f"scores-{name}.csv", [{"ID": i, "label": int(lab), "score": float(s)}
                                                        for i, lab, s in zip(ids, labels, scores, strict=True)])
        runs.write_csv(out / TABLE_CSV, rows, fieldnames=COLUMNS)
        outputs = [TABLE_CSV, TABLE_MD, HISTOGRAMS]
        if impostors:
            runs.write_csv(out / IMPOSTORS_CSV, impostors, fieldnames=IMPOSTOR_COLUMNS)
            outputs.append(IMPOSTORS_CSV)
        elif (out / IMPOSTORS_CSV).is_file():  # an earlier check's, now out of date
            (out / IMPOSTORS_CSV).unlink()
        runs.write_text_atomic(out / TABLE_MD, _markdown(settings, rows, impostors))
        plot_histograms([(name, labels, scores) for name, _, labels, scores in scored], out / HISTOGRAMS)
        runs.write_json(out / CONFIG, {"settings": settings.recorded(), "outputs": outputs})
    settings.say(f"wrote {out / TABLE_CSV}, {TABLE_MD}, {HISTOGRAMS}")
    return rows


def _markdown(settings: TransferSettings, rows: list[dict], impostors: list[dict]) -> str:
    from lexactum.transfer.report import markdown_impostors, markdown_table

    def knobs(values: dict) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in values.items())

    a_knobs = f", {knobs(settings.settings_a)}" if settings.settings_a else ""
    return (f"# Transfer check: {settings.survey}, {settings.network}, {settings.epochs} epochs\n\n"
            f"Trained on {SIM_A} ({settings.n_train} objects, seed {settings.seed_a}{a_knobs}; "
            f"{VALIDATION_SHARE:.0%} of them for validation). {SET_A}: the {SIM_A} objects held out for testing; "
            f"{SET_B}: {settings.n_test} objects simulated with seed {settings.seed_b}, other settings: "
            f"{knobs(settings.settings_b) or 'none (seed only)'}"
            + (f"; {SET_REAL}: labelled real images from {settings.recorded()['real']}" if settings.real else "")
            + ".\n\n" + markdown_table(rows, settings.bootstrap)
            + (f"\n## Non-lenses by impostor kind ({IMPOSTORS_CSV})\n\n{markdown_impostors(impostors)}"
               if impostors else ""))
