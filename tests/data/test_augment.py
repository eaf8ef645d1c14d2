"""The seed's augmentation set: each transform's geometry, exactness, randomness, and both backends."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch
from scipy import ndimage

from lexactum.data.augment import (
    TRANSFORMS,
    Augmenter,
    _exact_maps,
    _pixel_inverse,
    _resample,
    _resample_by_fours,
    _resample_on_cpu,
    apply_matrices,
    augment_matrices,
    draw_augmentations,
)
from lexactum.errors import LexactumError

BACKENDS = ("numba", "torch")
#: Worst difference from a float64 reference for values in [-3, 5]: the torch backend computes sampling
#: positions in float32 (~1e-5 pixel off), times pixel-to-pixel jumps of up to 8.
TOLERANCE = {"numba": 2e-5, "torch": 2e-4}
SIZE = 101


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blob_batch(n: int, row: float, col: float, size: int = SIZE, sigma: float = 2.0) -> torch.Tensor:
    """(n, 1, size, size) Gaussian blobs centred on pixel (row, col)."""
    rows, cols = np.mgrid[:size, :size]
    blob = np.exp(-0.5 * ((rows - row) ** 2 + (cols - col) ** 2) / sigma**2)
    return torch.from_numpy(np.repeat(blob[None, None], n, axis=0).astype(np.float32))


def centroids(batch: torch.Tensor) -> np.ndarray:
    """(n, 2) intensity-weighted (x, y) = (column, row) of each image's first channel."""
    images = batch[:, 0].double().numpy()
    rows, cols = np.mgrid[: images.shape[1], : images.shape[2]]
    total = images.sum(axis=(1, 2))
    return np.stack([(images * cols).sum(axis=(1, 2)) / total, (images * rows).sum(axis=(1, 2)) / total], 1)


def forward_map(matrices: torch.Tensor, x: float, y: float, size: int = SIZE) -> np.ndarray:
    """Where pixel (x=column, y=row) lands under forward maps given in centred coordinates."""
    centre = (size - 1) / 2
    m = matrices.numpy()
    point = np.array([x - centre, y - centre])
    return np.einsum("nij,j->ni", m[:, :, :2], point) + m[:, :, 2] + centre


def random_batch(n=6, channels=2, height=SIZE, width=SIZE, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-3, 5, (n, channels, height, width))
                            .astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, dims", [("hflip", [-1]), ("vflip", [-2])])
def test_flips_are_exact_mirror_images(backend, name, dims):
    batch = random_batch()
    out = Augmenter(p=1.0, transforms=(name,), backend=backend)(batch, generator=seeded(1))
    assert torch.equal(out, torch.flip(batch, dims))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotations_are_exact_quarter_turns_of_all_three_kinds(backend):
    batch = random_batch(n=30, channels=1, height=SIZE, width=SIZE)
    params = dict(p=1.0, transforms=("rot90",))
    matrices = augment_matrices(30, seeded(2), **params)
    out = Augmenter(backend=backend, **params)(batch, generator=seeded(2))
    turns = []
    for i in range(30):
        matching = [k for k in (1, 2, 3) if torch.equal(out[i], torch.rot90(batch[i], k, dims=(-2, -1)))]
        assert len(matching) == 1
        turns.append(matching[0])
        # The documented matrix moves pixel (x=70, y=20) to where torch.rot90 put its value.
        x, y = np.rint(forward_map(matrices[i : i + 1], 70, 20)[0]).astype(int)
        assert out[i, 0, y, x] == batch[i, 0, 20, 70]
    assert set(turns) == {1, 2, 3}


