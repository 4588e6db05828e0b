"""Tests of the procedural dSprites of the reference VAE (``vaemath.reference.data``).

The full grid is only ever touched through a few batches of its lazy store; the
training / evaluation tests use sub-grids of a few hundred images and 16-32 hidden
units, so the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import torch

import vaemath
from vaemath.reference import dsprites as dsprites_module
from vaemath.reference import metrics as reference_metrics
from vaemath.reference.data import (
    DATASETS,
    DSPRITES_FACTOR_NAMES,
    DSPRITES_FACTOR_SIZES,
    DSPRITES_ORIENTATIONS,
    DSPRITES_POSITIONS,
    DSPRITES_SCALES,
    DSPRITES_SHAPES,
    DSPRITES_SMALL_LEVELS,
    DSpritesImages,
    load_dataset,
    make_dsprites,
    make_shapes,
    render_dsprites,
)
from vaemath.reference.metrics import encode_dataset, evaluate
from vaemath.reference.training import TrainConfig, train

FULL = math.prod(DSPRITES_FACTOR_SIZES)
DENSE_BYTES = FULL * 64 * 64 * 4  # what a float32 array of the full grid would take
SQUARE, ELLIPSE, HEART = range(3)
# A small sub-grid with every factor varying: 3 x 2 x 2 x 4 x 4 = 192 images.
TINY_LEVELS = ((0, 1, 2), (0, 5), (0, 20), (0, 10, 21, 31), (0, 10, 21, 31))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full():
    return load_dataset("dsprites")


@pytest.fixture(scope="module")
def small():
    return load_dataset("dsprites-small")


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(images.astype(bool)).tobytes()).hexdigest()


def _probe_rows() -> np.ndarray:
    """A fixed spread of grid rows: every shape, scale, a few orientations and positions."""
    grid = np.indices((3, 6, 5, 3, 3)).reshape(5, -1).T
    levels = [np.arange(3), np.arange(6), np.array([0, 7, 13, 26, 39]), [0, 15, 31], [0, 15, 31]]
    return np.stack([np.asarray(v)[grid[:, k]] for k, v in enumerate(levels)], axis=1)


def _centroid(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(image)
    return float(cols.mean() + 0.5), float(rows.mean() + 0.5)


def _centre(pos_x: int, pos_y: int) -> tuple[float, float]:
    """Where the documented mapping puts a shape's centre (px): 12 + 40 v."""
    return 12.0 + 40.0 * DSPRITES_POSITIONS[pos_x], 12.0 + 40.0 * DSPRITES_POSITIONS[pos_y]


# -- the grid ----------------------------------------------------------------------------


class TestGrid:
    def test_factor_values_are_dsprites(self):
        assert DSPRITES_SHAPES == ("square", "ellipse", "heart")
        assert DSPRITES_FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
        assert DSPRITES_FACTOR_SIZES == (3, 6, 40, 32, 32)
        assert FULL == 737_280
        np.testing.assert_array_equal(DSPRITES_SCALES, np.linspace(0.5, 1.0, 6))
        np.testing.assert_array_equal(DSPRITES_POSITIONS, np.linspace(0.0, 1.0, 32))
        # [0, 2 pi] inclusive, as in dSprites' latents_values: first and last coincide.
        assert DSPRITES_ORIENTATIONS.shape == (40,)
        assert DSPRITES_ORIENTATIONS[0] == 0.0
        assert DSPRITES_ORIENTATIONS[-1] == 2.0 * np.pi
        with pytest.raises(ValueError, match="read-only"):
            DSPRITES_SCALES[0] = 2.0

    def test_full_grid_size_and_order(self, full):
        assert full.name == "dsprites"
        assert len(full) == FULL
        assert full.image_shape == (64, 64)
        assert full.factor_names == DSPRITES_FACTOR_NAMES
        assert full.factor_sizes == DSPRITES_FACTOR_SIZES
        assert full.factors.dtype == np.int64
        # Row-major over (shape, scale, orientation, pos_x, pos_y): dSprites'
        # latents_classes order, shape slowest and pos_y fastest.
        expected = np.indices(DSPRITES_FACTOR_SIZES).reshape(5, -1).T
        np.testing.assert_array_equal(full.factors, expected)
        np.testing.assert_array_equal(full.factors[1], [0, 0, 0, 0, 1])
        np.testing.assert_array_equal(full.factors[32], [0, 0, 0, 1, 0])
        assert full.info["family"] == "dsprites"

    def test_names(self):
        assert DATASETS[0] == "dsprites-small"
        assert {"dsprites", "dsprites-small", "shapes", "digits"} <= set(DATASETS)
        assert TrainConfig().dataset == "dsprites-small"
        with pytest.raises(ValueError, match="unknown dataset"):
            load_dataset("dsprites-large")

    @pytest.mark.parametrize(
        "levels",
        [
            pytest.param(((0,), (0,), (0,), (0,)), id="four factors"),
            pytest.param(((0, 3), (0,), (0,), (0,), (0,)), id="shape 3 of 0..2"),
            pytest.param(((1, 0), (0,), (0,), (0,), (0,)), id="not increasing"),
            pytest.param(((), (0,), (0,), (0,), (0,)), id="empty"),
        ],
    )
    def test_bad_levels(self, levels):
        with pytest.raises(ValueError, match="levels"):
            make_dsprites(levels)


