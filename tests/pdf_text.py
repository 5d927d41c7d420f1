"""A small text extractor for the PDFs the product writes (tests only; written from the PDF 1.7 spec, ISO 32000-1).

It inflates every FlateDecode stream, reads the ToUnicode CMaps (``bfchar`` and
``bfrange``, §9.10.3) and decodes the literal strings shown by ``Tj``/``TJ``
inside ``BT … ET`` text objects with 2-byte codes (Identity-H, as fpdf2 writes
embedded TrueType fonts).  Each shown string becomes one line.  It is not a
general PDF reader: enough to check what a card says, independently of the
library that wrote it.
"""

from __future__ import annotations

import re
import zlib

_OBJECT = re.compile(rb"(\d+)\s+0\s+obj(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_LITERAL = re.compile(rb"\(((?:\\.|[^\\)])*)\)", re.S)
_TOKEN = re.compile(rb"/([A-Za-z0-9_.+-]+)\s+[\d.]+\s+Tf|\(((?:\\.|[^\\)])*)\)", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"(": b"(", b")": b")", b"\\": b"\\"}


def _objects(pdf: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Object number -> (dictionary part, inflated stream or None)."""
    out = {}
    for number, body in _OBJECT.findall(pdf):
        stream = _STREAM.search(body)
        data = None
        if stream:
            data = stream.group(1)
            try:
                data = zlib.decompress(data)
            except zlib.error:
                pass
            body = body[: stream.start()]
        out[int(number)] = (body, data)
    return out


def _unescape(body: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(body):
        c = body[i:i + 1]
        if c != b"\\":
            out += c
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        octal = re.match(rb"[0-7]{1,3}", body[i + 1:i + 4])
        if octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i += 1 + len(octal.group())
        elif nxt in (b"\n", b"\r"):
            i += 2
        else:
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def _cmap(s: bytes) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", s, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", s, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            base = int(dst, 16)
            for k, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                mapping[code] = chr(base + k)
    return mapping


def pdf_lines(pdf: bytes) -> list[str]:
    """The text of every string shown in the PDF, one entry per ``Tj``/``TJ`` string, decoded with its font's CMap."""
    assert pdf.startswith(b"%PDF-"), "a PDF file"
    objects = _objects(pdf)
    cmaps: dict[bytes, dict[int, str]] = {}  # font resource name -> its ToUnicode map
    for body, _ in objects.values():
        for fonts in re.findall(rb"/Font\s*<<(.*?)>>", body, re.S):
            for name, ref in re.findall(rb"/([A-Za-z0-9_.+-]+)\s+(\d+)\s+0\s+R", fonts):
                font = objects.get(int(ref), (b"", None))[0]
                to_unicode = re.search(rb"/ToUnicode\s+(\d+)\s+0\s+R", font)
                if to_unicode and objects.get(int(to_unicode.group(1)), (b"", None))[1]:
                    cmaps[name] = _cmap(objects[int(to_unicode.group(1))][1])
    lines = []
    for _, data in objects.values():
        if not data or b"BT" not in data:
            continue
        current: dict[int, str] = {}
        for text_object in re.findall(rb"\bBT\b(.*?)\bET\b", data, re.S):
            for font, body in _TOKEN.findall(text_object):
                if font:
                    current = cmaps.get(font, {})
                    continue
                raw = _unescape(body)
                codes = [int.from_bytes(raw[k:k + 2], "big") for k in range(0, len(raw) - 1, 2)]
                lines.append("".join(current.get(c, "\ufffd") for c in codes))
    return lines
