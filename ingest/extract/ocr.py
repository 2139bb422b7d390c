"""OCR of scanned PDF pages: RapidOCR on ONNX Runtime, its models shipped in its wheel.

Used by the PDF extractor, when the `ocr` setting is on, for pages that have images but no
text layer. The engine loads once per process (about 0.3 s) and reads a page of text in about
a second on two cores. A page that is one image (a scan) comes back as positioned runs, which
the PDF layout reads as it reads a text layer (columns, paragraphs, headings, furniture);
several images come back as text, top to bottom, one line per recognised line.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from ingest.errors import ExtractionFailed
from ingest.extract.pdf_layout import Run

MIN_CONFIDENCE = 0.5
"""Recognised lines below this score are noise (specks, ruling lines), not text."""


@functools.cache
def _engine() -> Any:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as error:
        raise ExtractionFailed(
            f"OCR is on but its engine is not installed (pip install 'ragsvc[ocr]'): {error}"
        ) from None
    return RapidOCR()


def read_runs(image: bytes) -> tuple[list[Run], float, float]:
    """The recognised lines of one page image as positioned runs (in pixels, y growing
    upwards as in PDF), with the image's width and height, for `pdf_layout.read_page`."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        pixels = np.array(opened.convert("RGB"))
    height, width = pixels.shape[:2]
    found, _elapsed = _engine()(pixels)
    runs = []
    for box, text, score in found or []:
        if float(score) < MIN_CONFIDENCE or not str(text).strip():
            continue
        xs = [float(point[0]) for point in box]
        ys = [float(point[1]) for point in box]
        runs.append(Run(str(text).strip(), min(xs), height - max(ys), max(xs), height - min(ys)))
    return runs, float(width), float(height)


def read_images(images: list[bytes]) -> str:
    """The text of a page's images, a line per recognised line, in reading order."""
    import numpy as np
    from PIL import Image

    lines: list[str] = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.array(image.convert("RGB"))
        found, _elapsed = _engine()(pixels)
        for _box, text, score in sorted(found or [], key=lambda r: (r[0][0][1], r[0][0][0])):
            if float(score) >= MIN_CONFIDENCE and str(text).strip():
                lines.append(str(text).strip())
    return "\n".join(lines)
