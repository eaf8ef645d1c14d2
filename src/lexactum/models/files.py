"""Model files: one safetensors file per trained network, with what it needs to be used again.

safetensors holds only tensors and a string header, so loading a file can never run code (unlike pickle).
The header carries the metadata as JSON strings: network, survey, bands, in_channels, input_size,
normalisation, epochs, seed, split, metrics, package version, creation time, source. The seed's Keras
``.h5`` files are handed to :mod:`lexactum.models.keras_h5`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from lexactum.errors import ModelFileError
from lexactum.models.blocks import INPUT_SIZE

#: Where the seed keeps its models, relative to the working directory.
DEFAULT_MODELS_DIR = "models"
SUFFIX = ".safetensors"


def _survey_name(survey) -> str:
    from lexactum.data.surveys import get_survey

    return get_survey(getattr(survey, "name", survey)).name


def default_model_path(survey, network: str, epochs: int,
                       models_dir: str | os.PathLike = DEFAULT_MODELS_DIR) -> Path:
    """The seed's name for a trained model: ``models/<space|ground>_<network>_<N>epochs.safetensors``."""
    return Path(models_dir) / f"{_survey_name(survey)}_{network}_{int(epochs)}epochs{SUFFIX}"


def free_model_path(path: str | os.PathLike, reusable=None) -> Path:
    """``path`` when no file is there, else the first free ``<stem>-2<suffix>``, ``-3``...: a new model never
    replaces another one. ``reusable(candidate)`` may accept a taken name (e.g. a run's own earlier model)."""
    path = Path(path)
    candidate, k = path, 1
    while candidate.exists() or candidate.is_symlink():
        if reusable is not None and reusable(candidate):
            return candidate
        k += 1
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return candidate


def backup_model_file(path: str | os.PathLike, now: datetime | None = None) -> Path:
    """Keep the model file at ``path`` under a dated name beside it, ``<stem>.<UTC time><suffix>``; returns it.

    For the seed's fixed file names (``Space.py``'s load mode expects them): the new model takes the name and
    the old one stays loadable under its backup name. A hard link keeps the name filled until the new file
    replaces it; where links are not possible the file is renamed.
    """
    path = Path(path)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    backup = free_model_path(path.with_name(f"{path.stem}.{stamp}{path.suffix}"))
    try:
        os.link(path, backup)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links
        os.replace(path, backup)
    return backup


