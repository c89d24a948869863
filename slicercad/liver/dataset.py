"""From lesions (phase images + centre + diameter) to normalised ROI stacks and attention maps.

Normalisation ("roi-median"): every channel except ADC is divided by the median of its ROI
(the field of view is >= 3 diameters, so the median is parenchyma), which removes scanner gain;
ADC is quantitative (x1e-3 mm^2/s) and kept as is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .attention import attention_from_diameter, attention_from_mask
from .phases import PHASES
from .roi import Lesion, RoiSpec, extract_rois, mask_roi

QUANTITATIVE = ("ADC",)
NORMALISATION = "roi-median"


def normalise_stack(array, phases) -> np.ndarray:
    """Divide each non-quantitative channel by its ROI median (see module doc)."""
    out = np.array(array, dtype=np.float32, copy=True)
    for k, p in enumerate(phases):
        if p in QUANTITATIVE:
            continue
        med = float(np.median(out[k]))
        if not np.isfinite(med) or med <= 0:
            raise InputError(f"phase {p!r} ROI has a non-positive median ({med}); cannot normalise", p)
        out[k] /= med
    return out


@dataclass
class RoiDataset:
    """Arrays for training/evaluation; one row per lesion. Attention maps are kept apart from images."""

    x: np.ndarray            # float32 [N, P, H, W], normalised, NOT attended
    attention: np.ndarray    # float32 [N, H, W]
    labels: np.ndarray       # int64 [N] (index into classes)
    classes: tuple
    phases: tuple
    diameters_mm: np.ndarray
    patient_ids: list
    lesion_ids: list
    padded: np.ndarray       # bool [N]
    masks: np.ndarray        # bool [N, H, W] (reference-phase lesion mask, or disk from diameter)


def phantom_lesion_input(item, reader_offsets: bool = True, residual_mm: float = 1.5, rng=None) -> Lesion:
    """A ``Lesion`` for a phantom lesion; with ``reader_offsets`` each phase's centre is nudged to
    the true breath-hold shift plus Gaussian reader error of ``residual_mm`` (per axis)."""
    offsets = {}
    if reader_offsets:
        rng = rng if rng is not None else np.random.default_rng(0)
        offsets = {p: tuple(np.asarray(s) + rng.normal(0, residual_mm, 3)) if np.any(s) else (0.0, 0.0, 0.0)
                   for p, s in item.shifts_mm.items()}
    return Lesion(item.lesion_id, tuple(item.center_lps), item.diameter_mm, "LPS", offsets)


def lesion_sample(images, lesion: Lesion, phases=PHASES, spec: RoiSpec = RoiSpec(), mask=None):
    """(normalised stack, attention map, mask ROI, rois) for one lesion; attention from the mask
    when given (resampled on the reference phase's ROI), else from centre + diameter."""
    rois = extract_rois(images, lesion, phases, spec)
    shape = rois.array.shape[-2:]
    ref = "hepatobiliary" if "hepatobiliary" in rois.phases else rois.phases[0]
    if mask is not None:
        m = mask_roi(mask, rois.geometries[ref])
        if not m.any():
            raise InputError("lesion mask does not cover the lesion's ROI", lesion.lesion_id)
        G = attention_from_mask(m, rois.spacing_mm)
    else:
        rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
        c = rois.center_px
        m = (rr - c[0]) ** 2 + (cc - c[1]) ** 2 <= (lesion.diameter_mm / 2 / rois.spacing_mm) ** 2
        G = attention_from_diameter(shape, lesion.diameter_mm, rois.spacing_mm)
    return normalise_stack(rois.array, rois.phases), G, m, rois


def build_dataset(items, classes, phases=PHASES, spec: RoiSpec = RoiSpec(), use_masks: bool = True,
                  reader_offsets: bool = True, seed: int = 0) -> RoiDataset:
    """ROI dataset from phantom lesions (``PhantomLesion``) or anything with the same fields."""
    rng = np.random.default_rng(seed)
    xs, gs, ms, labels, padded = [], [], [], [], []
    for item in items:
        lesion = phantom_lesion_input(item, reader_offsets, rng=rng)
        x, G, m, rois = lesion_sample(item.images, lesion, phases, spec, item.mask if use_masks else None)
        xs.append(x)
        gs.append(G)
        ms.append(m)
        labels.append(list(classes).index(item.label))
        padded.append(rois.padded)
    return RoiDataset(np.stack(xs), np.stack(gs), np.asarray(labels, np.int64), tuple(classes), tuple(phases),
                      np.array([i.diameter_mm for i in items]), [i.patient_id for i in items],
                      [i.lesion_id for i in items], np.asarray(padded), np.stack(ms))