@pytest.mark.parametrize("backend", BACKENDS)
def test_translation_moves_content_by_the_drawn_fraction_of_the_size(backend):
    params = dict(p=1.0, transforms=("translate",), translate=0.1)
    matrices = augment_matrices(8, seeded(3), **params)
    assert torch.equal(matrices[:, :, :2], torch.eye(2, dtype=torch.float64).expand(8, 2, 2))
    shift = matrices[:, :, 2].numpy()
    assert np.all(np.abs(shift) <= 0.1 * SIZE) and np.abs(shift).max() > 0.02 * SIZE
    out = Augmenter(backend=backend, **params)(blob_batch(8, row=40, col=60), generator=seeded(3))
    expected = np.array([60.0, 40.0]) + shift  # content moves by (tx*W, ty*H) columns, rows
    np.testing.assert_allclose(centroids(out), expected, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_stretches_about_the_centre(backend):
    params = dict(p=1.0, transforms=("scale",), scale=(0.75, 1.1))
    matrices = augment_matrices(8, seeded(4), **params)
    stretch = torch.diagonal(matrices[:, :, :2], dim1=1, dim2=2).numpy()
    assert np.all((stretch >= 0.75) & (stretch <= 1.1))
    off_diagonal = matrices[:, [0, 1], [1, 0]]
    assert torch.all(off_diagonal == 0) and torch.all(matrices[:, :, 2] == 0)
    out = Augmenter(backend=backend, **params)(blob_batch(8, row=35, col=68), generator=seeded(4))
    centre = (SIZE - 1) / 2
    expected = centre + stretch * (np.array([68.0, 35.0]) - centre)
    np.testing.assert_allclose(centroids(out), expected, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["shear_x", "shear_y"])
def test_shear_slants_by_the_tangent_of_an_angle_within_range(backend, name):
    params = dict(p=1.0, transforms=(name,), shear_deg=20.0)
    matrices = augment_matrices(8, seeded(5), **params)
    moving, fixed = (0, 1) if name == "shear_x" else (1, 0)
    slant = matrices[:, moving, fixed].numpy()
    angles = np.degrees(np.arctan(slant))
    assert np.all(np.abs(angles) <= 20.0) and np.abs(angles).max() > 5.0
    without = matrices.clone()
    without[:, moving, fixed] = 0
    assert torch.equal(without[:, :, :2], torch.eye(2, dtype=torch.float64).expand(8, 2, 2))
    out = Augmenter(backend=backend, **params)(blob_batch(8, row=30, col=62), generator=seeded(5))
    centre = (SIZE - 1) / 2
    x, y = 62.0 - centre, 30.0 - centre
    expected = np.zeros((8, 2))
    if name == "shear_x":  # x -> x + tan(a) y
        expected[:, 0], expected[:, 1] = x + slant * y, y
    else:  # y -> y + tan(b) x
        expected[:, 0], expected[:, 1] = x, y + slant * x
    np.testing.assert_allclose(centroids(out), expected + centre, atol=0.05)


def scipy_reference(batch: torch.Tensor, matrices: torch.Tensor) -> np.ndarray:
    """Bilinear resampling with zeros outside by scipy.ndimage, from the forward maps."""
    images = batch.double().numpy()
    height, width = images.shape[-2:]
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    out = np.empty_like(images)
    for i, m in enumerate(matrices.numpy()):
        forward = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])  # (row, column) order
        inverse = np.linalg.inv(forward)
        offset = centre - inverse @ (centre + m[::-1, 2])
        for c in range(images.shape[1]):
            out[i, c] = ndimage.affine_transform(images[i, c], inverse, offset=offset, order=1,
                                                 mode="grid-constant", cval=0.0)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("height, width, settings", [
    (SIZE, SIZE, {}),
    (40, 57, {}),
    (SIZE, SIZE, dict(p=0.8, translate=0.95, scale=(0.3, 3.0), shear_deg=60.0)),  # mostly off the image
])
def test_full_augmentation_matches_scipy_ndimage(backend, height, width, settings):
    batch = random_batch(n=12, channels=2, height=height, width=width, seed=7)
    matrices = augment_matrices(12, seeded(8), size=(height, width), **settings)
    out = apply_matrices(batch, matrices, backend=backend)
    np.testing.assert_allclose(out.double().numpy(), scipy_reference(batch, matrices),
                               atol=TOLERANCE[backend])


def test_backends_agree_and_inplace_overwrites_the_batch():
    batch = random_batch(n=40, channels=4, seed=9)
    matrices = augment_matrices(40, seeded(10))
    by_torch = apply_matrices(batch, matrices, backend="torch")
    by_numba = apply_matrices(batch, matrices, backend="numba")
    torch.testing.assert_close(by_numba, by_torch, atol=TOLERANCE["torch"], rtol=0)
    copy = batch.clone()
    result = apply_matrices(copy, matrices, backend="numba", inplace=True)
    assert result is copy and torch.equal(copy, by_numba)


