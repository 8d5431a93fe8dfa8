"""What one request to `nnlab serve` and one connection may cost: the limits and their
defaults, shared by the server (serve.py), its connections (connections.py), the served
pyfunc (serving_pyfunc.py) and the command line (nnlab/cli/serve.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MAX_BODY_MB = 16.0  # 24 phone photos of 500 KB, base64; 100,000 digits' PNGs
MAX_IMAGES = 256  # per request
MAX_PIXELS = 40_000_000  # per image file, width x height: a 7,700 x 5,200 photo
REQUEST_PIXELS = 4  # x MAX_PIXELS: what one request's files may decode to, in all
CLIENT_TIMEOUT = 30.0  # seconds for a whole request: 16 MiB from a phone at 4 Mbit/s
MAX_CONNECTIONS = 1000  # per server process, fewer where `ulimit -n` leaves no room


@dataclass(frozen=True)
class Limits:
    """What one request and one connection may cost (`nnlab serve --max-body-mb,
    --max-images, --max-pixels, --client-timeout, --max-connections`)."""

    max_body_mb: float = MAX_BODY_MB
    max_images: int = MAX_IMAGES
    max_pixels: int = MAX_PIXELS
    client_timeout: float = CLIENT_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"--{field.name.replace('_', '-')} must be above 0; "
                                 f"Received: {getattr(self, field.name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


DEFAULTS = Limits()
