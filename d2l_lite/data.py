"""Fashion-MNIST as NumPy arrays, from ``data_dir=...``, else ``D2L_FASHION_MNIST_DIR``,
else the official files downloaded once into ``D2L_DATA_CACHE`` (default
``~/.cache/d2l_lite``) and checked by MD5. A local directory may hold another split
(``shared/data`` does), so only its format is validated. The loader says which source it
used and never falls back from one to another on its own."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from . import tables

OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ENV_DIR = "D2L_FASHION_MNIST_DIR"
ENV_CACHE = "D2L_DATA_CACHE"

#: file name -> (official MD5, IDX magic, expected count, what it holds)
FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 2051, 60000, "train images"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 2049, 60000, "train labels"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 2051, 10000, "test images"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 2049, 10000, "test labels"),
}

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_HELP = (f"Pass data_dir=... to load_fashion_mnist, or set {ENV_DIR} to a directory "
         f"holding the four Fashion-MNIST IDX files ({', '.join(FILES)}).")


class DataError(RuntimeError):
    """Fashion-MNIST could not be found, downloaded or read."""


@dataclass(frozen=True)
class FashionMNIST:
    """The data set as uint8 arrays: images ``(N, 28, 28)``, labels ``(N,)``."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def subset(self, num_train: int, num_test: int) -> "FashionMNIST":
        """The first ``num_train`` / ``num_test`` examples (for small-scale runs)."""
        for n, have, what in ((num_train, len(self.train_images), "training"),
                              (num_test, len(self.test_images), "test")):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= have:
                raise ValueError(f"subset: {n!r} {what} images asked for, but there are "
                                 f"{have:,}: ask for a whole number from 1 to {have:,}")
        return FashionMNIST(self.train_images[:num_train], self.train_labels[:num_train],
                            self.test_images[:num_test], self.test_labels[:num_test],
                            f"{self.source} (subset {num_train}/{num_test})")

    def __repr__(self) -> str:  # wrapped to the book's column, shapes kept whole
        return tables.fit(f"FashionMNIST(train={self.train_images.shape}, "
                          f"test={self.test_images.shape}, source={self.source!r})")