class TestSmallSubset:
    def test_levels(self):
        assert len(DSPRITES_SMALL_LEVELS) == 5
        for values, size in zip(DSPRITES_SMALL_LEVELS, DSPRITES_FACTOR_SIZES, strict=True):
            assert len(values) > 1
            assert list(values) == sorted(set(values))
            assert values[0] >= 0
            assert values[-1] < size
        # Both scale extremes, positions edge to edge, every shape; no orientation
        # duplicated through 0 == 2 pi.
        assert DSPRITES_SMALL_LEVELS[0] == (0, 1, 2)
        assert DSPRITES_SMALL_LEVELS[1][::2] == (0, 5)
        assert DSPRITES_SMALL_LEVELS[3][:: len(DSPRITES_SMALL_LEVELS[3]) - 1] == (0, 31)
        assert not {0, 39} <= set(DSPRITES_SMALL_LEVELS[2])

    def test_labels_are_full_grid_indices(self, small):
        assert small.name == "dsprites-small"
        assert len(small) == math.prod(len(v) for v in DSPRITES_SMALL_LEVELS)
        assert small.factor_sizes == DSPRITES_FACTOR_SIZES
        for k, values in enumerate(DSPRITES_SMALL_LEVELS):
            assert np.unique(small.factors[:, k]).tolist() == list(values)
        # Every combination once, in the full grid's order.
        flat = np.ravel_multi_index(tuple(small.factors.T), DSPRITES_FACTOR_SIZES)
        assert np.all(np.diff(flat) > 0)
        assert small.info["levels"] == [list(v) for v in DSPRITES_SMALL_LEVELS]

    def test_images_are_the_full_grids(self, small, full):
        rows = np.random.default_rng(0).choice(len(small), 200, replace=False)
        flat = np.ravel_multi_index(tuple(small.factors[rows].T), DSPRITES_FACTOR_SIZES)
        assert isinstance(small.images, np.ndarray)
        assert small.images.dtype == np.float32
        np.testing.assert_array_equal(small.images[rows], full.batch(flat))


# -- rendering ------------------------------------------------------------------------------


