"""Mutations of real DICOM files, described by JSON-able specs so every input can be rebuilt.

A file spec ``{"seed", "edits", "bytes"}`` applies data-set edits with pydicom (wrong values,
inconsistent Rows/Columns/BitsAllocated, missing pixel data or tags, cut pixel data) and then byte
edits (truncation, flips, huge or undefined lengths, wrong VRs, retagged elements, a transfer
syntax that does not match the encoding). A series spec ``{"seed", "n", "mode", "spacing", "ops"}``
builds a classic series (or a TI scout) from one real slice and damages it (shuffled, missing or
duplicated slices, mixed orientations, matrices or series, localisers, junk files, file mutations).
Specs that an edit cannot express (pydicom refuses the value) skip that edit deterministically.
"""
from __future__ import annotations

import copy
import io
import random
import struct
import warnings

import numpy as np
import pydicom
from pydicom import config
from pydicom.uid import generate_uid

from .seeds import DEFLATED, EXPLICIT_BE, IMPLICIT_LE, elements, seed_bytes

SET_VALUES = {
    "Rows": [0, 1, 2, 63, 65535, "x2", "half"], "Columns": [0, 1, 3, 64, 65535, "x2", "half"],
    "BitsAllocated": [0, 1, 8, 12, 17, 32, 64], "BitsStored": [0, 1, 8, 12, 16, 32, 40],
    "HighBit": [0, 7, 15, 31, 63], "PixelRepresentation": [0, 1, 2], "SamplesPerPixel": [0, 2, 3, 4],
    "PlanarConfiguration": [0, 1, 2],
    "NumberOfFrames": ["0", "2", "10", "1000000", "-1", "abc", "2.5"],
    "PhotometricInterpretation": ["MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL_422", "", "GARBAGE"],
    "RescaleSlope": ["0", "-1", "nan", "inf", "1e308", "abc", ""],
    "RescaleIntercept": ["nan", "-1e308", "1e308", "abc", "-1024"],
    "PixelSpacing": [["0", "0"], ["-1", "1"], ["nan", "1"], ["1"], ["1", "2", "3"], ["1e-300", "1e-300"], ["inf", "1"]],
    "ImagePositionPatient": [["nan", "0", "0"], ["1", "2"], ["1e308", "1e308", "1e308"], ["inf", "0", "0"],
                             ["a", "b", "c"], ["0", "0", "0"]],
    "ImageOrientationPatient": [["0"] * 6, ["1", "0", "0", "1", "0", "0"], ["1", "0", "0"], ["nan"] * 6,
                                ["1", "0", "0", "0", "0", "1"], ["1e308", "0", "0", "0", "1", "0"]],
    "SliceThickness": ["0", "-5", "nan", "1e308"], "SpacingBetweenSlices": ["0", "-5", "nan", "1e-300"],
    "InversionTime": ["abc", "-1", "nan", "1e308", ""], "TriggerTime": ["abc", "nan", "-1"],
    "Modality": ["SEG", "", "SR", "CT", "MR"], "ImageType": [["DERIVED", "SECONDARY", "LOCALIZER"], [], ["ORIGINAL"]],
    "SOPClassUID": ["", "1.2.3", "1.2.840.10008.5.1.4.1.1.66.4"], "SeriesInstanceUID": ["", "1.2.3"],
    "StudyInstanceUID": [""], "FrameIncrementPointer": [0x00181063, 0x00540080, 0x00200013],
    "FrameTime": ["0", "-1", "nan", "abc"], "FrameTimeVector": [["0", "1"], ["nan", "nan", "nan"]],
    "AcquisitionTime": ["999999", "abc", "25", ""], "PatientAge": ["abc", "999Y", "000D"],
    "DiffusionBValue": [-1.0, float("nan"), 1e308], "InstanceNumber": ["abc", "-1", "100000000000"],
}
DELETE = ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "ImagePositionPatient",
          "ImageOrientationPatient", "PixelSpacing", "SOPClassUID", "Modality", "SeriesInstanceUID",
          "StudyInstanceUID", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
          "SamplesPerPixel", "PhotometricInterpretation", "RescaleSlope", "NumberOfFrames", "PixelRepresentation")
