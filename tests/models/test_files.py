"""Model files: safetensors round trip, metadata, atomic writes, and every refusal."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lexactum import __version__
from lexactum.data.surveys import GROUND
from lexactum.errors import LexactumError, ModelFileError
from lexactum.models import create_model, default_model_path, load_model, save_model
from lexactum.models import files as model_files


def _randomise_batch_norm(model):
    """Make running statistics differ from their defaults, so a lost buffer would show in the outputs."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    return model


@pytest.fixture(scope="module")
def wsi_ground():
    torch.manual_seed(0)
    return _randomise_batch_norm(create_model("wsi_net", in_channels=4)).eval()


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path, wsi_ground):
    path = tmp_path / "models" / "ground_wsi_net_3epochs.safetensors"
    extra = {"epochs": 3, "seed": 42, "normalisation": "zscale", "split": [0.19, 0.01, 0.8],
             "metrics": {"auc": 0.91, "tpr0": 0.1}, "source": "lexactum train"}
    assert save_model(wsi_ground, path, extra) == path
    loaded = load_model(path, survey="ground")
    assert type(loaded) is type(wsi_ground) and not loaded.training
    for key, value in wsi_ground.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    images = torch.rand(2, 4, 101, 101)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), wsi_ground(images), rtol=0, atol=0)
    meta = loaded.metadata
    assert {k: meta[k] for k in extra} == extra
    assert (meta["network"], meta["survey"], meta["bands"], meta["in_channels"], meta["input_size"]) == (
        "wsi_net", "ground", list(GROUND.bands), 4, 101)
    assert meta["package_version"] == __version__ and meta["created"].endswith("+00:00")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_file_is_plain_safetensors_with_json_header(tmp_path):
    from safetensors import safe_open

    model = create_model("lens_flow", in_channels=1)
    path = save_model(model, tmp_path / "m.safetensors", {"epochs": 1})
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        assert set(handle.keys()) == set(model.state_dict())
    assert json.loads(header["network"]) == "lens_flow" and json.loads(header["survey"]) == "space"


@pytest.mark.parametrize("disk", ["simulated", "tmpfs"])
def test_full_disk_leaves_the_old_file_intact_and_no_temporary_file(tmp_path, monkeypatch, request, disk):
    """A full disk is an OSError (ENOSPC) naming the model file, never a half-written model file."""
    import errno

    if disk == "tmpfs":
        folder = request.getfixturevalue("small_disk")("64k").root
    else:
        folder = tmp_path / "models"
        folder.mkdir()
    path = folder / "m.safetensors"
    path.write_bytes(b"an older model")
    real = Path.write_bytes

    def half_then_full(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    if disk == "simulated":
        monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError) as caught:
        save_model(create_model("lens_flow", in_channels=1), path, {"epochs": 2})
    assert caught.value.errno == errno.ENOSPC and str(path) in str(caught.value)
    assert path.read_bytes() == b"an older model"
    assert [p.name for p in folder.iterdir()] == ["m.safetensors"]


def test_free_model_path_never_names_a_taken_file(tmp_path):
    from lexactum.models.files import free_model_path

    path = tmp_path / "space_lens_flow_10epochs.safetensors"
    assert free_model_path(path) == path
    path.write_bytes(b"one")
    (tmp_path / "space_lens_flow_10epochs-2.safetensors").mkdir()
    assert free_model_path(path) == tmp_path / "space_lens_flow_10epochs-3.safetensors"
    assert free_model_path(path, reusable=lambda p: p == path) == path


def test_backup_keeps_the_old_model_beside_it(tmp_path):
    from datetime import UTC, datetime

    from lexactum.models.files import backup_model_file

    path = tmp_path / "space_lens_flow_10epochs.safetensors"
    path.write_bytes(b"old model")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = backup_model_file(path, now=when)
    assert first == tmp_path / "space_lens_flow_10epochs.20260102-030405.safetensors"
    assert first.read_bytes() == b"old model" and path.read_bytes() == b"old model"
    assert backup_model_file(path, now=when) == tmp_path / "space_lens_flow_10epochs.20260102-030405-2.safetensors"


def test_metadata_that_is_not_json_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(create_model("lens_flow"), tmp_path / "m.safetensors", {"when": object()})
    assert not any(tmp_path.iterdir())


def test_only_registered_networks_with_a_consistent_survey_are_saved(tmp_path):
    with pytest.raises(ModelFileError, match="only networks from create_model"):
        save_model(torch.nn.Linear(2, 1), tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="1-band network is not a ground model"):
        save_model(create_model("lens_flow", in_channels=1), tmp_path / "m.safetensors", {"survey": "ground"})
    assert not any(tmp_path.iterdir())


def test_bare_name_is_looked_up_in_the_models_folder(tmp_path, monkeypatch):
    models = tmp_path / "models"
    save_model(create_model("lens_flow", in_channels=1), models / "space_lens_flow_2epochs.safetensors")
    found = load_model("space_lens_flow_2epochs.safetensors", models_dir=models)
    assert found.name == "lens_flow"
    monkeypatch.chdir(tmp_path)  # the seed's default: ./models
    assert load_model("space_lens_flow_2epochs.safetensors").metadata["network"] == "lens_flow"


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(ModelFileError) as caught:
        load_model("absent.safetensors", models_dir=tmp_path / "models")
    message = str(caught.value)
    assert "absent.safetensors" in message and str(tmp_path / "models" / "absent.safetensors") in message