class TestRender:
    def test_deterministic(self):
        rows = _probe_rows()
        first, second = render_dsprites(rows), render_dsprites(rows[::-1])[::-1]
        assert _digest(first) == _digest(second)  # order and chunking do not matter
        np.testing.assert_array_equal(first[7], render_dsprites(rows[7:8])[0])

    @pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART], ids=DSPRITES_SHAPES)
    def test_each_factor_changes_the_image(self, shape):
        base = np.array([shape, 3, 4, 12, 19])
        image = render_dsprites(base[None])[0]
        for k in range(5):
            for step in (-1, 1):
                other = base.copy()
                other[k] = (other[k] + step) % DSPRITES_FACTOR_SIZES[k]
                assert not np.array_equal(render_dsprites(other[None])[0], image), (k, step)

    def test_regression_guard(self):
        # Regression guard, NOT ground truth: the digest this renderer gave when it
        # was written. A change means the images changed; if the geometry was
        # changed on purpose, update the digest in the same commit.
        expected = "3c47e64e7c3a138df0d1f65bcd30a524"
        digest = _digest(render_dsprites(_probe_rows()))[: len(expected)]
        assert digest == expected

    def test_binary_nonempty_and_inside_the_frame(self, small):
        grid = np.indices((3, 1, 40, 2, 2)).reshape(5, -1).T
        grid[:, 1] = 5  # largest scale
        grid[:, 3:] *= 31  # positions 0 and 31: the extremes
        images = render_dsprites(grid)
        assert images.dtype == np.bool_
        assert images.shape == (grid.shape[0], 64, 64)
        assert images.sum((1, 2)).min() > 100
        border = np.ones((64, 64), dtype=bool)
        border[1:-1, 1:-1] = False
        assert not images[:, border].any()  # one clear pixel all round
        as_float = small.images[:64]
        assert set(np.unique(as_float).tolist()) == {0.0, 1.0}

    def test_first_and_last_orientation_coincide(self):
        rows = np.array([[s, 3, o, 7, 20] for s in range(3) for o in (0, 39)])
        images = render_dsprites(rows)
        for s in range(3):
            np.testing.assert_array_equal(images[2 * s], images[2 * s + 1])
            assert not np.array_equal(
                images[2 * s], render_dsprites(rows[[2 * s]] + [0, 0, 1, 0, 0])[0]
            )

    def test_factors_drive_the_pixels(self):
        # Scale grows the area; positions move the centroid right (x) and down (y),
        # to where the documented mapping puts it.
        for shape in range(3):
            areas = render_dsprites(np.array([[shape, k, 4, 16, 16] for k in range(6)])).sum((1, 2))
            assert np.all(np.diff(areas) > 0)
            for px, py in ((0, 0), (31, 0), (0, 31), (13, 22)):
                for orientation in (0, 9, 23):
                    image = render_dsprites(np.array([[shape, 5, orientation, px, py]]))[0]
                    cx, cy = _centroid(image)
                    ex, ey = _centre(px, py)
                    # the centre of rotation is each shape's centroid (the heart's
                    # from its closed form), up to rasterisation
                    assert abs(cx - ex) < 0.35
                    assert abs(cy - ey) < 0.35

    def test_shapes_differ_and_fit_their_radius(self):
        images = render_dsprites(np.array([[s, 5, 0, 16, 16] for s in range(3)]))
        assert not np.array_equal(images[0], images[1])
        assert not np.array_equal(images[1], images[2])
        ex, ey = _centre(16, 16)
        rows, cols = np.indices((64, 64)) + 0.5
        for image in images:
            # The farthest lit pixel centre is within R = 11 px of the centre.
            distance = np.hypot(cols[image] - ex, rows[image] - ey)
            assert 10.0 < distance.max() <= 11.0

    @staticmethod
    def _third_moments(image: np.ndarray) -> float:
        """Largest normalised third central moment (0 for a centrally symmetric shape)."""
        rows, cols = np.nonzero(image)
        x, y = cols - cols.mean(), rows - rows.mean()
        scale = np.mean(x * x + y * y) ** 1.5
        moments = [np.mean(x**3), np.mean(x * x * y), np.mean(x * y * y), np.mean(y**3)]
        return float(np.max(np.abs(moments)) / scale)

    def test_heart_is_not_symmetric_under_a_half_turn_but_the_ellipse_is(self):
        # Exactly, on the shapes' inside-tests: (p, q) -> (-p, -q).
        p, q = np.meshgrid(np.linspace(-1.05, 1.05, 211), np.linspace(-1.05, 1.05, 211))
        for shape in (SQUARE, ELLIPSE):
            np.testing.assert_array_equal(
                dsprites_module._inside(shape, p, q), dsprites_module._inside(shape, -p, -q)
            )
        heart = dsprites_module._inside(HEART, p, q)
        assert np.mean(heart != dsprites_module._inside(HEART, -p, -q)) > 0.1
        # And on rendered images, up to rasterisation.
        for orientation in (0, 6, 17, 30):
            for scale in (3, 5):
                ellipse, heart, square = render_dsprites(
                    np.array([[s, scale, orientation, 16, 16] for s in (ELLIPSE, HEART, SQUARE)])
                )
                assert self._third_moments(ellipse) < 0.03
                assert self._third_moments(square) < 0.03
                assert self._third_moments(heart) > 0.07

    def test_orientation_turns_counter_clockwise(self):
        # The heart's point is where its bounding box sticks out beyond its centroid
        # (1.8 px at scale 1): down at orientation 0, then turning counter-clockwise
        # as seen: right at index 10 (92 degrees), up at 20, left at 29 (268 degrees).
        expected = {0: (0, 1), 10: (1, 0), 20: (0, -1), 29: (-1, 0)}
        images = render_dsprites(np.array([[HEART, 5, o, 16, 16] for o in expected]))
        for image, direction in zip(images, expected.values(), strict=True):
            rows, cols = np.nonzero(image)
            box = np.array([cols.min() + cols.max() + 1, rows.min() + rows.max() + 1]) / 2
            tip = box - np.array(_centroid(image))
            assert np.linalg.norm(tip) > 1.0
            assert float(tip @ np.array(direction)) / np.linalg.norm(tip) > 0.95

    def test_bad_factors(self):
        with pytest.raises(ValueError, match=r"\(B, 5\)"):
            render_dsprites(np.zeros((3, 4), dtype=np.int64))


