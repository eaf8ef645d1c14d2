"""Inputs of ``predict`` behind one interface (lexactum.data.sources): every kind reads back exactly what was
written, in any order, in other processes; every bad input is one line naming the file and the fault."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from lexactum.data import sources
from lexactum.data.cache import prepare
from lexactum.data.layouts import ChallengeDataset
from lexactum.data.sources import open_source
from lexactum.data.surveys import GROUND, SPACE
from lexactum.errors import DataError, LexactumError

S = 101
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def _cube(n: int, bands: int | None, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """Random pixels (N, bands, 101, 101), or (N, 101, 101) for ``bands=None``, a few of them NaN."""
    rng = np.random.default_rng(seed)
    shape = (n, S, S) if bands is None else (n, bands, S, S)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)
    images = rng.normal(0, 50, shape).astype(dtype)
    images.reshape(n, -1)[:, :3] = np.nan
    return images


def _h5(path: Path, images=None, ids=None, bands=None, file_bands=None, images_key="images", ids_key="ids",
        **dataset_options) -> Path:
    with h5py.File(path, "w") as fh:
        if images is not None:
            data = fh.create_dataset(images_key, data=images, **dataset_options)
            if bands is not None:
                data.attrs["bands"] = bands
        if ids is not None:
            fh[ids_key] = ids
        if file_bands is not None:
            fh.attrs["bands"] = file_bands
    return path


def _raw(images: np.ndarray) -> np.ndarray:
    """What read_batch must give for these file rows: float32 (N, C, H, W)."""
    images = images[:, None] if images.ndim == 3 else images
    return images.astype(np.float32)


# -------------------------------------------------------------------------------------- round trips
@PROPERTY
@given(n=st.integers(1, 12), layout=st.sampled_from([(None, "space"), (1, "space"), (4, "ground")]),
       dtype=st.sampled_from([np.float32, np.float64, ">f4", np.float16, np.int16, np.uint8, np.int32]),
       chunked=st.booleans(), data=st.data())
def test_hdf5_cube_reads_back_the_rows_asked_for(n, layout, dtype, chunked, data):
    """Any number type, 3-D or 4-D, chunked+compressed or not; positions in any order with repeats."""
    bands, survey = layout
    images = _cube(n, bands, dtype, seed=n)
    ids = np.arange(n, dtype=np.int64) * 7 + 1000
    positions = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n)), dtype=np.int64)
    options = {"chunks": (min(n, 3), *images.shape[1:]), "compression": "gzip"} if chunked else {}
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source(_h5(Path(tmp) / "cube.h5", images, ids, **options))
        batch = source.read_batch(positions)
        assert source.kind == "hdf5" and source.survey.name == survey and len(source) == n
        assert source.normalised is None
        np.testing.assert_array_equal(source.ids, ids)
        np.testing.assert_array_equal(source.labels, np.full(n, -1))
        assert batch.dtype == np.float32 and batch.flags.c_contiguous
        np.testing.assert_array_equal(batch, _raw(images)[positions])  # NaN kept as NaN


@PROPERTY
@given(n=st.integers(1, 12), bands=st.sampled_from([None, 1, 4]),
       dtype=st.sampled_from([np.float32, np.float64, "<f8", np.int16, np.uint16]), data=st.data())
def test_npy_array_reads_back_the_rows_asked_for_with_row_numbers_as_ids(n, bands, dtype, data):
    images = _cube(n, bands, dtype, seed=n)
    positions = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n)), dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "cube.npy", images)
        source = open_source(Path(tmp) / "cube.npy")
        batch = source.read_batch(positions)
        assert source.kind == "npy" and source.survey.n_bands == (bands or 1)
        np.testing.assert_array_equal(source.ids, np.arange(n))
        np.testing.assert_array_equal(batch, _raw(images)[positions])
        assert "row numbers" in source.describe()


def test_npy_ids_come_from_the_ids_file(tmp_path):
    np.save(tmp_path / "cube.npy", _cube(3, 4))
    (tmp_path / "ids.txt").write_text("9000000000\n-5\n17\n")
    source = open_source(tmp_path / "cube.npy", ids_file=tmp_path / "ids.txt")
    assert source.ids.dtype == np.int64 and source.ids.tolist() == [9000000000, -5, 17]
    assert "ids.txt" in source.describe()


def test_hdf5_ids_file_replaces_the_ids_dataset(tmp_path):
    path = _h5(tmp_path / "cube.h5", _cube(3, 1), ids=None)  # no ids dataset at all
    (tmp_path / "ids.txt").write_text("5\n6\n7\n")
    assert open_source(path, ids_file=tmp_path / "ids.txt").ids.tolist() == [5, 6, 7]


def test_hdf5_other_dataset_names_are_read_when_given(tmp_path):
    images = _cube(4, 4)
    path = _h5(tmp_path / "cube.h5", images, np.arange(4) + 10, images_key="cutouts/pixels", ids_key="objid")
    source = open_source(path, images_key="cutouts/pixels", ids_key="objid")
    assert source.ids.tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(source.read_batch(np.array([3, 1])), images[[3, 1]])


def test_strided_and_far_apart_rows_are_read_span_by_span(tmp_path, monkeypatch):
    """Rows 0 and 599 of a 600-row cube take two rows of reading, not the 600 between them; a run longer
    than MAX_SPAN is cut into several reads."""
    images = _cube(600, None, np.uint8)
    source = open_source(_h5(tmp_path / "cube.h5", images, np.arange(600)))
    read: list[int] = []
    original = sources.HDF5Source._opened

    class Counting:
        def __init__(self, dataset):
            self.dataset, self.shape, self.dtype = dataset, dataset.shape, dataset.dtype

        def read_direct(self, out, source_sel, dest_sel):
            read.append(source_sel.stop - source_sel.start)
            self.dataset.read_direct(out, source_sel, dest_sel)

        def __getitem__(self, item):
            read.append(item.stop - item.start)
            return self.dataset[item]

    monkeypatch.setattr(sources.HDF5Source, "_opened", lambda self: Counting(original(self)))
    np.testing.assert_array_equal(source.read_batch(np.array([599, 0])), _raw(images)[[599, 0]])
    assert sorted(read) == [1, 1]
    read.clear()
    monkeypatch.setattr(sources, "MAX_SPAN", 4)
    strided = np.arange(10, 40, 3)  # gaps of 2 rows: read through, in spans of at most 4
    np.testing.assert_array_equal(source.read_batch(strided), _raw(images)[strided])
    assert max(read) <= 4 and sum(read) < 40


def test_challenge_dataset_reads_its_files_with_catalog_labels_and_left_out_objects(make_dataset):
    root = make_dataset(survey="ground", n=8, layout="train")
    dataset = ChallengeDataset(root)
    gone = dataset.band_paths[2][1]
    source = open_source(root, survey="ground")
    assert source.kind == "challenge" and source.normalised is None and source.left_out_rows() == []
    np.testing.assert_array_equal(source.labels, dataset.labels)
    positions = np.array([5, 0, 5, 7])
    np.testing.assert_array_equal(source.read_batch(positions), np.stack([dataset.read(k) for k in positions]))
    gone.unlink()
    source = open_source(root)
    assert len(source) == 7 and int(dataset.ids[2]) not in source.ids.tolist()
    assert source.left_out_rows() == [{"ID": int(dataset.ids[2]), "reason": "band file missing",
                                       "file": str(gone)}]


def test_loose_cutouts_read_back(tmp_path):
    images = _cube(3, 4)
    for k in range(3):
        fits.PrimaryHDU(images[k]).writeto(tmp_path / f"candidate_{40 + k}.fits")
    source = open_source(tmp_path)
    assert source.kind == "cutouts" and source.survey is GROUND and source.ids.tolist() == [40, 41, 42]
    np.testing.assert_array_equal(source.labels, [-1, -1, -1])
    np.testing.assert_array_equal(source.read_batch(np.array([2, 0])), images[[2, 0]])


def test_prepared_dataset_is_read_from_its_memory_map_as_normalised(make_dataset, tmp_path):
    prepared = prepare(make_dataset(survey="space", n=6, layout="train"), cache_dir=tmp_path, workers=1,
                       progress=False)
    source = open_source(prepared.path)
    assert source.kind == "cache" and source.normalised == "zscale" and source.survey is SPACE
    np.testing.assert_array_equal(source.ids, prepared.ids)
    np.testing.assert_array_equal(source.labels, prepared.labels)
    np.testing.assert_array_equal(source.read_batch(np.array([4, 1, 1])), prepared.images[[4, 1, 1]])
    with pytest.raises(DataError, match="a prepared dataset of space images, not ground"):
        open_source(prepared.path, survey="ground")


def test_no_positions_give_an_empty_batch_and_bad_positions_are_refused(tmp_path):
    np.save(tmp_path / "cube.npy", _cube(2, 4))
    source = open_source(tmp_path / "cube.npy")
    assert source.read_batch(np.array([], dtype=np.int64)).shape == (0, 4, S, S)
    with pytest.raises(IndexError):
        source.read_batch(np.array([2]))
    with pytest.raises(IndexError):
        source.read_batch(np.array([-1]))  # never the last row by wrap-around
    with pytest.raises(TypeError):
        source.read_batch(np.array([0.5]))


# ------------------------------------------------------------------------------------------- bands
@PROPERTY
@given(order=st.permutations(["R", "I", "G", "U"]), extra=st.lists(st.sampled_from(["Z", "Y", "VIS2"]),
       unique=True, max_size=2), upper=st.lists(st.booleans(), min_size=6, max_size=6),
       on_file=st.booleans(), data=st.data())
def test_hdf5_bands_are_matched_by_name_whatever_the_order_case_and_extras(order, extra, upper, on_file, data):
    names = data.draw(st.permutations(order + extra))
    names = [n.upper() if up else n.lower() for n, up in zip(names, upper, strict=False)]
    images = _cube(3, len(names))
    where = {"file_bands": names} if on_file else {"bands": names}
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source(_h5(Path(tmp) / "cube.h5", images, np.arange(3), **where))
        wanted = [[n.lower() for n in names].index(b.lower()) for b in GROUND.bands]
        assert source.survey is GROUND
        np.testing.assert_array_equal(source.read_batch(np.array([2, 0])), images[[2, 0]][:, wanted])


@pytest.mark.parametrize("name", ["cube.h5", "cube.hdf5", "CUBE.HDF"])
def test_bands_without_names_are_taken_in_order(tmp_path, name):
    images = _cube(2, 4)
    source = open_source(_h5(tmp_path / name, images, np.arange(2)))
    assert source.survey is GROUND and "in order" in source.describe()
    np.testing.assert_array_equal(source.read_batch(np.array([0, 1])), images)


def test_the_datasets_band_names_come_before_the_files(tmp_path):
    images = _cube(1, 4)
    path = _h5(tmp_path / "cube.h5", images, [1], bands=["U", "G", "I", "R"], file_bands=["R", "I", "G", "U"])
    np.testing.assert_array_equal(open_source(path).read_batch(np.array([0])), images[:, ::-1])


def test_a_named_single_band_picks_the_space_survey(tmp_path):
    images = _cube(2, 3)
    source = open_source(_h5(tmp_path / "cube.h5", images, [1, 2], bands=[b"nir", b"vis", b"uv"]))
    assert source.survey is SPACE
    np.testing.assert_array_equal(source.read_batch(np.array([1])), images[[1]][:, [1]])


# ------------------------------------------------------------------------------------ other processes
def _read_inherited(source, positions, queue):
    batch = source.read_batch(positions)
    queue.put((os.getpid(), source._pid, batch))


@pytest.fixture
def every_kind(tmp_path, make_dataset):
    """Factory: ``every_kind(kind) -> (source, expected images)``, the source already read once (files open)."""
    images = _cube(5, 4)

    def make(kind):
        if kind == "hdf5":
            source = open_source(_h5(tmp_path / "cube.h5", images, np.arange(5), chunks=(2, 4, S, S)))
        elif kind == "npy":
            np.save(tmp_path / "cube.npy", images)
            source = open_source(tmp_path / "cube.npy")
        elif kind == "cache":
            prepared = prepare(make_dataset("ground", n=5, layout="train"), cache_dir=tmp_path, workers=1,
                               progress=False)
            source, expected = open_source(prepared.path), np.array(prepared.images)
        else:
            root = make_dataset("ground", n=5, layout="test")
            source, dataset = open_source(root), ChallengeDataset(root, require_labels=False)
            expected = np.stack([dataset.read(k) for k in range(5)])
        source.read_batch(np.array([0, 4]))  # mid-use: its file is open in this process
        return source, images if kind in ("hdf5", "npy") else expected

    return make


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("kind", ["hdf5", "npy", "cache", "challenge"])
def test_a_source_in_use_is_read_from_a_copy_in_another_process(every_kind, kind, method):
    source, expected = every_kind(kind)
    positions = np.array([3, 1, 4, 1])
    with multiprocessing.get_context(method).Pool(1) as pool:
        batch = pool.apply(source.read_batch, (positions,))  # the source goes pickled
    np.testing.assert_array_equal(batch, expected[positions])
    np.testing.assert_array_equal(source.read_batch(positions), expected[positions])  # the original reads on


@pytest.mark.parametrize("kind", ["hdf5", "npy", "cache"])
def test_a_forked_child_opens_the_file_again_rather_than_use_the_parents(every_kind, kind):
    source, expected = every_kind(kind)
    parent_handle = source._handle
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_inherited, args=(source, np.array([2, 0]), queue))  # not pickled
    child.start()
    child_pid, opened_by, batch = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and opened_by == child_pid != os.getpid()
    np.testing.assert_array_equal(batch, expected[[2, 0]])
    assert source._handle is parent_handle and source._pid == os.getpid()
    np.testing.assert_array_equal(source.read_batch(np.array([1])), expected[[1]])


@pytest.mark.parametrize("kind", ["hdf5", "npy"])
def test_opening_leaves_no_file_open_for_a_fork_to_inherit(tmp_path, kind):
    """open_source checks the file by reading it, then lets it go: processes forked before the first batch
    inherit no open file, and the user's file is not held."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc/self/fd here to list open files")
    path = tmp_path / f"cube.{kind}"
    np.save(path, _cube(2, 4)) if kind == "npy" else _h5(path, _cube(2, 4), [1, 2])
    source = open_source(path)

    def open_here() -> int:
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()) for fd in os.listdir("/proc/self/fd"))

    assert open_here() == 0
    source.read_batch(np.array([1]))
    assert open_here() == 1  # a memory map holds a descriptor too
    source.close()
    import gc

    gc.collect()
    assert open_here() == 0


