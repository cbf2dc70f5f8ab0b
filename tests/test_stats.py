"""Contract tests for alexnet_tf.data.stats and tools/dataset_stats.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import preprocess, sources, stats

from conftest import REPO_ROOT

IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


def _rotation(seed):
    """A random 3x3 orthonormal matrix (columns), with the documented sign convention."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return stats.apply_sign_convention(q)


def _gaussian_images(n, size, mean, eigvec, pc_std, seed):
    """uint8 [n, size, size, 3]: i.i.d. pixels ~ N(mean, V diag(pc_std^2) V^T), rounded, clipped."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n * size * size, 3)) * np.asarray(pc_std)
    x = np.asarray(mean) + z @ np.asarray(eigvec).T
    clipped = np.mean((x < -0.5) | (x > 255.5))
    pixels = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return pixels.reshape(n, size, size, 3), clipped


def test_known_gaussian_statistics_are_recovered():
    n, size = 64, 64
    mean = np.array([128.0, 124.0, 120.0])
    pc_std = np.array([25.0, 10.0, 4.0])  # 0..255 scale, distinct eigenvalues
    eigvec = _rotation(3)
    images, clipped = _gaussian_images(n, size, mean, eigvec, pc_std, seed=0)
    assert clipped < 1e-4  # clipping is rare enough not to bias the moments
    result = stats.compute_stats(images, image_size=size, progress=False)
    pixels = n * size * size
    assert (result.count, result.pixels) == (n, pixels)

    # Rounding to integers adds uniform noise of variance 1/12 per channel (isotropic).
    cov_255 = eigvec @ np.diag(pc_std ** 2) @ eigvec.T + np.eye(3) / 12
    lam = (pc_std ** 2 + 1 / 12) / 255 ** 2  # the eigenvalues on the [0, 1] scale
    # Five standard errors: mean sqrt(var/N); Gaussian eigenvalue sqrt(2/N) lambda;
    # eigenvector tilt towards p_j sqrt(l_i l_j / N) / |l_i - l_j|.
    np.testing.assert_array_less(np.abs(result.mean_rgb - mean), 5 * np.sqrt(np.diag(cov_255) / pixels))
    np.testing.assert_array_less(np.abs(result.eigval - lam), 5 * np.sqrt(2 / pixels) * lam)
    for i in range(3):
        assert result.eigvec[:, i] @ eigvec[:, i] > 0  # same sign: the convention is applied
        for j in range(3):
            if i != j:
                tilt = np.sqrt(lam[i] * lam[j] / pixels) / abs(lam[i] - lam[j])
                assert abs(result.eigvec[:, i] @ eigvec[:, j]) < 5 * tilt
    # eigval are the covariance eigenvalues themselves (variances), not square roots:
    # the one-shot covariance of [0, 1] pixels, population-normalised.
    flat = images.reshape(-1, 3) / 255.0
    reference = np.cov(flat, rowvar=False, ddof=0)
    np.testing.assert_allclose(result.covariance, reference, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(result.eigval, np.linalg.eigvalsh(reference)[::-1], rtol=1e-10)
    np.testing.assert_allclose(result.mean_rgb, flat.mean(axis=0) * 255, rtol=1e-12)
    # The mean image is the per-pixel mean of the inputs.
    assert result.mean_image.shape == (size, size, 3) and result.mean_image.dtype == np.float32
    np.testing.assert_allclose(result.mean_image, images.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(result.mean_image.astype(np.float64).mean(axis=(0, 1)), result.mean_rgb,
                               rtol=1e-6)


@pytest.fixture(scope="module")
def photos():
    """Ten 256x256 uint8 images with photo-like, strongly correlated colour statistics."""
    images, _ = _gaussian_images(10, 256, [120, 115, 105], np.array(IMAGENET_EIGVEC),
                                 [30.0, 9.0, 4.0], seed=1)
    return images


def _assert_same(a, b):
    np.testing.assert_array_equal(a.mean_image, b.mean_image)  # exact integer sums
    np.testing.assert_array_equal(a.mean_rgb, b.mean_rgb)
    np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(a.eigval, b.eigval, rtol=1e-12)
    np.testing.assert_allclose(a.eigvec, b.eigvec, atol=1e-10)
    assert (a.count, a.pixels) == (b.count, b.pixels)


def test_streaming_equals_one_shot(photos):
    one_shot = stats.compute_stats(photos, progress=False)
    singles = stats.compute_stats(list(photos), total=len(photos), progress=False)
    sizes = [3, 1, 5, 1]
    starts = np.cumsum([0] + sizes)
    batches = stats.compute_stats((photos[s:e] for s, e in zip(starts[:-1], starts[1:])),
                                  progress=False)
    tensors = stats.compute_stats([tf.constant(image) for image in photos], progress=False)
    dataset = stats.compute_stats(tf.data.Dataset.from_tensor_slices(photos), progress=False)
    batched = stats.compute_stats(tf.data.Dataset.from_tensor_slices(photos).batch(4),
                                  progress=False)
    for other in (singles, batches, tensors, dataset, batched):
        _assert_same(one_shot, other)
    assert one_shot.count == 10 and one_shot.pixels == 10 * 256 * 256


def test_sign_convention_is_deterministic_and_documented(photos):
    imagenet = np.array(IMAGENET_EIGVEC)
    # The published ImageNet vectors already follow it, and any flips are undone.
    np.testing.assert_array_equal(stats.apply_sign_convention(imagenet), imagenet)
    for flips in ([-1, 1, 1], [1, -1, 1], [1, 1, -1], [-1, -1, -1]):
        np.testing.assert_array_equal(stats.apply_sign_convention(imagenet * flips), imagenet)
    # Documented rule: each column has a positive dot product with its opponent axis.
    axes = np.array([[-1, -1, -1], [1, 0, -1], [1, -2, 1]], float).T
    np.testing.assert_array_equal(np.sign(stats.OPPONENT_AXES), np.sign(axes))
    result = stats.compute_stats(photos, progress=False)
    assert np.all(np.sum(result.eigvec * axes, axis=0) > 0)
    # Data drawn along the ImageNet axes come back with the ImageNet signs.
    assert np.all(np.sum(result.eigvec * imagenet, axis=0) > 0.99)
    # The order of the images changes nothing.
    shuffled = stats.compute_stats(photos[np.random.default_rng(0).permutation(10)], progress=False)
    np.testing.assert_allclose(shuffled.eigvec, result.eigvec, atol=1e-10)
    # Descending, orthonormal, and a decomposition of the covariance.
    assert np.all(np.diff(result.eigval) < 0)
    np.testing.assert_allclose(result.eigvec.T @ result.eigvec, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(result.eigvec @ np.diag(result.eigval) @ result.eigvec.T,
                               result.covariance, atol=1e-14)
    # A column orthogonal to its axis falls back to "largest-magnitude component negative".
    fallback = stats.apply_sign_convention(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float).T)
    np.testing.assert_array_equal(fallback[:, 1], [0, -1, 0])


def test_save_load_round_trip_and_shape_errors(tmp_path, photos):
    result = stats.compute_stats(photos[:3], source="three test images", progress=False)
    npz_path, json_path = result.save(str(tmp_path / "sub" / "stats.npz"))
    assert json_path == str(tmp_path / "sub" / "stats.json")
    loaded = stats.load(npz_path, image_size=256)
    _assert_same(result, loaded)
    np.testing.assert_array_equal(loaded.covariance, result.covariance)
    np.testing.assert_array_equal(loaded.eigvec, result.eigvec)
    assert loaded.source == "three test images" and loaded.mean_image_is_broadcast is False
    summary = json.loads(open(json_path).read())
    assert summary["eigval"] == [float(v) for v in result.eigval]
    assert summary["count"] == 3 and summary["image_size"] == 256
    assert "variances, not square roots" in summary["eigval_convention"]
    assert summary["mean_image"] == "in the .npz only"  # the array itself is not in the json

    with np.load(npz_path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["eigvec"] = arrays["eigvec"][0]
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, **arrays)
    with pytest.raises(stats.StatsFileError, match=r"bad\.npz.*'eigvec' has shape \(3,\), "
                                                   r"expected \(3, 3\)"):
        stats.load(bad)
    arrays["eigvec"] = result.eigvec
    arrays["mean_image"] = arrays["mean_image"][:, :100]
    np.savez(bad, **arrays)
    with pytest.raises(stats.StatsFileError, match=r"'mean_image' has shape \(256, 100, 3\)"):
        stats.load(bad)
    del arrays["mean_image"]
    np.savez(bad, **arrays)
    with pytest.raises(stats.StatsFileError, match=r"missing key\(s\) \['mean_image'\]"):
        stats.load(bad)
    with pytest.raises(stats.StatsFileError, match=r"'mean_image' has shape \(256, 256, 3\), "
                                                   r"expected \(227, 227, 3\)"):
        stats.load(npz_path, image_size=227)
    with pytest.raises(ValueError, match="must end in .npz"):
        result.save(str(tmp_path / "stats.bin"))
    with pytest.raises(FileNotFoundError, match="dataset_stats.py"):
        stats.load(str(tmp_path / "absent.npz"))


def test_compute_stats_rejects_wrong_inputs():
    with pytest.raises(ValueError, match=r"shape \(256, 256, 3\).*got shape \(32, 32, 3\)"):
        stats.compute_stats([np.zeros((32, 32, 3), np.uint8)], progress=False)
    with pytest.raises(ValueError, match="dtype float32"):
        stats.compute_stats([np.zeros((8, 8, 3), np.float32)], image_size=8, progress=False)
    with pytest.raises(ValueError, match="no images"):
        stats.compute_stats([], progress=False)


def test_imagenet_defaults_and_pca_lighting(tmp_path):
    defaults = stats.imagenet_defaults()
    np.testing.assert_array_equal(defaults.mean_rgb, [123.68, 116.78, 103.94])
    np.testing.assert_array_equal(defaults.eigval, IMAGENET_EIGVAL)
    np.testing.assert_array_equal(defaults.eigvec, IMAGENET_EIGVEC)
    assert defaults.mean_image_is_broadcast and defaults.mean_image.shape == (256, 256, 3)
    np.testing.assert_array_equal(defaults.mean_image[17, 200], np.float32([123.68, 116.78, 103.94]))
    assert defaults.pca_lighting_kwargs() == {"eigval": IMAGENET_EIGVAL, "eigvec": IMAGENET_EIGVEC}
    assert stats.load(defaults.save(str(tmp_path / "imagenet.npz"))[0]).mean_image_is_broadcast

    # Fed to pca_lighting: a uniform shift along the eigenvectors whose coefficient on
    # p_i, in units of 255 * eigval_i, is alpha_i ~ N(0, 0.1); p_1 has all components
    # negative, so alpha_1 > 0 darkens every channel (by ~0.1 * 0.2175 * 255 = 5.5 levels).
    image = tf.fill([4, 4, 3], 128.0)
    eigvec, eigval = defaults.eigvec, defaults.eigval
    alphas = []
    for seed in range(300):
        shift = (preprocess.pca_lighting(image, 0.1, tf.constant([seed, 7]),
                                         **defaults.pca_lighting_kwargs()) - image).numpy()
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)
        alpha = eigvec.T @ shift[0, 0] / (255 * eigval)
        alphas.append(alpha)
        if abs(alpha[0]) > 0.05:  # the luminance term dominates the two colour terms
            assert np.all(np.sign(shift[0, 0]) == -np.sign(alpha[0]))
    alphas = np.array(alphas)
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.2)
    assert np.all(np.abs(alphas.mean(axis=0)) < 0.1 * 4 / np.sqrt(len(alphas)))


def _write_png(path, array):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def test_tool_end_to_end(tmp_path):
    rng = np.random.default_rng(5)
    shapes = {"a/0.png": (256, 256), "a/1.png": (256, 300), "a/2.png": (320, 400),
              "b/0.png": (256, 256), "b/1.png": (300, 256), "b/2.PNG": (256, 256)}
    root = tmp_path / "data"
    for name, (h, w) in shapes.items():
        base = rng.integers(0, 200, size=(h, w, 1))
        image = np.clip(base + rng.integers(0, 56, size=(h, w, 3)), 0, 255).astype(np.uint8)
        _write_png(str(root / "train" / name), image)

    def expected(paths):
        """The same statistics computed here: numpy crops of the exact PNG pixels where the
        shorter side is already 256, the package's resize where it is not."""
        from PIL import Image

        images = []
        for path in paths:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            h, w, _ = pixels.shape
            if min(h, w) == 256:
                top, left = (h - 256) // 2, (w - 256) // 2
                images.append(pixels[top:top + 256, left:left + 256])
            else:
                image = preprocess.resize_shorter_side(tf.constant(pixels), 256)
                images.append(preprocess.central_crop(image, 256))
        return stats.compute_stats(images, progress=False)

    def run(output, *extra):
        command = [sys.executable, str(REPO_ROOT / "tools" / "dataset_stats.py"),
                   f"--data_dir={root}", "--split=train", f"--output={output}",
                   "--batch_size=4", *extra]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    split = sources.ImageFolderSource.from_directory(str(root), "train")
    assert len(split) == 6
    output = tmp_path / "out" / "stats.npz"
    stdout = run(output)
    written = stats.load(str(output), image_size=256)
    _assert_same(written, expected(split.paths))
    assert "all 6 images" in written.source
    assert f"wrote {output}" in stdout and str(tmp_path / "out" / "stats.json") in stdout
    r, g, b = written.mean_rgb
    assert f"{r:.2f}, {g:.2f}, {b:.2f}" in stdout
    assert "eigval" in stdout and f"{written.eigval[0]:.4f}" in stdout

    subset = tmp_path / "subset.npz"
    run(subset, "--max_images=3", "--seed=1")
    written = stats.load(str(subset))
    chosen = stats.select_subset(6, 3, 1)
    assert len(chosen) == 3 and len(set(chosen)) == 3
    _assert_same(written, expected(split.paths[chosen]))
    assert "3 of 6 images (random subset, seed 1)" in written.source