# -- the lazy store ---------------------------------------------------------------------------


class TestLazyImages:
    def test_full_grid_is_lazy_and_bounded(self, full):
        assert isinstance(full.images, DSpritesImages)
        assert full.images.shape == (FULL, 64, 64)
        assert len(full.images) == FULL
        held = full.images.nbytes
        assert held < 2**30  # the bit-packed cache and the labels
        assert held < DENSE_BYTES / 25

    def test_batches_read_without_materialising(self):
        data = load_dataset("dsprites")  # a fresh cache
        images = data.images
        assert images.rendered == 0
        rng = np.random.default_rng(1)
        before = images.nbytes
        for _ in range(3):
            rows = rng.choice(FULL, 64, replace=False)
            batch = data.batch(rows)
            assert batch.shape == (64, 64, 64)
            assert batch.dtype == np.float32
            np.testing.assert_array_equal(batch, render_dsprites(data.factors[rows]))
        assert images.rendered <= 3 * 64
        assert images.nbytes == before
        # The second read comes from the cache and is the same.
        np.testing.assert_array_equal(data.batch(rows), batch)
        assert images.rendered <= 3 * 64

    def test_indexing(self, full):
        images = full.images
        np.testing.assert_array_equal(images[-1], images[[FULL - 1]][0])
        np.testing.assert_array_equal(images[10:14], images[np.arange(10, 14)])
        assert images[5].shape == (64, 64)
        assert images[np.array([], dtype=np.int64)].shape == (0, 64, 64)
        with pytest.raises(IndexError):
            images[[FULL]]
        with pytest.raises(IndexError):
            images[np.array([0.5])]

    def test_without_cache(self):
        rows = _probe_rows()[:40]
        store = DSpritesImages(rows, cache=False)
        np.testing.assert_array_equal(store.batch(slice(None)), render_dsprites(rows))
        assert store.rendered == 0
        assert store.nbytes == rows.astype(np.int64).nbytes

    def test_mask_index(self):
        store = DSpritesImages(_probe_rows()[:10])
        mask = np.zeros(10, dtype=bool)
        mask[[2, 7]] = True
        np.testing.assert_array_equal(store[mask], store[[2, 7]])
        with pytest.raises(IndexError):
            store[np.ones(3, dtype=bool)]


# -- training and evaluation read by batch ----------------------------------------------------


def _tiny(lazy: bool):
    data = make_dsprites(TINY_LEVELS, lazy=lazy)
    assert isinstance(data.images, DSpritesImages) == lazy
    return data


