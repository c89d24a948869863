"""Real DICOM files that seed the fuzzer (pydicom test files and pydicom-data), and a raw walker
that finds the byte offsets of top-level data elements so mutations can hit tags, VRs and lengths."""
from __future__ import annotations

import dataclasses
import functools
import struct
from pathlib import Path

import pydicom.data

from ..errors import InputError

# small files covering the encodings and object types hospitals send: classic CT/MR in every
# uncompressed syntax, RLE, JPEG, JPEG 2000, JPEG-LS, deflate, no preamble, enhanced multi-frame,
# non-image objects (RT dose, SR, SEG), colour, and files that are already damaged
FILE_SEEDS = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm", "693_J2KI.dcm",
    "image_dfl.dcm", "no_meta.dcm", "emri_small.dcm", "emri_small_RLE.dcm", "rtdose_1frame.dcm",
    "SC_rgb_small_odd.dcm", "test-SR.dcm", "MR_truncated.dcm", "badVR.dcm", "ExplVR_BigEnd.dcm",
    "liver_1frame.dcm", "JPEG-LL.dcm",  # JPEG Lossless: the SimpleITK/GDCM fallback decoder
)
# single-frame greyscale slices a series is built from
SERIES_SEEDS = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm")

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


@functools.lru_cache(maxsize=None)
def seed_path(name: str) -> Path:
    """Local path of a seed file (never downloads)."""
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        raise InputError("seed file not installed (pydicom / pydicom-data test files)", name)
    return Path(path)


@functools.lru_cache(maxsize=None)
def seed_bytes(name: str) -> bytes:
    return seed_path(name).read_bytes()


@dataclasses.dataclass(frozen=True)
class Element:
    """Where a top-level element sits in the file: header start, VR bytes (explicit VR only),
    the length field and the value."""

    offset: int
    tag: int
    vr_offset: int | None
    length_offset: int
    length_size: int
    value_offset: int
    length: int


def _walk(data: bytes, pos: int, end: int, explicit: bool, little: bool, group2_only: bool) -> tuple[list, int]:
    order = "<" if little else ">"
    out = []
    while pos + 8 <= end:
        group, elem = struct.unpack_from(order + "HH", data, pos)
        if group2_only and group != 2:
            break
        if explicit:
            vr = data[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                length_offset, size = pos + 8, 4
                length = struct.unpack_from(order + "I", data, length_offset)[0] if pos + 12 <= end else 0
            else:
                length_offset, size = pos + 6, 2
                length = struct.unpack_from(order + "H", data, length_offset)[0]
            vr_offset = pos + 4
        else:
            length_offset, size, vr_offset = pos + 4, 4, None
            length = struct.unpack_from(order + "I", data, length_offset)[0]
        value = length_offset + size
        out.append(Element(pos, (group << 16) | elem, vr_offset, length_offset, size, value, length))
        if length == 0xFFFFFFFF or value + length > end:
            break  # undefined length (sequence / encapsulated pixel data) or damaged: stop here
        pos = value + length
    return out, pos


@functools.lru_cache(maxsize=256)
def elements(data: bytes) -> tuple:
    """Top-level elements (file meta and data set) of an encoded DICOM file, as far as they parse."""
    try:
        if data[128:132] == b"DICM":
            meta, pos = _walk(data, 132, len(data), True, True, True)
            syntax = ""
            for e in meta:
                if e.tag == 0x00020010:
                    syntax = data[e.value_offset:e.value_offset + e.length].rstrip(b"\x00 ").decode("ascii", "replace")
            if syntax == DEFLATED:
                return tuple(meta)
            body, _ = _walk(data, pos, len(data), syntax != IMPLICIT_LE, syntax != EXPLICIT_BE, False)
            return tuple(meta + body)
        body, _ = _walk(data, 0, len(data), False, True, False)
        return tuple(body)
    except struct.error:
        return ()
