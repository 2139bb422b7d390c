"""Hostile documents, written byte by byte: decompression bombs, an xref loop, a huge PDF, a huge
text. Shared by the tests and `benchmarks/hostile_files.py`."""

from __future__ import annotations

import zlib

TEXT_PAGE = "BT /F1 12 Tf 72 720 Td (Page {n}: the harbour office ledger, entry {n}.) Tj ET"


def build_pdf(streams: list[tuple[bytes, str]], *, loop_prev: bool = False) -> bytes:
    """A PDF with one page per content stream (`(data, "/Filter ...")`), a Helvetica font
    and a correct xref table; `loop_prev` makes the trailer's /Prev point at its own xref."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(streams)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(streams)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, (data, filters) in enumerate(streams):
        contents = 5 + 2 * i
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            + f"/Resources << /Font << /F1 3 0 R >> >> /Contents {contents} 0 R >>".encode()
        )
        header = f"<< /Length {len(data)} {filters} >>\nstream\n".encode()
        objects.append(header + data + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    prev = f" /Prev {xref}" if loop_prev else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{prev} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_pdf(pages: int) -> bytes:
    """A plain PDF of `pages` short text pages."""
    return build_pdf([(TEXT_PAGE.format(n=n).encode(), "") for n in range(1, pages + 1)])


def deflated_zeros(size: int) -> bytes:
    """`size` zero bytes, deflated (about a thousandth of the size), without holding them."""
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.compress(bytes(size % len(block))))
    parts.append(compressor.flush())
    return b"".join(parts)


def flate_bomb(expanded: int = 1 << 30) -> bytes:
    """One stream, deflated twice: a few KB that expand past `expanded` bytes."""
    inner = deflated_zeros(expanded)
    return build_pdf([(zlib.compress(inner, 9), "/Filter [/FlateDecode /FlateDecode]")])


def many_stream_bomb(streams: int = 25, each: int = 70_000_000) -> bytes:
    """`streams` pages whose contents each expand to `each` bytes."""
    stream = deflated_zeros(each)
    return build_pdf([(stream, "/Filter /FlateDecode")] * streams)


def looping_xref() -> bytes:
    """A readable one-page PDF whose trailer's /Prev points back at its own xref table."""
    return build_pdf([(TEXT_PAGE.format(n=1).encode(), "")], loop_prev=True)


def huge_text(size: int = 45_000_000) -> bytes:
    """About `size` bytes of plain prose."""
    paragraph = (
        b"The survey team walked the northern ridge at dawn and logged every cairn they found. "
        b"Each marker was photographed, measured and compared with the charts of the last "
        b"expedition.\n\n"
    )
    return paragraph * (size // len(paragraph) + 1)


def docx_bomb(megabytes: int = 3000) -> bytes:
    """A Word document of about 3 MB whose `word/document.xml` inflates to `megabytes` MB."""
    import io
    import zipfile

    from tests.support.office_files import docx_bytes

    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(docx_bytes())) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                head, tail = data.split(b"<w:body>", 1)
                paragraph = b"<w:p><w:r><w:t>" + b"A" * (1 << 20) + b"</w:t></w:r></w:p>"
                data = head + b"<w:body>" + paragraph * megabytes + tail
            bomb.writestr(item, data)
    return out.getvalue()
