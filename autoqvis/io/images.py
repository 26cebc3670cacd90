"""Opening image files: the one place that sets how many pixels an image may declare.

A PNG of a few hundred bytes can declare 20000 x 20000 pixels (1.2 GB decoded); PIL refuses such files with its
own ``DecompressionBombError``, which is no input error to autoqvis and which ``--skip-bad`` would not skip.
Every reader of image files (discovery images, frame folders, DAVIS annotations, YouTube-VIS frames, synthetic
clips) opens them with :func:`open_image`, which refuses an image over :data:`MAX_IMAGE_PIXELS` with a
:class:`~autoqvis.errors.DataError` naming the file and its size.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from PIL import Image

from autoqvis.errors import DataError

__all__ = ["MAX_IMAGE_PIXELS", "open_image"]

# The most pixels (width x height) an image file may declare: 16384 x 16384, about 268 million (a 200-megapixel
# phone photo passes; 805 MB as 8-bit RGB). PIL's own check is set to agree (it warns above this, fails above
# twice this).
MAX_IMAGE_PIXELS = 16384 * 16384
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """``PIL.Image.open(path)`` (lazy: the header is read, the pixels when loaded), refusing a file that
    declares more than :data:`MAX_IMAGE_PIXELS` pixels. Use it as ``with open_image(path) as img:``. Other
    errors are PIL's (the caller says what they mean for its input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check below says it
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as err:
            found = re.search(r"\((\d+) pixels\)", str(err))
            size = (
                f"{int(found.group(1)):,} pixels" if found else f"more than {2 * MAX_IMAGE_PIXELS:,} pixels"
            )
            raise DataError(_too_large(path, what, size)) from None
    if img.width * img.height > MAX_IMAGE_PIXELS:
        size = f"{img.width}x{img.height} = {img.width * img.height:,} pixels"
        img.close()
        raise DataError(_too_large(path, what, size))
    return img


def _too_large(path: str | Path, what: str, size: str) -> str:
    return (
        f"{what} {path} declares {size}, more than the {MAX_IMAGE_PIXELS:,} (16384x16384) an image may have "
        "(autoqvis.io.images.MAX_IMAGE_PIXELS); downscale it or remove it"
    )