def test_a_pickled_array_source_carries_no_pixels(tmp_path):
    np.save(tmp_path / "cube.npy", _cube(40, 4))  # 6.5 MB
    source = open_source(tmp_path / "cube.npy")
    source.read_batch(np.arange(40))
    assert len(pickle.dumps(source)) < 10_000


# --------------------------------------------------------------------------------------- bad inputs
def test_a_missing_input_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.h5: input does not exist"):
        open_source(tmp_path / "nothing.h5")


def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "cube.h5")
    with pytest.raises(DataError, match=r"cube\.h5: cannot be read \(a named pipe"):
        open_source(tmp_path / "cube.h5")


@pytest.mark.parametrize("name", ["cube.h5", "cube.npy"])
def test_an_unreadable_file_gives_the_systems_reason(tmp_path, monkeypatch, name):
    """As root nothing is unreadable by its mode: the refusal is simulated where the file is opened."""
    path = tmp_path / name
    np.save(path, _cube(1, 4)) if name.endswith(".npy") else _h5(path, _cube(1, 4), [1])

    def refuse(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(file))

    monkeypatch.setattr(sources, "open", refuse, raising=False)
    with pytest.raises(DataError, match=rf"cannot read .*{name}: permission denied"):
        open_source(path)


def test_a_text_file_named_h5_is_not_hdf5(tmp_path):
    (tmp_path / "cube.h5").write_text("ID,score\n1,0.5\n")
    with pytest.raises(DataError, match=r"cube\.h5: not an HDF5 file"):
        open_source(tmp_path / "cube.h5")