@pytest.mark.parametrize("channels", [4, 8])
@pytest.mark.parametrize("height, width", [(SIZE, SIZE), (7, 11), (12, 5), (2, 2), (3, 9)])
def test_four_band_kernel_is_bit_identical_to_the_planar_one(channels, height, width):
    # Widths that are not a multiple of 4 exercise the ends the transposes leave to scalar code.
    images = random_batch(n=48, channels=channels, height=height, width=width, seed=23).numpy()
    matrices = augment_matrices(48, seeded(24), size=(height, width)).numpy()
    inverse = _pixel_inverse(matrices, height, width)
    exact = _exact_maps(inverse)
    assert exact.any() and not exact.all()  # both the bilinear and the nearest path are used
    planar, by_fours = np.full_like(images, np.nan), np.full_like(images, np.nan)
    _resample(images, inverse, exact, planar)
    _resample_by_fours(images, inverse, exact, by_fours)
    np.testing.assert_array_equal(by_fours, planar)
    _resample_by_fours(images, inverse, exact, images)  # in place
    np.testing.assert_array_equal(images, planar)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("height, width", [(4, 5), (5, 4), (6, 9), (7, 11)])
def test_quarter_turns_of_oblong_images_match_bilinear_sampling(backend, height, width):
    # When height and width differ by an odd number, a quarter turn about the centre lands between
    # pixels: it must then be sampled bilinearly, not rounded to a neighbour.
    batch = random_batch(n=3, channels=1, height=height, width=width, seed=30)
    turns = torch.tensor([[[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
                          [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    out = apply_matrices(batch, turns, backend=backend)
    np.testing.assert_allclose(out.double().numpy(), scipy_reference(batch, turns), atol=TOLERANCE[backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearly_flat_slopes_do_not_empty_the_rows(backend):
    # A slope of 1e-20 puts the ends of a row's span some 1e20 columns away: they must not overflow.
    batch = random_batch(n=1, channels=1, height=6, width=6, seed=31)
    matrix = torch.tensor([[[1.0, 0.0, 0.0], [1e-20, 1.0, 0.0]]], dtype=torch.float64)
    np.testing.assert_allclose(apply_matrices(batch, matrix, backend=backend).numpy(), batch.numpy(),
                               atol=TOLERANCE[backend])


@pytest.mark.parametrize(("matrices", "message"), [
    (torch.eye(2, dtype=torch.float64).repeat(4, 1, 1), r"shape \(4, 2, 3\), got \(4, 2, 2\)"),
    (torch.zeros(3, 2, 3, dtype=torch.float64), r"shape \(4, 2, 3\), got \(3, 2, 3\)"),
    (torch.tensor([[[1.0, 0, 0], [1.0, 0, 0]]] * 4, dtype=torch.float64), "matrix 0 is singular"),
    (torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]] * 3 + [[[1.0, 0, float("nan")], [0, 1.0, 0]]],
                  dtype=torch.float64), "matrix 3 is singular or not finite"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_matrices_are_one_clear_error(backend, matrices, message):
    with pytest.raises(LexactumError, match=message):
        apply_matrices(random_batch(n=4, channels=1, height=8, width=8), matrices, backend=backend)


def test_threads_of_a_program_can_augment_at_the_same_time(monkeypatch):
    # Each call may need another number of helper threads (batch sizes differ): the shared pool must
    # never be shut down under another caller.
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    work = {n: (random_batch(n=n, channels=4, height=8, width=8, seed=n), augment_matrices(n, seeded(n), size=8))
            for n in (8, 12, 16)}
    expected = {n: apply_matrices(batch, m, backend="numba") for n, (batch, m) in work.items()}
    errors = []

    def hammer(n):
        try:
            for _ in range(150):
                assert torch.equal(apply_matrices(*work[n], backend="numba"), expected[n])
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's batch size
            errors.append((n, repr(exc)))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]


def test_strided_four_band_batches_take_the_planar_kernel():
    images = random_batch(n=8, channels=4, seed=28).numpy()
    matrices = augment_matrices(8, seeded(29)).numpy()
    inverse = _pixel_inverse(matrices, SIZE, SIZE)
    exact = _exact_maps(inverse)
    # Mirrored rows (a view with a negative stride along x): each image gets the matrices' resampling of
    # its mirror image, as the planar kernel gives it for a contiguous copy.
    mirrored = images[..., ::-1]
    expected = np.empty_like(images)
    _resample(np.ascontiguousarray(mirrored), inverse, exact, expected)
    out = np.empty_like(images)
    _resample_on_cpu(mirrored, inverse, exact, out)
    np.testing.assert_array_equal(out, expected)


def test_composed_matrices_equal_a_plain_product_of_the_drawn_transforms():
    # An independent composition: each image's transforms as 3x3 numpy matrices, multiplied in order.
    n, params = 300, dict(p=0.6, translate=0.2, scale=(0.7, 1.2), shear_deg=25.0)
    draw = draw_augmentations(n, seeded(25), size=(40, 57), **params)
    uniform = torch.rand(n, 21, generator=seeded(25)).double().numpy()
    for i in range(n):
        u = uniform[i]
        turns = 1 + min(int(np.floor(u[14] * 3)), 2)
        angle = np.pi / 2 * turns  # torch.rot90 sense in (column, row): x' = y, y' = -x for one turn
        shear = np.tan(np.radians((2 * u[19:21] - 1) * params["shear_deg"]))
        stretch = params["scale"][0] + (params["scale"][1] - params["scale"][0]) * u[17:19]
        pieces = {
            "hflip": np.diag([-1.0, 1.0, 1.0]), "vflip": np.diag([1.0, -1.0, 1.0]),
            "rot90": np.array([[np.cos(angle), np.sin(angle), 0], [-np.sin(angle), np.cos(angle), 0], [0, 0, 1]]),
            "translate": np.array([[1, 0, (2 * u[15] - 1) * 0.2 * 57], [0, 1, (2 * u[16] - 1) * 0.2 * 40],
                                   [0, 0, 1]]),
            "scale": np.diag([stretch[0], stretch[1], 1.0]),
            "shear_x": np.array([[1, shear[0], 0], [0, 1, 0], [0, 0, 1.0]]),
            "shear_y": np.array([[1, 0, 0], [shear[1], 1, 0], [0, 0, 1.0]]),
        }
        chosen = [t for t in np.argsort(u[7:14], kind="stable") if u[t] < params["p"]]
        assert draw.included[i].numpy().tolist() == [bool(u[t] < params["p"]) for t in range(7)]
        assert draw.order[i].numpy().tolist() == np.argsort(u[7:14], kind="stable").tolist()
        total = np.eye(3)
        for t in chosen:
            total = pieces[TRANSFORMS[t]] @ total
        np.testing.assert_allclose(draw.matrices[i].numpy(), total[:2], rtol=0, atol=1e-12)


def test_augmentation_works_in_a_forked_child_after_the_parent_used_its_threads(monkeypatch):
    # The helper threads do not survive a fork (DataLoader workers): the child must not wait on them.
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    batch = random_batch(n=16, channels=1, seed=26)
    matrices = augment_matrices(16, seeded(27))
    expected = apply_matrices(batch, matrices, backend="numba")
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        in_child = pool.apply_async(_augment_in_child, (batch.numpy(), matrices.numpy())).get(timeout=60)
    np.testing.assert_array_equal(in_child, expected.numpy())


def _augment_in_child(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    torch.get_num_threads = lambda: 2  # the patched value does not cross the fork on every platform
    return apply_matrices(torch.from_numpy(images), torch.from_numpy(matrices), backend="numba").numpy()


def test_cpu_threads_split_the_batch_without_changing_the_result(monkeypatch):
    batch = random_batch(n=23, channels=1, seed=21)
    matrices = augment_matrices(23, seeded(22))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    alone = apply_matrices(batch, matrices, backend="numba")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert torch.equal(apply_matrices(batch, matrices, backend="numba"), alone)


def test_disabled_or_never_applied_returns_the_input_values():
    batch = random_batch()
    assert Augmenter(enabled=False)(batch) is batch
    out = Augmenter(p=0.0)(batch, generator=seeded(0))
    assert torch.equal(out, batch)


def test_same_seed_same_output_different_seed_different_output():
    batch = random_batch(n=16)
    augmenter = Augmenter()
    first = augmenter(batch, generator=seeded(11))
    assert torch.equal(first, augmenter(batch, generator=seeded(11)))
    assert not torch.equal(first, augmenter(batch, generator=seeded(12)))
    torch.manual_seed(5)  # without a generator, torch's global seed decides
    global_first = augmenter(batch)
    torch.manual_seed(5)
    assert torch.equal(global_first, augmenter(batch))


def test_each_transform_is_drawn_half_the_time_and_all_subset_sizes_occur():
    n = 6000
    draw = draw_augmentations(n, seeded(13))
    rates = draw.included.double().mean(0).numpy()
    assert np.all(np.abs(rates - 0.5) < 0.03)  # 4.6 standard deviations
    counts = np.bincount(draw.included.sum(1).numpy(), minlength=8)
    expected = n * np.array([1, 7, 21, 35, 35, 21, 7, 1]) / 128  # binomial(7, 1/2)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1)
    untouched = ~draw.included.any(1)
    is_identity = torch.all(draw.matrices == torch.eye(3, dtype=torch.float64)[:2], dim=(1, 2))
    assert untouched.any() and is_identity[untouched].all()
    # Besides no transform, only flips and rotations that undo each other give the identity.
    continuous = draw.included[:, [TRANSFORMS.index(name) for name in TRANSFORMS[3:]]].any(1)
    assert not is_identity[continuous].any() and is_identity[~continuous].float().mean() < 0.3
    first = np.bincount(draw.order[:, 0].numpy(), minlength=7) / n
    assert np.all(np.abs(first - 1 / 7) < 0.025)


def test_order_is_drawn_per_image_and_decides_the_composition():
    # The draw layout does not depend on the enabled transforms: same seed, same shifts.
    shift = augment_matrices(500, seeded(14), p=1.0, transforms=("translate",))[:, :, 2]
    draw = draw_augmentations(500, seeded(14), p=1.0, transforms=("translate", "scale"), scale=(0.8, 0.8))
    assert torch.allclose(draw.matrices[:, :, :2], 0.8 * torch.eye(2, dtype=torch.float64))
    position = {name: torch.nonzero(draw.order == TRANSFORMS.index(name))[:, 1]
                for name in ("translate", "scale")}
    shifted_first = position["translate"] < position["scale"]
    assert 200 < int(shifted_first.sum()) < 300
    expected = torch.where(shifted_first[:, None], 0.8 * shift, shift)  # a later scaling shrinks the shift
    torch.testing.assert_close(draw.matrices[:, :, 2], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_kept(dtype):
    batch = random_batch(n=3, channels=4, height=30, width=44).to(dtype)
    out = Augmenter()(batch, generator=seeded(15))
    assert out.shape == batch.shape and out.dtype == dtype and out.device == batch.device
    assert Augmenter()(batch[:0]).shape == (0, 4, 30, 44)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_stay_on_the_gpu_and_match_cpu():
    batch = random_batch(n=32, channels=4, seed=16)
    augmenter = Augmenter()
    on_gpu = augmenter(batch.cuda(), generator=seeded(17))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), augmenter(batch, generator=seeded(17)),
                               atol=TOLERANCE["torch"], rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_stay_within_the_input_range_and_zero(backend):
    batch = random_batch(n=64, channels=2, seed=18)
    out = Augmenter(backend=backend)(batch, generator=seeded(19))
    assert out.min() >= min(0.0, batch.min().item()) - 1e-5
    assert out.max() <= max(0.0, batch.max().item()) + 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_uncovered_pixels_are_zero_filled(backend):
    batch = torch.ones(16, 1, SIZE, SIZE)
    params = dict(p=1.0, transforms=("translate",))
    shift = augment_matrices(16, seeded(20), **params)[:, :, 2].numpy()
    out = Augmenter(backend=backend, **params)(batch, generator=seeded(20))[:, 0].numpy()
    for image, (tx, ty) in zip(out, shift, strict=True):
        columns = slice(0, int(np.floor(tx))) if tx > 0 else slice(SIZE + int(np.ceil(tx)), SIZE)
        rows = slice(0, int(np.floor(ty))) if ty > 0 else slice(SIZE + int(np.ceil(ty)), SIZE)
        assert np.all(image[:, columns] == 0) and np.all(image[rows, :] == 0)
        inside = image[int(max(ty, 0)) + 1 : SIZE + int(min(ty, 0)) - 1,
                       int(max(tx, 0)) + 1 : SIZE + int(min(tx, 0)) - 1]
        np.testing.assert_allclose(inside, 1.0, atol=1e-6)
        assert abs(image.sum() - (SIZE - abs(tx)) * (SIZE - abs(ty))) < 1e-2 * SIZE**2


@pytest.mark.parametrize("kwargs, message", [
    (dict(p=1.5), "p=1.5"),
    (dict(translate=-0.1), "translate=-0.1"),
    (dict(scale=(1.1, 0.75)), "scale"),
    (dict(shear_deg=95), "shear_deg=95"),
    (dict(transforms=("hflip", "twirl")), "'twirl'"),
    (dict(backend="opencl"), "'opencl'"),
])
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(LexactumError, match=message.replace("(", r"\(")):
        Augmenter(**kwargs)(random_batch(n=2))


@pytest.mark.parametrize("batch", [torch.zeros(3, SIZE, SIZE),
                                   torch.zeros(2, 1, SIZE, SIZE, dtype=torch.int64)])
def test_bad_batches_are_one_clear_error(batch):
    with pytest.raises(LexactumError, match="floating \\(N, C, H, W\\) batch"):
        Augmenter()(batch)
