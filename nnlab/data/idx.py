"""MNIST and Fashion-MNIST: the four original gzip'd IDX files, parsed from raw bytes.

IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number (two zero bytes, a
type code, the number of dimensions), one big-endian uint32 per dimension, then the data
in row-major order. Every header is checked against the file size before any data is read.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import RawDataset
from nnlab.core.errors import DataFormatError
from nnlab.data import fetch
from nnlab.data.fetch import RemoteFile

if TYPE_CHECKING:
    from nnlab.data.section import DataParams

# IDX type codes -> big-endian NumPy dtypes
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLITS = {"train": "train", "test": "t10k"}  # our split name -> the files' prefix


def parse_idx(data: bytes, name: str, ndim: int) -> NDArray:
    """The array in an IDX file's bytes; DataFormatError on a bad magic, shape or size."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataFormatError(
            f"{name}: not an IDX file (magic number {data[:4].hex() or 'missing'}, "
            "expected 0000 then a type code and the number of dimensions)"
        )
    if data[3] != ndim:
        raise DataFormatError(f"{name}: has {data[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{name}: truncated header ({len(data)} bytes)")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataFormatError(
            f"{name}: {state}: header says {shape} items ({expected:,} bytes), file has "
            f"{len(data):,} bytes; delete it and download again"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def to_idx(array: NDArray) -> bytes:
    """The IDX bytes of `array` (the inverse of `parse_idx`; used to make test files)."""
    codes = {np.dtype(dtype).newbyteorder(">"): code for code, dtype in IDX_TYPES.items()}
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    code = codes[big_endian.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + big_endian.tobytes()


def read_gzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(
            f"{path}: not a complete gzip file ({error}); delete it and download again"
        ) from None


@dataclass(frozen=True)
class IdxSource:
    """A dataset shipped as MNIST's four IDX files (train/t10k images and labels)."""

    name: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]

    def download(self, raw_dir: Path, data: DataParams) -> None:
        paths = fetch.fetch(self.files, fetch.downloads_dir(self.name), self.mirrors, data.source)
        raw_dir.mkdir(parents=True, exist_ok=True)
        for path in paths:
            fetch.copy_into(path, raw_dir)

    def load(self, raw_dir: Path, data: DataParams) -> RawDataset:
        arrays = {split: self._read_split(raw_dir, prefix) for split, prefix in SPLITS.items()}
        (images, labels), (test_images, test_labels) = arrays["train"], arrays["test"]
        return RawDataset(
            images=images, labels=labels, classes=list(self.classes),
            test_images=test_images, test_labels=test_labels,
        )

    def _read_split(
        self, raw_dir: Path, prefix: str
    ) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        image_file = raw_dir / f"{prefix}-images-idx3-ubyte.gz"
        label_file = raw_dir / f"{prefix}-labels-idx1-ubyte.gz"
        for path in (image_file, label_file):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run `dvc repro download`")
        images = parse_idx(read_gzip(image_file), image_file.name, ndim=3)
        labels = parse_idx(read_gzip(label_file), label_file.name, ndim=1)
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataFormatError(f"{self.name}: images and labels must be unsigned bytes")
        if images.shape[0] != labels.shape[0]:
            raise DataFormatError(
                f"{self.name}: {image_file.name} holds {images.shape[0]:,} images but "
                f"{label_file.name} holds {labels.shape[0]:,} labels"
            )
        if labels.size and labels.max() >= len(self.classes):
            raise DataFormatError(
                f"{label_file.name}: label {labels.max()} is out of range for "
                f"{len(self.classes)} classes"
            )
        return images[..., np.newaxis], labels.astype(np.int64)


# Both datasets ship the same four files; only their bytes differ.
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _files(*pins: tuple[str, int]) -> tuple[RemoteFile, ...]:
    """IDX_FILES with their pinned (sha256, size), in that order."""
    return tuple(RemoteFile(name, sha, size) for name, (sha, size) in zip(IDX_FILES, pins,
                                                                           strict=True))


MNIST = IdxSource(
    name="mnist",
    files=_files(
        ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422),
        ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881),
        ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877),
        ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542),
    ),
    mirrors=(
        "https://yann.lecun.com/exdb/mnist",  # the canonical host
        "https://ossci-datasets.s3.amazonaws.com/mnist",  # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist",  # TensorFlow's mirror
    ),
    classes=tuple(str(digit) for digit in range(10)),
)

FASHION_MNIST = IdxSource(
    name="fashion_mnist",
    files=_files(
        ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26_421_880),
        ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29_515),
        ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4_422_102),
        ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5_148),
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",  # the canonical host
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ),
    # As published in https://github.com/zalandoresearch/fashion-mnist#labels
    classes=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
)