def test_a_truncated_hdf5_file_is_named(tmp_path):
    path = _h5(tmp_path / "cube.h5", _cube(6, 4), np.arange(6))
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(DataError, match=r"cube\.h5: truncated HDF5 file"):
        open_source(path)


def _shrink_while_reading(source, path, queue):
    source.read_batch(np.array([0]))  # mapped
    os.truncate(path, path.stat().st_size // 2)
    try:
        source.read_batch(np.array([0, 4]))
        queue.put("read")
    except DataError as exc:
        queue.put(str(exc))


@pytest.mark.parametrize("kind", ["npy", "cache"])
def test_a_mapped_file_that_shrinks_in_use_is_one_line_not_a_crash(every_kind, kind):
    """Pages past the new end of a memory-mapped file would kill the reader with SIGBUS: it reads in a forked
    child, so that a failure kills the child only. Mapped again, the shrunk file is refused too."""
    source, _ = every_kind(kind)
    path = source.path if kind == "npy" else source.path / "images.f32"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_shrink_while_reading, args=(source, path, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0, f"the reader died (exit status {child.exitcode})"
    assert re.fullmatch(rf"{re.escape(str(path))}: shrank to \d+ bytes while being read .*", queue.get(timeout=5))
    source.close()
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: (damaged or truncated|cannot be read any more)"):
        source.read_batch(np.array([0]))


def test_an_hdf5_file_truncated_in_use_is_one_line(every_kind):
    """HDF5 reads zeros past the end of a file: a file that shrank is refused instead."""
    source, _ = every_kind("hdf5")
    os.truncate(source.path, source.path.stat().st_size // 3)
    with pytest.raises(DataError, match=r"cube\.h5: shrank to \d+ bytes while being read"):
        source.read_batch(np.array([4, 2]))
    source.close()
    with pytest.raises(DataError, match=r"cube\.h5: truncated HDF5 file"):  # opened again, as a new process does
        source.read_batch(np.array([4, 2]))


def test_datasets_under_other_names_are_listed_never_guessed(tmp_path):
    """One 4-D and one 1-D integer dataset of the same length: what the cube must be, but not its names."""
    path = _h5(tmp_path / "cube.h5", _cube(3, 4), np.arange(3), images_key="data", ids_key="objid")
    with pytest.raises(DataError) as caught:
        open_source(path)
    message = str(caught.value)
    assert "no dataset 'images'" in message and "data (3, 4, 101, 101) float32" in message
    assert "objid (3,) int64" in message and "--images-key" in message and "--ids-key" in message


def test_a_missing_ids_dataset_names_the_options(tmp_path):
    path = _h5(tmp_path / "cube.h5", _cube(3, 4), ids=None)
    with pytest.raises(DataError, match=r"no dataset 'ids' \(datasets held: images .*--ids-key or --ids\b"):
        open_source(path)


@pytest.mark.parametrize("shape, message", [
    ((3, S), r"has shape \(3, 101\); expected \(N, bands, 101, 101\)"),
    ((1, 1, 4, S, S), r"has shape \(1, 1, 4, 101, 101\)"),
    ((2, 4, 64, 64), r"images of 64x64 pixels .*101x101 cutouts$"),
    ((2, S, S, 4), r"images of 101x4 pixels .*\(bands last\? store them as \(N, bands, H, W\)\)"),
    ((2, 3, S, S), r"has 3 bands, and no survey has 3 \(space has 1, ground has 4\)"),
    ((0, 4, S, S), r"holds no images \(shape \(0, 4, 101, 101\)\)"),
])
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_cubes_of_the_wrong_shape_are_refused(tmp_path, shape, message, suffix):
    path = tmp_path / f"cube{suffix}"
    images = np.zeros(shape, np.float32)
    np.save(path, images) if suffix == ".npy" else _h5(path, images, np.arange(shape[0]))
    with pytest.raises(DataError, match=rf"cube\{suffix}: .*{message}"):
        open_source(path)


@pytest.mark.parametrize("shape, survey, message", [
    ((2, 4, S, S), "space", r"has 4 bands but space images have 1 \(VIS\)"),
    ((2, S, S), "ground", r"has 1 band but ground images have 4 \(R, I, G, U\)"),
    ((2, 1, S, S), "ground", r"has 1 band but ground images have 4"),
])
def test_a_band_count_other_than_the_given_surveys_is_refused(tmp_path, shape, survey, message):
    np.save(tmp_path / "cube.npy", np.zeros(shape, np.float32))
    with pytest.raises(DataError, match=rf"cube\.npy: array {message}"):
        open_source(tmp_path / "cube.npy", survey=survey)


@pytest.mark.parametrize("bands, survey, message", [
    (["R", "I", "G", "Z"], "ground", r"band U of ground images is not among the file's bands \(R, I, G, Z\)"),
    (["R", "I", "G", "Z"], None, r"bands \(R, I, G, Z\) match no survey's \(space: VIS; ground: R, I, G, U\)"),
    (["R", "I", "G", "U", "VIS"], None, r"hold the bands of several surveys; choose one with --survey"),
    (["R", "I", "G"], None, r"the 'bands' attribute names 3 bands \(R, I, G\) but dataset 'images' has 4"),
    (["R", "r", "G", "U"], None, r"names band 'r' twice"),
])
def test_band_names_that_do_not_fit_are_refused(tmp_path, bands, survey, message):
    images = _cube(1, 5 if len(bands) == 5 else 4)
    path = _h5(tmp_path / "cube.h5", images, [1], bands=bands)
    with pytest.raises(DataError, match=rf"cube\.h5: .*{message}"):
        open_source(path, survey=survey)


def test_five_named_bands_with_a_survey_given_are_read(tmp_path):
    images = _cube(1, 5)
    path = _h5(tmp_path / "cube.h5", images, [1], bands=["R", "I", "G", "U", "VIS"])
    np.testing.assert_array_equal(open_source(path, survey="space").read_batch(np.array([0])), images[:, [4]])


@pytest.mark.parametrize("ids, message", [
    (np.arange(4), r"dataset 'ids' holds 4 IDs but cube\.h5 holds 3 images"),
    (np.array([1.0, 2.0, 3.0]), r"dataset 'ids' holds float64 values; IDs must be whole numbers"),
    (np.array(["a", "b", "c"], dtype="S1"), r"dataset 'ids' holds \|S1 values"),
    (np.arange(6).reshape(3, 2), r"dataset 'ids' has shape \(3, 2\); expected one ID per image, \(3,\)"),
    (np.array([7, 8, 7]), r"dataset 'ids' holds ID 7 2 times; each object needs its own ID"),
    (np.array([1, 2, 2**63 + 5], dtype=np.uint64), r"dataset 'ids' holds IDs beyond the 64-bit integer range"),
])
def test_bad_ids_datasets_are_refused(tmp_path, ids, message):
    path = _h5(tmp_path / "cube.h5", _cube(3, 1), ids)
    with pytest.raises(DataError, match=rf"cube\.h5: {message}"):
        open_source(path)


@pytest.mark.parametrize("text, error, message", [
    ("1\n2\n", DataError, r"ids\.txt: holds 2 IDs but cube\.npy holds 3 images"),
    ("1\n2.5\n3\n", LexactumError, r"ids\.txt: '2\.5' is not an object ID"),
    ("1\n2\n1\n", DataError, r"ids\.txt: holds ID 1 2 times"),
    ("1\n2\n99999999999999999999\n", DataError, r"ids\.txt: holds IDs beyond the 64-bit integer range"),
])
def test_bad_ids_files_are_refused(tmp_path, text, error, message):
    np.save(tmp_path / "cube.npy", _cube(3, 1))
    (tmp_path / "ids.txt").write_text(text)
    with pytest.raises(error, match=message):
        open_source(tmp_path / "cube.npy", ids_file=tmp_path / "ids.txt")


@pytest.mark.parametrize("make, message", [
    (lambda n: np.array(["a"] * n), r"holds <U1 values, not pixel values"),
    (lambda n: np.zeros((n, S, S), np.complex64), r"holds complex64 values"),
    (lambda n: np.zeros((n, S, S), bool), r"holds bool values"),
])
def test_images_that_are_no_numbers_are_refused(tmp_path, make, message):
    np.save(tmp_path / "cube.npy", make(2))
    with pytest.raises(DataError, match=rf"cube\.npy: array {message}"):
        open_source(tmp_path / "cube.npy")


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    np.save(tmp_path / "cube.npy", np.array([Trap(), Trap()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cube\.npy: holds Python objects \(dtype object\), which are never"):
        open_source(tmp_path / "cube.npy")
    assert not marker.exists()


def test_a_text_file_named_npy_and_a_truncated_npy_are_refused(tmp_path):
    (tmp_path / "text.npy").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"text\.npy: not a NumPy \.npy file"):
        open_source(tmp_path / "text.npy")
    np.save(tmp_path / "cut.npy", _cube(3, 4))
    os.truncate(tmp_path / "cut.npy", 1000)
    with pytest.raises(DataError, match=r"cut\.npy: damaged or truncated \.npy file"):
        open_source(tmp_path / "cut.npy")


def test_an_unknown_suffix_names_what_is_read(tmp_path):
    (tmp_path / "cube.npz").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"cube\.npz: unknown kind of input; .*\.h5, \.hdf5, \.hdf.*\(\.npy\)"):
        open_source(tmp_path / "cube.npz")


def test_options_that_do_not_apply_are_refused(tmp_path, make_dataset):
    np.save(tmp_path / "cube.npy", _cube(1, 4))
    with pytest.raises(LexactumError, match=r"--images-key names a dataset of an HDF5 file, and .*cube\.npy is"):
        open_source(tmp_path / "cube.npy", images_key="pixels")
    (tmp_path / "ids.txt").write_text("1\n")
    with pytest.raises(LexactumError, match=r"--ids gives the IDs of an HDF5 or \.npy cube"):
        open_source(make_dataset(n=2), ids_file=tmp_path / "ids.txt")
