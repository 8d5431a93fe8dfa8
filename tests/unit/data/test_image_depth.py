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


def _sideways(path: Path, upright: np.ndarray) -> Path:
    """What a phone writes for a photo held upright: the sensor's pixels, turned, with
    EXIF Orientation 6 (turn 90 degrees clockwise to view)."""
    sensor = Image.fromarray(np.rot90(upright, k=1))  # stored a quarter turn anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    sensor.save(path, exif=exif)
    return path


def test_exif_orientation_is_honoured_by_prepare_predict_and_serve(tmp_path: Path) -> None:
    """The same upright pixels from an image folder (prepare), `nnlab predict` and
    `nnlab serve`, whichever way the file stores them."""
    import base64

    from nnlab.handoff.prediction import read_images
    from nnlab.handoff.serving_pyfunc import to_batch

    upright = np.zeros((12, 12), np.uint8)
    upright[:4] = 255  # the top third lit: sideways, it would be a side
    png = _sideways(tmp_path / "phone.png", upright)
    jpeg = _sideways(tmp_path / "phone.jpg", upright)
    expected = read_image(tmp_path / "phone.png", "L", 12)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    np.testing.assert_array_equal(expected, read_image(tmp_path / "upright.png", "L", 12))
    assert expected[:4].min() == 255 and expected[4:].max() == 0
    _, predicted, _ = read_images([png], (12, 12, 1), skip_unreadable=False)
    served = to_batch([base64.b64encode(png.read_bytes()).decode()], (12, 12, 1))
    np.testing.assert_array_equal(predicted[0, ..., 0], expected)
    np.testing.assert_array_equal(served[0, ..., 0], expected)
    lit = read_image(jpeg, "L", 12)  # lossy, but its bright rows are the top ones
    assert lit[:3].mean() > 200 and lit[5:].mean() < 50