def test_select_subset():
    np.testing.assert_array_equal(stats.select_subset(5, None, 0), np.arange(5))
    np.testing.assert_array_equal(stats.select_subset(5, 9, 0), np.arange(5))
    a = stats.select_subset(1000, 50, 3)
    np.testing.assert_array_equal(a, stats.select_subset(1000, 50, 3))
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, stats.select_subset(1000, 50, 4))


def test_tool_names_and_skips_bad_files_or_stops_naming_one(tmp_path):
    # Issue 13: one bad image used to crash the tool with a traceback that named no file.
    rng = np.random.default_rng(2)
    root = tmp_path / "data"
    for name in ("a/0.png", "a/1.png", "b/0.png"):
        _write_png(str(root / "train" / name), rng.integers(0, 256, (256, 256, 3), np.uint8))
    good = (root / "train" / "a" / "0.png").read_bytes()
    (root / "train" / "b" / "cut.png").write_bytes(good[:len(good) // 2])
    (root / "train" / "b" / "text.jpg").write_bytes(b"<html>404 Not Found</html>\n")

    def run(*extra):
        command = [sys.executable, str(REPO_ROOT / "tools" / "dataset_stats.py"),
                   f"--data_dir={root}", "--split=train", f"--output={tmp_path / 's.npz'}",
                   *extra]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=120)

    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"skipping bad image {root / 'train' / 'b' / 'cut.png'} - truncated PNG" in done.stderr
    assert f"skipping bad image {root / 'train' / 'b' / 'text.jpg'} - not a JPEG" in done.stderr
    assert "skipped 2 bad file(s)" in done.stdout
    written = stats.load(str(tmp_path / "s.npz"))
    assert written.count == 3 and "2 bad file(s) skipped" in written.source

    before = (tmp_path / "s.npz").read_bytes()
    again = run()  # the statistics written are the user's now
    assert again.returncode == 1 and "exists; give --overwrite" in again.stderr, again.stderr
    failed = run("--on_bad_record=fail", "--overwrite")
    assert failed.returncode == 1
    assert f"bad image {root / 'train' / 'b' / 'cut.png'}: truncated PNG" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert (tmp_path / "s.npz").read_bytes() == before  # a failed run replaces nothing
