"""Input guard of the liver models: channel units, ADC unit recognition, training distribution.

- ``CHANNEL_UNITS``: what each channel of the model input holds (declared on the model card).
- ``adc_affine(values, acquisition)`` (``adc_scale``: its factor): ``raw * factor + offset`` brings an
  ADC map to 1e-3 mm^2/s, from its Real World Value Mapping (slope, intercept, units) when present
  (checked against the values), else recognised from
  the values themselves: liver and most tissue lie at 0.5-3 x 1e-3 mm^2/s, so a median of the
  positive voxels of 200-5000 is 1e-6 mm^2/s (scanners' integer maps), 0.3-5 is 1e-3 mm^2/s
  (with voxels above 1.05), 3e-4-5e-3 is mm^2/s. An exponential ADC (eADC = exp(-b ADC),
  unitless, every value <= ~1) and anything else are refused, naming the values seen. After
  conversion the map's median must be plausible parenchyma ADC, 0.6-2.5 x 1e-3 mm^2/s (an
  integer-scaled eADC x 1000 -- liver ~380 -- would otherwise pass as 1e-6 units); units inferred
  from values with no DICOM tags of the ADC series carry a note that eADC cannot be excluded.
- ``channel_features(stack)``: per channel of a normalised ROI stack [P, H, W], the mean, standard
  deviation, 1st and 99th percentile (what the training distribution is measured on).
- ``training_distribution(...)``: measured from the training samples (never typed): per channel
  and feature the [0.5 %, 99.5 %] range widened by 10 % of its width on each side; the
  acquisition values seen (field strength, b-value); lesion diameter and in-plane spacing ranges.
- ``distribution_warnings(...)``: the reasons one lesion lies outside that distribution, or its
  acquisition value is unknown. A warning never changes the score; it travels with it.
numpy only (no torch), so the Slicer panel may import it at load.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .phases import PHASES

FEATURES = ("mean", "sd", "p01", "p99")
ADC_TRAINING_UNITS = "1e-3 mm^2/s"
CHANNEL_UNITS = {p: "MR signal, arbitrary units (scanner gain); divided by the ROI median (parenchyma = 1)"
                 for p in PHASES}
CHANNEL_UNITS["ADC"] = f"apparent diffusion coefficient in {ADC_TRAINING_UNITS} (quantitative, not normalised)"
CHANNEL_UNITS["attention"] = "Gaussian map, 1 at the lesion centre, sigma = lesion radius (unitless)"
ACQUISITION_KEYS = ("field_strength_t", "b_value")
_TOLERANCE = {"field_strength_t": 0.05, "b_value": 0.05}     # relative: 3 T vs 2.89 T is the same field
_WIDEN = 0.10


PARENCHYMA_ADC = (0.6, 2.5)   # plausible median ADC of a map / ROI after conversion, 1e-3 mm^2/s (liver ~1-1.5)


def _plausible(med_converted: float, seen: str, how: str, where) -> None:
    lo, hi = PARENCHYMA_ADC
    if not lo <= med_converted <= hi:
        raise InputError(f"the ADC map read {how} gives a median of {med_converted:.3g} x 1e-3 mm^2/s ({seen}), outside "
                         f"the plausible parenchyma range [{lo:g}, {hi:g}] x 1e-3 mm^2/s (liver ~1-1.5): this is not an "
                         "ADC map in those units (an integer-scaled exponential ADC, eADC x 1000, has liver ~300-550)",
                         where)


def adc_affine(values, acquisition: dict | None = None, where="ADC") -> tuple[float, float, str | None]:
    """(factor, offset, note): ``raw * factor + offset`` is the ADC map in 1e-3 mm^2/s (see module doc).

    Real World Value Mapping slope AND intercept are applied (``value = raw * slope + intercept`` in
    the mapping's units, then the unit factor). After conversion the median of the map's positive
    voxels must be plausible parenchyma ADC (``PARENCHYMA_ADC``), else InputError naming the values.
    When the units were inferred from the values and no DICOM tags of the ADC series were read
    (``adc_tags_read``), the note says that an eADC cannot be excluded."""
    acq = acquisition or {}
    if acq.get("adc_kind") == "eADC":
        raise InputError("the ADC series is an exponential ADC (eADC: exp(-b ADC), unitless); the model needs the "
                         "ADC map itself in mm^2/s - load the scanner's ADC series instead", where)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    slope, intercept = float(acq.get("adc_rwvm_slope", 1.0)), float(acq.get("adc_rwvm_intercept", 0.0))
    if slope != 1.0 or intercept != 0.0:
        v = v * slope + intercept
    pos = v[v > 0]
    if pos.size < 10:
        raise InputError(f"the ADC map has {pos.size} positive voxels; cannot recognise its units", where)
    med, p99 = float(np.median(pos)), float(np.percentile(pos, 99))
    seen = f"median of positive voxels {med:.4g}, 99th percentile {p99:.4g}"
    if "adc_unit_factor" in acq:
        factor = float(acq["adc_unit_factor"])
        if not 0.3 <= med * factor <= 5.0:
            raise InputError(f"the ADC map declares units {acq.get('adc_units')!r} (Real World Value Mapping) but its "
                             f"values ({seen}) do not fit them: liver ADC is ~1-1.5 x 1e-3 mm^2/s", where)
        _plausible(med * factor, seen, f"in its declared units {acq.get('adc_units')!r}", where)
        note = None if factor == 1.0 and slope == 1.0 and intercept == 0.0 else (
            f"ADC read in {acq.get('adc_units')} (Real World Value Mapping slope {slope:g}, intercept {intercept:g}) "
            f"and converted to {ADC_TRAINING_UNITS}")
        return factor * slope, factor * intercept, note
    caution = ("" if acq.get("adc_tags_read") else
               "; units inferred from the values without DICOM tags of the ADC series: an exponential ADC (eADC) "
               "cannot be excluded")
    if 200.0 <= med <= 5000.0:
        unit, factor = "1e-6 mm^2/s", 1e-3
    elif 3e-4 <= med <= 5e-3:
        unit, factor = "mm^2/s", 1e3
    elif p99 <= 1.05 and 0.01 <= med < 1.0:
        raise InputError(f"the ADC map's values ({seen}) are all <= ~1: this looks like an exponential ADC (eADC, "
                         "unitless), not ADC; load the ADC series in mm^2/s", where)
    elif 0.3 <= med <= 5.0:
        unit, factor = ADC_TRAINING_UNITS, 1.0
    else:
        raise InputError(f"the ADC map's units are not recognisable from its values ({seen}); expected liver ADC of "
                         "~1-1.5 in 1e-3 mm^2/s, ~1000-1500 in 1e-6 mm^2/s or ~0.001 in mm^2/s", where)
    _plausible(med * factor, seen, f"as {unit} (recognised from its values)", where)
    if factor == 1.0:
        note = f"ADC read as {ADC_TRAINING_UNITS}{caution}" if caution else None
    else:
        note = f"ADC read as {unit} ({seen}) and converted to {ADC_TRAINING_UNITS}{caution}"
    return factor * slope, factor * intercept, note


def adc_scale(values, acquisition: dict | None = None, where="ADC") -> tuple[float, str | None]:
    """(factor to 1e-3 mm^2/s, note or None) of ``adc_affine``; InputError when the map needs an offset
    (a Real World Value Mapping intercept): use ``adc_affine`` then."""
    factor, offset, note = adc_affine(values, acquisition, where)
    if offset != 0.0:
        raise InputError("the ADC map's Real World Value Mapping has an intercept; use adc_affine", where)
    return factor, note


def channel_features(stack) -> np.ndarray:
    """[P, 4] float64: mean, sd, 1st and 99th percentile of each channel of ``stack`` [P, H, W]."""
    x = np.asarray(stack, dtype=np.float64).reshape(len(stack), -1)
    p01, p99 = np.percentile(x, [1, 99], axis=1)
    return np.stack([x.mean(1), x.std(1), p01, p99], axis=1)


def _range(values) -> list:
    lo, hi = np.percentile(values, [0.5, 99.5])
    pad = _WIDEN * (hi - lo)
    return [float(lo - pad), float(hi + pad)]


def training_distribution(features, phases, acquisitions=(), diameters_mm=(), spacings_mm=()) -> dict:
    """The distribution a model was trained on, measured from its training samples.

    ``features``: [N, P, 4] ``channel_features`` of the normalised training ROIs; ``acquisitions``:
    one dict per sample (``field_strength_t``, ``b_value``; None = unknown); ``diameters_mm`` and
    ``spacings_mm`` (largest in-plane spacing of the study) per sample.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 3 or f.shape[1] != len(phases) or f.shape[2] != len(FEATURES) or len(f) < 2:
        raise InputError(f"features must be [N >= 2, {len(phases)}, {len(FEATURES)}], got {f.shape}", "features")
    channels = {p: {name: _range(f[:, k, j]) for j, name in enumerate(FEATURES)} for k, p in enumerate(phases)}
    seen = {}
    for key in ACQUISITION_KEYS:
        vals = sorted({round(float(a[key]), 3) for a in acquisitions if a.get(key) is not None})
        seen[key] = vals
    out = {"measured_from": f"{len(f)} training samples", "features": list(FEATURES),
           "feature_range": "[0.5th, 99.5th] percentile over training samples, widened by 10 % of its width",
           "channels": channels, "acquisition_seen": seen}
    if len(diameters_mm):
        out["diameter_mm"] = [float(np.min(diameters_mm)), float(np.max(diameters_mm))]
    if len(spacings_mm):
        out["in_plane_spacing_mm"] = [float(np.min(spacings_mm)), float(np.max(spacings_mm))]
    return out


def distribution_warnings(distribution: dict | None, stack, phases, acquisition: dict | None = None,
                          diameter_mm: float | None = None, spacing_mm: float | None = None) -> list:
    """Why this lesion's input lies outside the training ``distribution`` (empty list when inside)."""
    if not distribution:
        return ["the model card declares no measured training distribution: inputs not checked against it"]
    out = []
    acq = acquisition or {}
    for key, seen in distribution.get("acquisition_seen", {}).items():
        v = acq.get(key)
        seen_text = ", ".join(f"{s:g}" for s in seen) or "none recorded"
        if v is None:
            out.append(f"{key} unknown (not in the DICOM tags nor given); the model was trained on {seen_text}")
        elif not any(abs(float(v) - s) <= _TOLERANCE.get(key, 0.05) * max(abs(s), 1e-9) for s in seen):
            out.append(f"{key}={float(v):g} was not seen in training ({seen_text})")
    f = channel_features(stack)
    outside = []
    for k, p in enumerate(phases):
        ranges = distribution.get("channels", {}).get(p)
        if not ranges:
            continue
        for j, name in enumerate(FEATURES):
            lo, hi = ranges[name]
            if not lo <= f[k, j] <= hi:
                outside.append(f"{p} {name} {f[k, j]:.3g} outside [{lo:.3g}, {hi:.3g}]")
    if outside:
        out.append("input outside the training distribution: " + "; ".join(outside))
    for key, v in (("diameter_mm", diameter_mm), ("in_plane_spacing_mm", spacing_mm)):
        rng = distribution.get(key)
        if rng and v is not None and not rng[0] <= float(v) <= rng[1]:
            out.append(f"{key}={float(v):.3g} outside the training range [{rng[0]:.3g}, {rng[1]:.3g}]")
    return out
