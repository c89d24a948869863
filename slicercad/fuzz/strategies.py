"""Hypothesis strategies that draw file-level and series-level mutation specs (see ``mutations``)."""
from __future__ import annotations

from hypothesis import strategies as st

from .mutations import BLOBS, DELETE, JUNK, LENGTHS, PER_FRAME, PIXEL_CUTS, SET_VALUES, SYNTAXES, TAGS, VRS
from .seeds import FILE_SEEDS, SERIES_SEEDS

_fraction = st.floats(0.0, 1.0, allow_nan=False).map(lambda f: round(f, 4))
_element = st.integers(0, 300)

edits = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(sorted(SET_VALUES)), st.integers(0, 15)),
    st.tuples(st.just("delete"), st.sampled_from(DELETE)),
    st.tuples(st.just("pixels"), st.sampled_from(PIXEL_CUTS)),
    st.tuples(st.just("per_frame"), st.sampled_from(PER_FRAME)),
), max_size=3)

byte_ops = st.lists(st.one_of(
    st.tuples(st.just("truncate"), _fraction),
    st.tuples(st.just("flip"), _fraction, st.integers(0, 254)),
    st.tuples(st.just("insert"), _fraction, st.integers(0, len(BLOBS) - 1)),
    st.tuples(st.just("cut"), _fraction, st.integers(1, 64)),
    st.tuples(st.just("length"), _element, st.integers(0, len(LENGTHS) - 1)),
    st.tuples(st.just("vr"), _element, st.integers(0, len(VRS) - 1)),
    st.tuples(st.just("tag"), _element, st.integers(0, len(TAGS) - 1)),
    st.tuples(st.just("syntax"), st.integers(0, len(SYNTAXES) - 1)),
), max_size=3)

file_specs = st.fixed_dictionaries({"seed": st.sampled_from(FILE_SEEDS), "edits": edits, "bytes": byte_ops})

_k = st.integers(0, 7)
_series_op = st.one_of(
    st.tuples(st.just("shuffle"), st.integers(0, 1000)),
    st.tuples(st.just("drop"), _k),
    st.tuples(st.just("dup_position"), _k),
    st.tuples(st.just("jitter"), _k, st.sampled_from([0.3, -0.5, 2.0, 1e-4, 50.0])),
    st.tuples(st.just("shift"), _k, st.sampled_from([0.5, 5.0, -20.0])),
    st.tuples(st.just("orient"), _k, st.integers(0, 2)),
    st.tuples(st.just("resize"), _k),
    st.tuples(st.just("header_matrix"), _k, st.sampled_from([0, 1, 32, 4096])),
    st.tuples(st.just("localizer"), _k),
    st.tuples(st.just("b_value"), _k, st.sampled_from([0, 500, 1000])),
    st.tuples(st.just("ti"), _k, st.sampled_from(["100", "", "abc", "-50", "1e308"])),
    st.tuples(st.just("mono1"), _k),
    st.tuples(st.just("slope"), _k, st.sampled_from(["0", "2.5", "-1", "1e30"])),
    st.tuples(st.just("no_ipp"), _k),
    st.tuples(st.just("acq"), _k, st.integers(1, 3)),
    st.tuples(st.just("file"), _k, edits, byte_ops),
    st.tuples(st.just("mix"), st.sampled_from(FILE_SEEDS), st.booleans()),
    st.tuples(st.just("copy"), _k),
    st.tuples(st.just("junk"), st.sampled_from(sorted(JUNK))),
    st.tuples(st.just("subdir"), _k),
)

series_specs = st.fixed_dictionaries({
    "seed": st.sampled_from(SERIES_SEEDS), "n": st.integers(1, 6), "mode": st.sampled_from(["volume", "ti"]),
    "spacing": st.sampled_from([1.0, 2.5, 5.0]), "ops": st.lists(_series_op, max_size=4)})

# (level, spec): "file" inputs are one mutated file, "series" inputs a folder of files
inputs = st.one_of(file_specs.map(lambda s: ("file", s)), series_specs.map(lambda s: ("series", s)))
