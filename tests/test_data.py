"""Fashion-MNIST loading: the good path and every bad input, each with its clear error."""

import gzip
import hashlib
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from d2l_lite import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">II", magic, array.shape[0])
    if magic == 2051:
        header += struct.pack(">II", *array.shape[1:])
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_dataset(folder: Path, n_train: int = 12, n_test: int = 5) -> Path:
    """A tiny, valid IDX data set written from scratch."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / TRAIN_IMAGES, rng.integers(0, 256, (n_train, 28, 28)), 2051)
    write_idx(folder / TRAIN_LABELS, rng.integers(0, 10, n_train), 2049)
    write_idx(folder / TEST_IMAGES, rng.integers(0, 256, (n_test, 28, 28)), 2051)
    write_idx(folder / TEST_LABELS, rng.integers(0, 10, n_test), 2049)
    return folder


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_DIR, raising=False)
    return make_dataset(tmp_path / "fm")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data is not beside this checkout")
def test_shared_copy_loads_with_expected_shapes(monkeypatch):
    monkeypatch.delenv(data.ENV_DIR, raising=False)
    fm = data.load_fashion_mnist(SHARED, verbose=False)
    assert fm.train_images.shape == (60000, 28, 28) and fm.train_images.dtype == np.uint8
    assert fm.test_images.shape == (10000, 28, 28)
    assert np.bincount(fm.train_labels).tolist() == [6000] * 10
    assert np.bincount(fm.test_labels).tolist() == [1000] * 10
    assert "local IDX files" in fm.source


def test_environment_variable_names_the_directory(tiny, monkeypatch, capsys):
    monkeypatch.setenv(data.ENV_DIR, str(tiny))
    fm = data.load_fashion_mnist()
    assert fm.train_images.shape == (12, 28, 28) and fm.test_labels.shape == (5,)
    out = capsys.readouterr().out  # it says where the data came from, without
    assert f"${data.ENV_DIR}" in out and tiny.name in out  # the machine's path
    assert str(tiny) not in out


def test_argument_beats_environment_variable(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DIR, str(tmp_path / "does-not-exist"))
    assert data.load_fashion_mnist(tiny, verbose=False).train_images.shape[0] == 12


def test_subset_keeps_the_first_examples(tiny):
    fm = data.load_fashion_mnist(tiny, verbose=False)
    small = fm.subset(4, 2)
    assert small.train_images.shape == (4, 28, 28) and small.test_labels.shape == (2,)
    np.testing.assert_array_equal(small.train_labels, fm.train_labels[:4])
    # -1 would slice off the last image, 100 give all 12: both said instead
    for args, match in [((-1, 2), "-1 training images asked for, but there are 12"),
                        ((4, 100), "100 test images asked for, but there are 5"),
                        ((0, 2), "from 1 to 12"), ((4.5, 2), "4.5 training")]:
        with pytest.raises(ValueError, match=match):
            fm.subset(*args)


def test_missing_directory(tmp_path):
    with pytest.raises(data.DataError, match="does not exist.*D2L_FASHION_MNIST_DIR"):
        data.load_fashion_mnist(tmp_path / "nowhere", verbose=False)


def test_missing_file_is_named(tiny):
    (tiny / TEST_LABELS).unlink()
    with pytest.raises(data.DataError, match=f"{TEST_LABELS} is missing"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_truncated_gzip(tiny):
    path = tiny / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.DataError, match=f"{TRAIN_IMAGES} is not a complete gzip file"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_not_gzip_at_all(tiny):
    (tiny / TRAIN_LABELS).write_bytes(b"this is not gzip data")
    with pytest.raises(data.DataError, match="not a complete gzip file"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_wrong_magic(tiny):
    # Labels where images belong: magic 2049 instead of 2051.
    shutil.copy(tiny / TRAIN_LABELS, tiny / TRAIN_IMAGES)
    with pytest.raises(data.DataError, match="magic number 2049, expected 2051"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_wrong_magic_in_a_file_of_any_name(tmp_path):
    write_idx(tmp_path / "mine.gz", np.zeros(3), magic=1234)
    with pytest.raises(data.DataError, match=r"1234, expected 2049 \(labels\) or 2051"):
        data.read_idx(tmp_path / "mine.gz")


def test_wrong_count_in_header(tiny):
    raw = gzip.decompress((tiny / TEST_IMAGES).read_bytes())
    bad = raw[:4] + struct.pack(">I", 6) + raw[8:]  # header says 6, file holds 5
    (tiny / TEST_IMAGES).write_bytes(gzip.compress(bad))
    with pytest.raises(data.DataError, match="says it holds 6 items.*truncated or padded"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_wrong_image_size(tiny):
    write_idx(tiny / TEST_IMAGES, np.zeros((5, 32, 32)), 2051)
    with pytest.raises(data.DataError, match="32x32 images"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_image_label_count_mismatch(tiny):
    write_idx(tiny / TRAIN_LABELS, np.zeros(11), 2049)
    with pytest.raises(data.DataError, match="12 images but .* 11 labels"):
        data.load_fashion_mnist(tiny, verbose=False)


def test_label_out_of_range(tiny):
    write_idx(tiny / TEST_LABELS, np.array([0, 1, 2, 3, 12]), 2049)
    with pytest.raises(data.DataError, match="label 12.*0-9"):
        data.load_fashion_mnist(tiny, verbose=False)


def _serve_from(folder: Path):
    """A urlopen stand-in that serves files from ``folder`` (no network in tests)."""
    def urlopen(url, timeout=None):
        return open(folder / url.rsplit("/", 1)[1], "rb")
    return urlopen


def test_download_checks_official_md5(tiny, tmp_path, monkeypatch):
    # The tiny files are not the official ones, so their MD5 must be refused.
    monkeypatch.setattr(data.urllib.request, "urlopen", _serve_from(tiny))
    with pytest.raises(data.DataError, match="MD5 .* official Fashion-MNIST file has"):
        data.load_fashion_mnist(cache_dir=tmp_path / "cache", verbose=False)
    assert not list((tmp_path / "cache" / "fashion-mnist").glob("*.gz"))  # nothing half-kept


def test_download_accepts_matching_md5_and_caches(tiny, tmp_path, monkeypatch):
    official = {name: (hashlib.md5((tiny / name).read_bytes()).hexdigest(), *rest)
                for name, (_md5, *rest) in data.FILES.items()}
    monkeypatch.setattr(data, "FILES", official)
    monkeypatch.setattr(data.urllib.request, "urlopen", _serve_from(tiny))
    fm = data.load_fashion_mnist(cache_dir=tmp_path / "cache", verbose=False)
    assert "official download" in fm.source and fm.train_images.shape == (12, 28, 28)

    def offline(url, timeout=None):
        raise AssertionError("a cached, verified file must not be downloaded again")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    data.load_fashion_mnist(cache_dir=tmp_path / "cache", verbose=False)


def test_no_network_when_a_download_is_needed(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_DIR, raising=False)

    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError, match="Could not download .*offline.*D2L_FASHION_MNIST_DIR"):
        data.load_fashion_mnist(cache_dir=tmp_path / "cache", verbose=False)


def test_minibatches_cover_each_example_once_and_are_seeded():
    batches = list(data.minibatch_indices(10, 4, shuffle=True, seed=1, epoch=0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = list(data.minibatch_indices(10, 4, shuffle=True, seed=1, epoch=0))
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]
    other = np.concatenate(list(data.minibatch_indices(10, 4, shuffle=True, seed=1, epoch=1)))
    assert other.tolist() != np.concatenate(batches).tolist()
    assert [len(b) for b in data.minibatch_indices(10, 4, shuffle=False, drop_last=True)] == [4, 4]


def test_minibatch_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        next(data.minibatch_indices(10, 0, shuffle=False))
