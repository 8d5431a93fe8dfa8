"""2-D points stored as images: the planar dataset's encoding, shared by the dataset (which
writes it) and the decision-boundary plot (which reads it back).

Each point (x, y) is a 1x2 one-channel uint8 "image": coordinates are mapped linearly from
[-LIMIT, LIMIT] to 0..255 (a step of LIMIT/127.5), and models scale pixels to [0, 1] as for
any image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

LIMIT = 5.0  # the flower's petals reach about 4.6; the moons stay within [-1.6, 2.6]


def to_pixels(points: NDArray[np.float64]) -> NDArray[np.uint8]:
    """(N, 2) points -> (N, 1, 2, 1) uint8 images."""
    scaled = np.rint((np.clip(points, -LIMIT, LIMIT) + LIMIT) * (255 / (2 * LIMIT)))
    return scaled.astype(np.uint8).reshape(-1, 1, 2, 1)


def coordinates(images: NDArray[np.uint8]) -> NDArray[np.float64]:
    """The (N, 2) points behind planar images (inverse of `to_pixels`, up to rounding)."""
    return images.reshape(-1, 2).astype(np.float64) * (2 * LIMIT / 255) - LIMIT