def _fit(data, objective="elbo", epochs=2):
    config = TrainConfig(
        dataset="dsprites-small", objective=objective, epochs=epochs, hidden=16, latent_dim=4
    )
    with tempfile.TemporaryDirectory() as folder:
        return train(config, Path(folder), progress=False, dataset=data)


class TestTrainAndEvaluate:
    def test_lazy_and_dense_train_alike(self):
        lazy, dense = _tiny(True), _tiny(False)
        _, lazy_history, _ = _fit(lazy)
        _, dense_history, _ = _fit(dense)
        for a, b in zip(lazy_history, dense_history, strict=True):
            assert {k: v for k, v in a.items() if k != "seconds"} == {
                k: v for k, v in b.items() if k != "seconds"
            }

    def test_encode_dataset_reads_batches(self):
        data = _tiny(True)
        model, _, _ = _fit(data, epochs=1)
        mu, logvar = encode_dataset(model, data, batch_size=50)
        ref_mu, ref_logvar = encode_dataset(model, torch.from_numpy(data.batch(slice(None))))
        torch.testing.assert_close(mu, ref_mu)
        torch.testing.assert_close(logvar, ref_logvar)

    def test_dsprites_mig_leaves_shape_out(self):
        data = _tiny(True)
        model, _, _ = _fit(data, epochs=2)
        metrics = evaluate(model, data, prior_mu=0.0, prior_scale=1.0, progress=False)
        for key in (
            "elbo", "recon", "kl", "kl_per_unit", "mi", "tc", "dimkl", "mmd2", "mmd2_sampled",
            "active_units", "mig", "mig_per_factor", "mig_histogram", "mi_matrix",
            "factor_entropy", "mig_with_shape", "mig_factors", "decomposition_points",
        ):  # fmt: skip
            assert key in metrics
        assert metrics["mig_factors"] == ["scale", "orientation", "pos_x", "pos_y"]
        assert list(metrics["mig_per_factor"]) == list(DSPRITES_FACTOR_NAMES)
        assert metrics["decomposition_points"] == len(data)
        # Chen et al.'s protocol, run directly on the four factors.
        with torch.no_grad():
            torch.manual_seed(0)
            mu, logvar = encode_dataset(model, data)
        four = vaemath.mutual_information_gap(mu, logvar, data.factors[:, 1:], seed=0)
        five = vaemath.mutual_information_gap(mu, logvar, data.factors, seed=0)
        assert metrics["mig"] == pytest.approx(float(four.score), rel=1e-5, abs=1e-7)
        assert metrics["mig_with_shape"] == pytest.approx(float(five.score), rel=1e-5, abs=1e-7)
        gaps = list(metrics["mig_per_factor"].values())
        assert metrics["mig"] == pytest.approx(float(np.mean(gaps[1:])))
        assert np.array(metrics["mi_matrix"]).shape == (5, 4)

    def test_other_datasets_use_every_factor(self):
        data = make_shapes(size=16, n_scales=2, n_positions=4)
        model, _, _ = _fit(data, epochs=1)
        metrics = evaluate(model, data, prior_mu=0.0, prior_scale=1.0, progress=False)
        assert metrics["mig_factors"] == list(data.factor_names)
        assert metrics["mig"] == pytest.approx(metrics["mig_with_shape"])

    def test_large_datasets_bound_the_pairwise_terms(self, monkeypatch):
        data = _tiny(True)
        model, _, _ = _fit(data, epochs=1)
        monkeypatch.setattr(reference_metrics, "PAIRWISE_LIMIT", 100)
        monkeypatch.setattr(reference_metrics, "PAIRWISE_POINTS", 64)
        monkeypatch.setattr(reference_metrics, "MIG_QUERIES", 150)
        seen = []
        metrics = evaluate(
            model,
            data,
            prior_mu=0.0,
            prior_scale=1.0,
            progress=lambda done, total: seen.append((done, total)),
        )
        assert metrics["decomposition_points"] == metrics["mmd_points"] == 64
        assert metrics["mig_queries"] == 150
        assert all(math.isfinite(metrics[k]) for k in ("mi", "tc", "dimkl", "mmd2", "mig"))
        # Progress is reported in images of the whole dataset.
        assert seen[-1] == (len(data), len(data))