def _base_metadata(model) -> dict:
    """What is known from the network itself; the caller's metadata adds to and overrides it."""
    from lexactum import __version__
    from lexactum.data.surveys import SURVEYS

    if not getattr(model, "name", None) or not hasattr(model, "in_channels"):
        raise ModelFileError(f"cannot save a {type(model).__name__}: only networks from create_model() "
                             "(with .name and .in_channels) can be saved")
    in_channels = int(model.in_channels)
    metadata = {
        "network": model.name,
        "in_channels": in_channels,
        "input_size": INPUT_SIZE,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    matching = [s for s in SURVEYS.values() if s.n_bands == in_channels]
    if len(matching) == 1:
        metadata["survey"] = matching[0].name
        metadata["bands"] = list(matching[0].bands)
    return metadata


def save_model(model, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model``'s weights and batch-norm statistics with ``metadata`` to one safetensors file.

    The file appears complete or not at all: it is written under a temporary name in the same folder and
    renamed into place, so an interrupted save never leaves (or damages) a file at ``path``.
    """
    from safetensors.torch import save

    path = Path(path)
    header = _base_metadata(model)
    header.update(metadata or {})
    if "survey" in header:
        from lexactum.data.surveys import get_survey

        survey = get_survey(getattr(header["survey"], "name", header["survey"]))
        if survey.n_bands != header["in_channels"]:
            raise ModelFileError(f"cannot save {path}: a {header['in_channels']}-band network is not a "
                                 f"{survey.name} model ({survey.n_bands} bands)")
        header["survey"], header["bands"] = survey.name, list(survey.bands)
    try:
        encoded = {str(key): json.dumps(value) for key, value in header.items()}
    except TypeError as exc:
        raise ModelFileError(f"model metadata for {path} cannot be stored as JSON: {exc}") from None
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    from lexactum.runs import write_bytes_atomic

    # Serialised in memory, then written by Python: a full disk is an OSError naming the file (safetensors'
    # own writer reports it as a SafetensorError), and the temporary file is removed.
    write_bytes_atomic(path, save(tensors, metadata=encoded))
    return path


def resolve_model_path(path: str | os.PathLike, models_dir: str | os.PathLike = DEFAULT_MODELS_DIR) -> Path:
    """``path`` itself if it exists, else a bare file name looked up in ``models_dir`` (the seed's way)."""
    candidate = Path(path)
    looked = [candidate]
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise ModelFileError(f"model file {str(path)!r} is a folder; give the model file inside it")
    if candidate.parent == Path("."):
        in_models = Path(models_dir) / candidate
        looked.append(in_models)
        if in_models.is_file():
            return in_models
    raise ModelFileError(f"model file {str(path)!r} not found (looked at {', '.join(map(str, looked))})")


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    """Tensors and decoded metadata of a safetensors file; a clear error for anything else."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path} is not a readable safetensors model file (truncated or corrupt?): {reason}"
        ) from None
    metadata = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value  # written by another tool: keep the plain string
    return tensors, metadata


def _check_survey(path: Path, metadata: dict, survey) -> None:
    if survey is None:
        return
    from lexactum.data.surveys import get_survey

    wanted = get_survey(getattr(survey, "name", survey))
    saved = metadata.get("survey")
    if saved is not None and str(saved).lower() != wanted.name:
        raise ModelFileError(f"{path} was trained on {saved} images, not {wanted.name}")
    if saved is None and metadata.get("in_channels") not in (None, wanted.n_bands):
        raise ModelFileError(
            f"{path} takes {metadata['in_channels']} bands, but {wanted.name} images have {wanted.n_bands}"
        )


def _build_from_safetensors(path: Path):
    from lexactum.errors import LexactumError
    from lexactum.models.registry import create_model, list_models

    tensors, metadata = _read_safetensors(path)
    network = metadata.get("network")
    if network is None:
        raise ModelFileError(f"{path} has no 'network' in its metadata: not a LEXACTUM model file")
    if network not in list_models():
        raise ModelFileError(f"{path} holds unknown network {network!r} (known: {', '.join(list_models())})")
    size = metadata.get("input_size", INPUT_SIZE)
    if isinstance(size, bool) or size != INPUT_SIZE:
        raise ModelFileError(f"{path} was made for {size!r}-pixel images; this version takes "
                             f"{INPUT_SIZE}x{INPUT_SIZE}-pixel images")
    try:
        model = create_model(network, in_channels=metadata.get("in_channels", 1))
    except LexactumError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    _check_description(path, metadata)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra)) if keys]
        raise ModelFileError(f"{path} does not match network {network}: {'; '.join(parts)} weights")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelFileError(
                f"{path}: weight {key} has shape {tuple(tensor.shape)}, "
                f"network {network} needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict(tensors)
    return model, metadata


def _check_description(path: Path, metadata: dict) -> None:
    """The survey and normalisation a file names must exist and fit its network's bands: found here, not
    later in a scoring run that has already written its config."""
    from lexactum.data.normalise import list_normalisations
    from lexactum.data.surveys import SURVEYS

    survey = metadata.get("survey")
    if survey is not None:
        if str(survey).lower() not in SURVEYS:
            raise ModelFileError(f"{path} names unknown survey {survey!r} (known: {', '.join(SURVEYS)})")
        bands = SURVEYS[str(survey).lower()].n_bands
        if int(metadata.get("in_channels", 1)) != bands:
            raise ModelFileError(f"{path} is for {survey} images ({bands} band(s)) but its network takes "
                                 f"{metadata.get('in_channels', 1)}")
    normalisation = metadata.get("normalisation")
    known = list_normalisations()
    if normalisation is not None and (not isinstance(normalisation, str) or normalisation not in known):
        raise ModelFileError(f"{path} names unknown normalisation {normalisation!r} (known: {', '.join(known)})")


def load_model(path: str | os.PathLike, survey=None, models_dir: str | os.PathLike = DEFAULT_MODELS_DIR):
    """The network saved at ``path`` (or ``models_dir/path``), in eval mode, with ``.metadata``.

    ``survey`` ('space', 'ground' or a SurveyFormat), when given, must be the one the model was made for.
    """
    path = resolve_model_path(path, models_dir)
    if path.suffix.lower() == ".h5":
        from lexactum.models.keras_h5 import load_keras_model

        model = load_keras_model(path)
        metadata = dict(getattr(model, "metadata", None) or {})
        metadata.setdefault("in_channels", getattr(model, "in_channels", None))
    else:
        model, metadata = _build_from_safetensors(path)
    _check_survey(path, metadata, survey)
    model.eval()
    model.metadata = metadata
    return model
