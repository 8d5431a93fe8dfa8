"""Dataset sources on synthetic files in the exact original formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nnlab.core.errors import DataFormatError
from nnlab.core.layout import Layout
from nnlab.data import cifar10, fetch, image_folder, ingest, planar
from nnlab.data import points as encoding
from nnlab.data.fetch import RemoteFile
from nnlab.data.idx import FASHION_MNIST, MNIST, IdxSource, parse_idx, read_gzip, to_idx
from nnlab.data.section import DATASETS, PLANAR_SHAPES
from tests.support.helpers import data_section, make_image_folder, png, project_params
from tests.support.loopback import Loopback, loopback_server


@pytest.fixture
def server() -> Iterator[Loopback]:
    with loopback_server() as state:
        yield state


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the project root: downloads land in tmp_path/data/downloads."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return tmp_path


def _remote(name: str, body: bytes) -> RemoteFile:
    return RemoteFile(name, hashlib.sha256(body).hexdigest(), len(body))


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------


def _idx_files(n_train: int, n_test: int) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(to_idx(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(to_idx(labels))
    return files


def test_mnist_downloads_from_loopback_and_converts(
    server: Loopback, root: Path
) -> None:
    files = _idx_files(30, 20)
    for name, body in files.items():
        server.serve(f"/exdb/mnist/{name}", body)
    # The real source, with the pinned hashes swapped for those of the synthetic files.
    source = IdxSource(
        name="mnist", files=tuple(_remote(name, body) for name, body in files.items()),
        mirrors=(server.url + "/exdb/mnist",), classes=MNIST.classes,
    )
    raw = root / "data" / "raw"
    source.download(raw, data_section())
    assert sorted(path.name for path in raw.iterdir()) == sorted(files)
    assert (root / "data" / "downloads" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    dataset = source.load(raw, data_section())
    expected = parse_idx(gzip.decompress(files["train-images-idx3-ubyte.gz"]), "x", 3)
    assert dataset.images.shape == (30, 28, 28, 1) and dataset.images.dtype == np.uint8
    assert np.array_equal(dataset.images[..., 0], expected)
    assert dataset.labels.dtype == np.int64 and dataset.labels[:12].tolist() == [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1
    ]
    assert dataset.test_images is not None and dataset.test_images.shape == (20, 28, 28, 1)
    assert dataset.classes == [str(digit) for digit in range(10)]


def test_every_dataset_name_has_a_source_and_planar_shape_its_classes() -> None:
    assert tuple(ingest.SOURCES) == DATASETS
    assert tuple(planar.CLASSES) == PLANAR_SHAPES
    with pytest.raises(ValueError, match="data.dataset='imagenet': unknown dataset; choose"):
        ingest.get_dataset("imagenet")


def test_pinned_sources_are_the_published_ones() -> None:
    assert MNIST.mirrors[0].startswith("https://yann.lecun.com/")
    assert FASHION_MNIST.classes[0] == "T-shirt/top" and FASHION_MNIST.classes[9] == "Ankle boot"
    for source in (MNIST, FASHION_MNIST):
        assert [file.name for file in source.files] == [
            "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        ]
        assert all(re.fullmatch(r"[0-9a-f]{64}", file.sha256) for file in source.files)
    assert MNIST.files[0].sha256 == (  # as published for train-images-idx3-ubyte.gz
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609")
    assert cifar10.ARCHIVE.size == 170_052_171 and cifar10.CLASSES[0] == "airplane"


# FIPS 180-2's published SHA-256 test vectors: the checksum that guards every download
# must give exactly these.
@pytest.mark.parametrize(("content", "digest"), [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
])
def test_sha256_of_known_fixtures_is_exact(tmp_path: Path, content: bytes, digest: str) -> None:
    path = tmp_path / "fixture.bin"
    path.write_bytes(content)
    assert fetch.sha256(path) == digest


def test_truncated_idx_is_a_clear_error() -> None:
    data = to_idx(np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"x: truncated: header says \(5, 28, 28\) items"):
        parse_idx(data[:-10], "x", 3)
    with pytest.raises(DataFormatError, match="trailing bytes"):
        parse_idx(data + b"\0", "x", 3)


def test_wrong_magic_or_dimensions_are_clear_errors() -> None:
    data = to_idx(np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="x: not an IDX file \\(magic number 1f8b"):
        parse_idx(b"\x1f\x8b" + data[2:], "x", 3)  # a gzip file that was not unpacked
    with pytest.raises(DataFormatError, match="has 3 dimensions, expected 1"):
        parse_idx(data, "x", 1)


def test_truncated_gzip_and_mismatched_counts(root: Path) -> None:
    files = _idx_files(10, 10)
    raw = root / "raw"
    raw.mkdir()
    for name, body in files.items():
        (raw / name).write_bytes(body)
    labels = raw / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(to_idx(np.zeros(9, dtype=np.uint8))))
    with pytest.raises(DataFormatError, match="holds 10 images but .* holds 9 labels"):
        MNIST.load(raw, data_section())
    labels.write_bytes(files["train-labels-idx1-ubyte.gz"][:-5])
    with pytest.raises(DataFormatError, match="not a complete gzip file"):
        read_gzip(labels)


# --- CIFAR-10 binary ------------------------------------------------------------------


def _cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_cifar10_binary_downloads_extracts_and_converts(
    server: Loopback, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = {name: _cifar_images(7, seed) for seed, name in
               enumerate([*cifar10.TRAIN_FILES, *cifar10.TEST_FILES])}
    archive = _tarball({
        f"{cifar10.FOLDER}/batches.meta.txt": "\n".join(cifar10.CLASSES).encode(),
        **{f"{cifar10.FOLDER}/{name}": cifar10.to_records(*arrays)
           for name, arrays in batches.items()},
    })
    server.serve(f"/~kriz/{cifar10.ARCHIVE.name}", archive)
    monkeypatch.setattr(cifar10, "ARCHIVE", _remote(cifar10.ARCHIVE.name, archive))
    monkeypatch.setattr(cifar10, "MIRRORS", (server.url + "/~kriz",))
    raw = root / "data" / "raw"
    cifar10.download(raw, data_section())
    dataset = cifar10.load(raw, data_section())
    assert dataset.images.shape == (35, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert np.array_equal(dataset.images[:7], batches["data_batch_1.bin"][0])
    assert np.array_equal(dataset.images[28:], batches["data_batch_5.bin"][0])
    assert dataset.labels.tolist() == [index % 10 for index in range(7)] * 5
    assert dataset.test_images is not None
    assert np.array_equal(dataset.test_images, batches["test_batch.bin"][0])
    assert dataset.classes == cifar10.CLASSES


def test_cifar10_record_layout_is_chw_to_hwc(tmp_path: Path) -> None:
    record = np.zeros(cifar10.RECORD, dtype=np.uint8)
    record[0] = 3  # label: cat
    record[1 + 0 * 1024 + 0 * 32 + 5] = 200  # red plane, row 0, column 5
    record[1 + 2 * 1024 + 31 * 32 + 0] = 100  # blue plane, row 31, column 0
    (tmp_path / "b.bin").write_bytes(record.tobytes())
    images, labels = cifar10.read_batches([tmp_path / "b.bin"])
    assert labels.tolist() == [3]
    assert images[0, 0, 5].tolist() == [200, 0, 0] and images[0, 31, 0].tolist() == [0, 0, 100]
    assert int(images.sum()) == 300


def test_cifar10_partial_record_is_a_clear_error(tmp_path: Path) -> None:
    images, labels = _cifar_images(2, 0)
    (tmp_path / "b.bin").write_bytes(cifar10.to_records(images, labels)[:-1])
    with pytest.raises(DataFormatError, match="6,145 bytes is not a whole number of 3,073-byte"):
        cifar10.read_batches([tmp_path / "b.bin"])


def test_tar_member_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tarball({"ok/data.bin": b"1", "../escaped.txt": b"pwned"}))
    target = tmp_path / "deep" / "raw"
    with pytest.raises(DataFormatError, match=r"refusing member '\.\./escaped\.txt'"):
        fetch.safe_extract(archive, target)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert list((tmp_path / "deep").iterdir()) == []  # nothing half-extracted either


def test_tar_with_a_symlink_or_truncated_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("raw/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DataFormatError, match="refusing member 'raw/passwd'"):
        fetch.safe_extract(archive, tmp_path / "out")
    archive.write_bytes(_tarball({"a.bin": np.random.default_rng(0).bytes(100_000)})[:5000])
    with pytest.raises(DataFormatError, match="not a readable tar archive"):
        fetch.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- image folders --------------------------------------------------------------------


def test_image_folder_skips_unreadable_files_and_empty_classes(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "pets")
    data = data_section(dataset="image_folder", source=str(folder), image_size=16)
    image_folder.download(tmp_path / "raw", data)
    dataset = image_folder.load(tmp_path / "raw", data)
    assert dataset.classes == ["cat", "dog"]
    assert dataset.images.shape == (6, 16, 16, 3) and dataset.images.dtype == np.uint8
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset.images[0, 8, 8].tolist() == [250, 10, 10]
    assert dataset.images[5, 8, 8].tolist() == [10, 10, 250]
    skipped = "\n".join(dataset.skipped)
    assert len(dataset.skipped) == 3
    assert str(folder / "cat" / "broken.jpg") in skipped
    assert str(folder / "dog" / "notes.txt") in skipped
    assert f"{folder / 'bird'}/\tno readable image" in skipped
    assert dataset.left_out == ["bird"]  # prepare names it on the console


def test_a_class_of_one_image_is_refused_by_its_folder_name(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "pets", per_class=12)
    png(folder / "lonely owl" / "owl.png", (90, 90, 90))
    data = data_section(dataset="image_folder", source=str(folder), image_size=8)
    layout = Layout(tmp_path)
    ingest.download(data, layout)
    with pytest.raises(ValueError, match="class 'lonely owl' has a single image: .*about 10 "
                       r"images per class in all\); add images to it, or remove its folder"):
        ingest.prepare(data, layout)


def test_image_folder_grayscale(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "pets")
    data = data_section(dataset="image_folder", source=str(folder), image_size=8, grayscale=True)
    image_folder.download(tmp_path / "raw", data)
    dataset = image_folder.load(tmp_path / "raw", data)
    assert dataset.images.shape == (6, 8, 8, 1)


def test_image_folder_without_readable_images_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "dog").mkdir()
    data = data_section(dataset="image_folder", source=str(folder))
    image_folder.download(tmp_path / "raw", data)
    with pytest.raises(ValueError, match=f"{folder}: 0 class folder\\(s\\) hold a readable"):
        image_folder.load(tmp_path / "raw", data)


def test_image_folder_needs_a_source_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_folder needs a local folder"):
        image_folder.download(tmp_path, data_section(dataset="image_folder"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        image_folder.download(
            tmp_path, data_section(dataset="image_folder", source=str(tmp_path / "nope"))
        )


def test_prepare_writes_skipped_txt(root: Path) -> None:
    folder = make_image_folder(root / "pets", per_class=10)
    params = project_params({"data": {"dataset": "image_folder", "source": "pets",
                                      "image_size": 8}})
    layout = Layout(root)
    ingest.download(params.data, layout)
    counts = ingest.prepare(params.data, layout)
    assert counts == {"train": 16, "test": 4, "skipped": 3, "left_out": ["bird"]}
    lines = (layout.prepared / "skipped.txt").read_text().splitlines()
    assert lines[0] == "# 3 unreadable input(s) skipped" and len(lines) == 4
    assert str(folder / "cat" / "broken.jpg") in lines[1]


# --- planar ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["flower", "moons"])
def test_planar_points_are_balanced_seeded_and_round_trip(shape: str) -> None:
    data = data_section(dataset="planar", planar_shape=shape, planar_samples=400)
    dataset = planar.load(Path("unused"), data)
    assert dataset.images.shape == (400, 1, 2, 1) and dataset.images.dtype == np.uint8
    assert np.bincount(dataset.labels).tolist() == [200, 200]
    assert dataset.classes == planar.CLASSES[shape]
    assert np.array_equal(planar.load(Path("unused"), data).images, dataset.images)
    points, _ = planar.make_points(shape, 400)
    assert np.abs(points).max() < encoding.LIMIT
    step = 2 * encoding.LIMIT / 255
    assert np.abs(encoding.coordinates(dataset.images) - points).max() <= step / 2 + 1e-12


def test_flower_is_the_seeds_flower() -> None:
    points, labels = planar.make_points("flower", 400)
    radius = np.hypot(points[:, 0], points[:, 1])
    # r = 4 sin(4t) + noise: petals reach about 4 from the centre, and both classes do.
    assert 3.5 < radius[labels == 0].max() < 5 and 3.5 < radius[labels == 1].max() < 5


def test_a_large_folder_is_read_on_every_core_to_the_arrays_one_thread_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Above PARALLEL_FROM images the folder is decoded by a thread per core, straight into
    the output array: the same arrays and labels as one thread, corrupt files and a
    decompression bomb still skipped with one line each, and progress lines."""
    from PIL import Image

    folder = tmp_path / "many"
    rng = np.random.default_rng(0)
    for index in range(300):
        label = ("cat", "dog", "fox")[index % 3]
        (folder / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / label / f"{index:03d}.png")
    (folder / "cat" / "150.png").write_bytes(b"\x89PNG truncated")  # 150 % 3: a cat
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # 100x100 is a bomb here
    Image.new("RGB", (100, 100)).save(folder / "fox" / "bomb.png")
    data = data_section(dataset="image_folder", source=str(folder), image_size=8)
    image_folder.download(tmp_path / "raw", data)
    monkeypatch.setattr(image_folder, "PROGRESS_FROM", 100)
    monkeypatch.setattr(image_folder, "workers", lambda: 2)
    threaded = image_folder.load(tmp_path / "raw", data)
    assert "on 2 thread(s)" in capsys.readouterr().err
    monkeypatch.setattr(image_folder, "workers", lambda: 1)
    serial = image_folder.load(tmp_path / "raw", data)
    np.testing.assert_array_equal(threaded.images, serial.images)
    np.testing.assert_array_equal(threaded.labels, serial.labels)
    assert threaded.images.shape == (299, 8, 8, 3), threaded.skipped
    assert sorted(Path(line.split("\t")[0]).name for line in threaded.skipped) == \
        ["150.png", "bomb.png"]
    assert "DecompressionBomb" in "\n".join(threaded.skipped)