PIXEL_CUTS = ("empty", "one_byte", "half", "minus_one", "double", "odd")
PER_FRAME = ("truncate", "empty_items", "no_position", "zero_spacing")
SYNTAXES = (IMPLICIT_LE, "1.2.840.10008.1.2.1", EXPLICIT_BE, DEFLATED, "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.3.4", "")
LENGTHS = (0, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0xFFFF, "plus1", "minus1")
VRS = (b"OB", b"OW", b"SQ", b"UN", b"US", b"UL", b"DS", b"FD", b"AT", b"XX", b"\x00\x00")
TAGS = (0x7FE00010, 0x00280010, 0x00280100, 0xFFFEE000, 0xFFFEE0DD, 0x00020010, 0x52009230)
BLOBS = (b"\x00" * 4, b"\xff" * 8, b"\xfe\xff\x00\xe0", b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\xff", b"DICM")
SERIES_EDIT_OPS = ("dup_position", "jitter", "shift", "orient", "resize", "header_matrix", "localizer",
                   "b_value", "ti", "mono1", "slope", "no_ipp", "acq")
JUNK = {"empty": b"", "text": b"patient list\n", "dicm_only": b"\x00" * 128 + b"DICM",
        "random": bytes(random.Random(7).getrandbits(8) for _ in range(512))}


def decode(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def encode(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


class _lenient:
    """Let pydicom write values that break the standard (that is the point of fuzzing)."""

    def __enter__(self):
        self._saved = config.settings.writing_validation_mode, config.settings.reading_validation_mode
        config.settings.writing_validation_mode = config.settings.reading_validation_mode = config.IGNORE
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._warn.__exit__(*exc)
        config.settings.writing_validation_mode, config.settings.reading_validation_mode = self._saved


def _set_value(ds, keyword, index):
    values = SET_VALUES[keyword]
    value = values[index % len(values)]
    if value in ("x2", "half"):
        old = int(ds.get(keyword, 64) or 64)
        value = old * 2 if value == "x2" else max(old // 2, 1)
    setattr(ds, keyword, value)


def _cut_pixels(ds, mode):
    data = bytes(ds.PixelData)
    ds.PixelData = {"empty": b"", "one_byte": data[:1], "half": data[:len(data) // 2], "minus_one": data[:-1],
                    "double": data + data, "odd": data[:len(data) // 2 * 2 - 1]}[mode]


def _per_frame(ds, mode):
    seq = ds.PerFrameFunctionalGroupsSequence
    if mode == "truncate":
        del seq[len(seq) // 2:]
    elif mode == "empty_items":
        for item in seq:
            for tag in list(item.keys()):
                del item[tag]
    elif mode == "no_position":
        del seq[0].PlanePositionSequence
    else:
        groups = ds.get("SharedFunctionalGroupsSequence") or seq
        groups[0].PixelMeasuresSequence[0].PixelSpacing = [0, 0]


def apply_edit(ds, edit) -> None:
    """One data-set edit; raises whatever pydicom raises when the edit does not apply."""
    op = edit[0]
    if op == "set":
        _set_value(ds, edit[1], edit[2])
    elif op == "delete":
        del ds[edit[1]]
    elif op == "pixels":
        _cut_pixels(ds, edit[1])
    elif op == "per_frame":
        _per_frame(ds, edit[1])
    else:
        raise ValueError(f"unknown edit {op}")


def apply_edits(data: bytes, edits) -> bytes:
    if not edits:
        return data
    with _lenient():
        try:
            ds = decode(data)
        except Exception:  # the seed itself does not parse (already damaged): edits do not apply
            return data
        for edit in edits:
            try:
                apply_edit(ds, edit)
            except Exception:  # pydicom refused this value or the element is absent: skip the edit
                continue
        try:
            return encode(ds)
        except Exception:  # pydicom cannot encode the edited set: keep the unedited bytes
            return data


def _replace_syntax(data: bytes, uid: str) -> bytes:
    for e in elements(data):
        if e.tag == 0x00020010 and e.length_size == 2:
            value = uid.encode("ascii") + (b"\x00" if len(uid) % 2 else b"")
            return (data[:e.length_offset] + struct.pack("<H", len(value)) + value
                    + data[e.value_offset + e.length:])
    return data


def apply_byte_op(data: bytes, op) -> bytes:
    """One byte-level edit (truncate, flip, insert, cut, length, vr, tag, syntax)."""
    kind = op[0]
    pos = int(len(data) * min(max(float(op[1]), 0.0), 1.0)) if kind in ("truncate", "flip", "insert", "cut") else 0
    if kind == "truncate":
        return data[:pos]
    if kind == "flip":
        return data if pos >= len(data) else data[:pos] + bytes([data[pos] ^ (int(op[2]) % 255 + 1)]) + data[pos + 1:]
    if kind == "insert":
        return data[:pos] + BLOBS[int(op[2]) % len(BLOBS)] + data[pos:]
    if kind == "cut":
        return data[:pos] + data[pos + int(op[2]):]
    if kind == "syntax":
        return _replace_syntax(data, SYNTAXES[int(op[1]) % len(SYNTAXES)])
    elems = elements(data)
    if not elems:
        return data
    e = elems[int(op[1]) % len(elems)]
    if kind == "length":
        value = LENGTHS[int(op[2]) % len(LENGTHS)]
        value = e.length + 1 if value == "plus1" else max(e.length - 1, 0) if value == "minus1" else value
        little = data[128:132] != b"DICM" or e.tag >> 16 == 2 or not _is_big_endian(elems, data)
        fmt = ("<" if little else ">") + ("H" if e.length_size == 2 else "I")
        value &= 0xFFFF if e.length_size == 2 else 0xFFFFFFFF
        return data[:e.length_offset] + struct.pack(fmt, value) + data[e.length_offset + e.length_size:]
    if kind == "vr":
        if e.vr_offset is None:
            return data
        return data[:e.vr_offset] + VRS[int(op[2]) % len(VRS)] + data[e.vr_offset + 2:]
    if kind == "tag":
        tag = TAGS[int(op[2]) % len(TAGS)]
        return data[:e.offset] + struct.pack("<HH", tag >> 16, tag & 0xFFFF) + data[e.offset + 4:]
    raise ValueError(f"unknown byte op {kind}")


def _is_big_endian(elems, data) -> bool:
    for e in elems:
        if e.tag == 0x00020010:
            return data[e.value_offset:e.value_offset + e.length].rstrip(b"\x00 ") == EXPLICIT_BE.encode()
    return False


def build_file(spec: dict) -> bytes:
    """Bytes of a file-level input (see module docstring)."""
    data = apply_edits(seed_bytes(spec["seed"]), spec.get("edits", []))
    for op in spec.get("bytes", []):
        data = apply_byte_op(data, op)
    return data


def _slices(spec: dict) -> list:
    base = decode(seed_bytes(spec["seed"]))
    iop = np.array([float(v) for v in base.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    normal = np.cross(iop[:3], iop[3:])
    origin = np.array([float(v) for v in base.get("ImagePositionPatient", [0, 0, 0])])
    key = f"{spec['seed']}|{spec['n']}|{spec['mode']}|{spec['spacing']}"
    series_uid = generate_uid(entropy_srcs=[key, "series"])
    out = []
    for k in range(int(spec["n"])):
        ds = copy.deepcopy(base)
        offset = 0.0 if spec["mode"] == "ti" else k * float(spec["spacing"])
        ds.ImagePositionPatient = [f"{v:.6g}" for v in origin + offset * normal]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in iop]
        ds.InstanceNumber = k + 1
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[key, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if spec["mode"] == "ti":
            ds.InversionTime = f"{100 + 40 * k}"
        out.append(ds)
    return out


def _series_edit(slices, op) -> None:
    ds = slices[int(op[1]) % len(slices)]
    kind = op[0]
    if kind == "dup_position":
        ds.ImagePositionPatient = list(slices[int(op[1]) % len(slices) - 1].ImagePositionPatient)
    elif kind in ("jitter", "shift"):
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ipp[2 if kind == "jitter" else 0] += float(op[2])
        ds.ImagePositionPatient = [f"{v:.6g}" for v in ipp]
    elif kind == "orient":
        ds.ImageOrientationPatient = [["1", "0", "0", "0", "0", "-1"], ["0", "1", "0", "0", "0", "-1"],
                                      ["0.9999", "0.01", "0", "0", "1", "0"]][int(op[2]) % 3]
    elif kind == "resize":
        pixels = ds.pixel_array[: ds.Rows // 2, : ds.Columns // 2].copy()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.Rows, ds.Columns, ds.PixelData = pixels.shape[0], pixels.shape[1], pixels.tobytes()
    elif kind == "header_matrix":
        ds.Rows, ds.Columns = int(op[2]), int(op[2]) + 1
    elif kind == "localizer":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    elif kind == "b_value":
        ds.DiffusionBValue = float(op[2])
    elif kind == "ti":
        ds.InversionTime = str(op[2])
    elif kind == "mono1":
        ds.PhotometricInterpretation = "MONOCHROME1"
    elif kind == "slope":
        ds.RescaleSlope = str(op[2])
    elif kind == "no_ipp":
        del ds.ImagePositionPatient
    elif kind == "acq":
        ds.AcquisitionNumber = int(op[2])


def build_series(spec: dict) -> dict:
    """Files of a series-level input: {relative name: bytes} (see module docstring)."""
    ops = spec.get("ops", [])
    with _lenient():
        slices = _slices(spec)
        for op in ops:
            if op[0] in SERIES_EDIT_OPS:
                try:
                    _series_edit(slices, op)
                except Exception:  # pydicom refused the value: skip the edit
                    continue
        encoded = [encode(ds) for ds in slices]
        extra = []
        for op in ops:
            if op[0] == "file":
                k = int(op[1]) % len(encoded)
                data = apply_edits(encoded[k], op[2])
                for byte_op in op[3]:
                    data = apply_byte_op(data, byte_op)
                encoded[k] = data
            elif op[0] == "mix":
                ds = decode(seed_bytes(op[1]))
                if op[2]:
                    ds.SeriesInstanceUID, ds.StudyInstanceUID = slices[0].SeriesInstanceUID, slices[0].StudyInstanceUID
                extra.append(encode(ds))
            elif op[0] == "copy":
                extra.append(encoded[int(op[1]) % len(encoded)])
    drop = {int(op[1]) % len(encoded) for op in ops if op[0] == "drop"}
    if len(drop) >= len(encoded):
        drop.discard(0)
    files = [d for k, d in enumerate(encoded) if k not in drop] + extra
    names = [f"IM{k:03d}.dcm" for k in range(len(files))]
    for op in ops:
        if op[0] == "shuffle":
            random.Random(int(op[1])).shuffle(names)
    subdirs = {int(op[1]) % len(names) for op in ops if op[0] == "subdir"}
    out = {(f"sub/{n}" if k in subdirs else n): d for k, (n, d) in enumerate(zip(names, files))}
    for op in ops:
        if op[0] == "junk":
            out[f"junk_{op[1]}"] = JUNK[op[1]]
    return out