@pytest.mark.parametrize("damage", ["truncated", "header", "text", "empty"])
def test_damaged_files_are_refused(tmp_path, damage):
    good = save_model(create_model("lens_flow", in_channels=1), tmp_path / "good.safetensors").read_bytes()
    content = {"truncated": good[: len(good) // 2], "header": good[:50], "text": b"not a model at all\n" * 20,
               "empty": b""}[damage]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="bad.safetensors is not a readable safetensors model file"):
        load_model(path)


def test_survey_mismatch_is_refused(tmp_path):
    path = save_model(create_model("lens_flow", in_channels=1), tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="trained on space images, not ground"):
        load_model(path, survey=GROUND)
    assert load_model(path, survey="space").in_channels == 1
    with pytest.raises(LexactumError, match="unknown survey"):
        load_model(path, survey="hubble")


def _write_raw(path, tensors, header):
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in header.items()})
    return path


def test_unknown_network_and_missing_metadata_are_refused(tmp_path):
    weights = create_model("lens_flow").state_dict()
    path = _write_raw(tmp_path / "u.safetensors", weights, {"network": "resnet50", "in_channels": 1})
    with pytest.raises(ModelFileError, match="unknown network 'resnet50'.*lens_flow"):
        load_model(path)
    bare = tmp_path / "bare.safetensors"
    save_file(weights, str(bare))
    with pytest.raises(ModelFileError, match="no 'network'"):
        load_model(bare)


@pytest.mark.parametrize(("description", "message"), [
    ({"survey": "moon"}, "unknown survey 'moon'"),
    ({"survey": "ground"}, "is for ground images \\(4 band\\(s\\)\\) but its network takes 1"),
    ({"normalisation": "nonsense"}, "unknown normalisation 'nonsense'"),
    ({"normalisation": 5}, "unknown normalisation 5"),
])
def test_a_description_that_cannot_be_right_is_refused(tmp_path, description, message):
    weights = create_model("lens_flow").state_dict()
    path = _write_raw(tmp_path / "d.safetensors", weights, {"network": "lens_flow", "in_channels": 1, **description})
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_other_input_size_is_refused(tmp_path):
    path = save_model(create_model("lens_flow"), tmp_path / "m.safetensors", {"input_size": 64})
    with pytest.raises(ModelFileError, match="64-pixel images"):
        load_model(path)
    # A size that is not the number 101 (here the string '101' of another tool) is named as it is.
    text = _write_raw(tmp_path / "t.safetensors", create_model("lens_flow").state_dict(),
                      {"network": "lens_flow", "in_channels": 1, "input_size": "101"})
    with pytest.raises(ModelFileError, match="made for '101'-pixel images; this version takes 101x101"):
        load_model(text)


def test_a_folder_is_not_a_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)


def test_missing_extra_and_misshapen_weights_are_refused(tmp_path):
    weights = create_model("lens_flow").state_dict()
    header = {"network": "lens_flow", "in_channels": 1, "input_size": 101}
    missing = dict(weights)
    del missing["classifier.1.weight"]
    with pytest.raises(ModelFileError, match="missing classifier.1.weight"):
        load_model(_write_raw(tmp_path / "a.safetensors", missing, header))
    extra = dict(weights, **{"head.weight": torch.zeros(3)})
    with pytest.raises(ModelFileError, match="unexpected head.weight"):
        load_model(_write_raw(tmp_path / "b.safetensors", extra, header))
    # four-band weights declared as one band
    four = create_model("lens_flow", in_channels=4).state_dict()
    with pytest.raises(ModelFileError, match=r"features.1.weight has shape \(16, 4, 5, 5\)"):
        load_model(_write_raw(tmp_path / "c.safetensors", four, header))


def test_h5_files_go_to_the_keras_importer(tmp_path, monkeypatch):
    calls = []

    def fake_loader(path):
        calls.append(Path(path))
        model = create_model("lens_flow", in_channels=4)
        model.metadata = {"network": "lens_flow", "survey": "ground", "source": "keras"}
        return model

    monkeypatch.setitem(sys.modules, "lexactum.models.keras_h5",
                        types.SimpleNamespace(load_keras_model=fake_loader))
    (tmp_path / "models").mkdir()
    h5 = tmp_path / "models" / "ground_lens_flow_10epochs.h5"
    h5.write_bytes(b"\x89HDF\r\n")
    model = load_model(h5.name, models_dir=tmp_path / "models", survey="ground")
    assert calls == [h5] and not model.training and model.metadata["source"] == "keras"
    with pytest.raises(ModelFileError, match="trained on ground images, not space"):
        load_model(h5, survey="space")


def test_default_model_path_follows_the_seed():
    assert default_model_path("space", "lens_flow", 10) == Path("models/space_lens_flow_10epochs.safetensors")
    assert default_model_path(GROUND, "cmu_deeplens", 3, models_dir="out") == Path(
        "out/ground_cmu_deeplens_3epochs.safetensors")
    with pytest.raises(LexactumError, match="unknown survey"):
        default_model_path("moon", "lens_flow", 1)
    assert model_files.SUFFIX == ".safetensors"
