"""One image reader for prepare, predict and serve (image_folder.decode_image): a 16-bit,
32-bit or float image is scaled to 8 bits as a viewer shows it, so the same picture saved at
any depth gives the same pixels (issue 46: a 16-bit digit was clipped into a white blot and
predicted as another digit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab.data.image_folder import read_image


@pytest.fixture
def digit() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 12), dtype=np.uint8)


@pytest.mark.parametrize(("name", "convert"), [
    ("16.png", lambda d: d.astype(np.uint16) * 257),  # I;16
    ("32.tif", lambda d: d.astype(np.int32) * 257),  # I
    ("float01.tif", lambda d: d.astype(np.float32) / 255),  # F in [0, 1]
    ("float255.tif", lambda d: d.astype(np.float32)),  # F in [0, 255]
])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_every_depth_reads_as_the_8_bit_image(tmp_path: Path, digit: np.ndarray, name: str,
                                              convert: object, mode: str) -> None:
    Image.fromarray(digit).save(tmp_path / "8.png")
    Image.fromarray(convert(digit)).save(tmp_path / name)  # type: ignore[operator]
    assert Image.open(tmp_path / name).mode != "L"  # really a wide image
    np.testing.assert_array_equal(read_image(tmp_path / name, mode, 6),
                                  read_image(tmp_path / "8.png", mode, 6))


def test_pillows_own_conversion_is_what_went_wrong(tmp_path: Path, digit: np.ndarray) -> None:
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "16.png")
    clipped = np.asarray(Image.open(tmp_path / "16.png").convert("L"))
    assert (clipped == 255).mean() > 0.9  # convert("L") clips: the reason for to_eight_bits