def load_fashion_mnist(data_dir: Union[str, Path, None] = None, *,
                       cache_dir: Union[str, Path, None] = None, base_url: str = OFFICIAL_URL,
                       verbose: bool = True) -> FashionMNIST:
    """Load Fashion-MNIST; a :class:`DataError` names the file and what to do."""
    if data_dir is None and os.environ.get(ENV_DIR):
        data_dir = os.environ[ENV_DIR]
        origin = f"{ENV_DIR}={data_dir}"
    else:
        origin = f"data_dir={data_dir}"
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"Fashion-MNIST directory {folder} (from {origin}) does not "
                            f"exist or is not a directory. {_HELP}")
        # Named without the machine's path, which committed outputs would show.
        source = (f"local IDX files (${ENV_DIR}, .../{folder.name})" if origin.startswith(ENV_DIR)
                  else f"local IDX files in .../{folder.name}")
    else:
        folder = Path(cache_dir or os.environ.get(ENV_CACHE)
                      or Path.home() / ".cache" / "d2l_lite").expanduser() / "fashion-mnist"
        _download_missing(folder, base_url)
        cached = str(folder).replace(str(Path.home()), "~", 1)
        source = f"official download ({base_url}), cached in {cached}"
    # FILES lists train images, train labels, test images, test labels, in field order.
    data = FashionMNIST(*(read_idx(folder / name) for name in FILES), source)
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("t10k", data.test_images, data.test_labels)):
        if len(images) != len(labels):
            raise DataError(f"{folder}: {split}-images holds {len(images)} images but "
                            f"{split}-labels holds {len(labels)} labels; the two files "
                            f"must come from the same copy of the data set.")
        if len(images) == 0:
            raise DataError(f"{folder}: {split}-images holds no images.")
    if verbose:
        print(f"Fashion-MNIST: {len(data.train_labels):,} train and "
              f"{len(data.test_labels):,} test images,\nfrom {source}")
    return data


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read one gzipped IDX file, checking its magic number, shape and size."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing. {_HELP}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a complete gzip file ({err}). It may be "
                        f"truncated or corrupt: delete it and download it again, or "
                        f"point {ENV_DIR} at an intact copy.") from err
    if len(raw) < 8:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    magic, count = struct.unpack(">II", raw[:8])
    expected_magic = FILES[path.name][1] if path.name in FILES else None
    if magic not in (2049, 2051) or expected_magic not in (None, magic):
        expected = ("2049 (labels) or 2051 (images)" if expected_magic is None else
                    f"{expected_magic} ({'labels' if expected_magic == 2049 else 'images'})")
        raise DataError(f"{path} has IDX magic number {magic}, expected {expected}. Is it "
                        f"the right file, and gunzipped only once?")
    if magic == 2051:
        if len(raw) < 16:
            raise DataError(f"{path} is too short for an IDX image header.")
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (28, 28):
            raise DataError(f"{path} holds {rows}x{cols} images; Fashion-MNIST images are 28x28.")
        header, shape = 16, (count, rows, cols)
    else:
        header, shape = 8, (count,)
    expected_bytes = header + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataError(f"{path} says it holds {count} items ({expected_bytes} bytes) but "
                        f"has {len(raw)} bytes: the file is truncated or padded.")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if magic == 2049 and array.size and array.max() > 9:
        raise DataError(f"{path} has label {int(array.max())}; Fashion-MNIST labels are 0-9.")
    return array


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_missing(folder: Path, base_url: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (md5, *_rest) in FILES.items():
        target = folder / name
        if target.is_file() and _md5(target) == md5:
            continue
        url = base_url + name
        print(f"Downloading {url}")
        tmp = None
        try:
            with urllib.request.urlopen(url, timeout=60) as response, \
                    tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
        except (urllib.error.URLError, OSError) as err:
            if tmp is not None:  # a partial download
                os.unlink(tmp.name)
            raise DataError(f"Could not download {url} ({err}). Are you offline? "
                            f"{_HELP}") from err
        got = _md5(Path(tmp.name))
        if got != md5:
            os.unlink(tmp.name)
            raise DataError(f"{url} downloaded with MD5 {got}, but the official "
                            f"Fashion-MNIST file has {md5}. The download was corrupted "
                            f"or the server changed; try again, or {_HELP}")
        os.replace(tmp.name, target)


def minibatch_indices(num_examples: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                      epoch: int = 0, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Index arrays for one epoch; shuffling is seeded by ``(seed, epoch)``, so every
    framework sees the same order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = (np.random.default_rng([seed, epoch]).permutation(num_examples)
             if shuffle else np.arange(num_examples))
    stop = num_examples - num_examples % batch_size if drop_last else num_examples
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def pixel_scale(dtype) -> float:
    """What every framework's ``prepare_batch`` divides pixels of ``dtype`` by:
    255 for the data set's uint8 pixels (0..255); 1 for float ones, taken to
    be in [0, 1] already (PyTorch's data-parallel page puts a NaN in a float
    copy); any other dtype is refused, since its range is unknown."""
    name = str(dtype).removeprefix("torch.")  # torch.uint8
    if isinstance(dtype, (type, np.dtype)) or hasattr(dtype, "as_numpy_dtype"):
        # NumPy's and JAX's dtypes, MXNet's (a NumPy type), TensorFlow's
        name = np.dtype(getattr(dtype, "as_numpy_dtype", dtype)).name
    if name == "uint8":
        return 255.0
    if name in ("float16", "bfloat16", "float32", "float64"):
        return 1.0
    raise ValueError(f"prepare_batch takes uint8 pixels (0..255), as load_fashion_mnist "
                     f"returns them, or floats in [0, 1]; got {name}")
