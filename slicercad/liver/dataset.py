"""The one sample path of the liver models: phase images + lesion -> normalised ROI stack + attention.

``lesion_sample`` builds every model input, in training (``build_dataset`` for the SYNTHETIC
phantom, ``task._from_manifest`` for an exported training set), evaluation, the reproduce tables,
the benchmark and the product (``inference.classify_lesions``, which the panel and the batch
script call). Steps, in order:

1. ROI of each phase on that phase's own grid at the lesion centre plus the phase's offset
   (``roi.extract_rois``; field of view max(3 d, 48 mm) over ``size_px`` pixels);
2. units: the ADC ROI is brought to 1e-3 mm^2/s (``guard.adc_scale``: Real World Value Mapping
   units, else recognised from the values; eADC refused), with a note when converted;
3. normalisation ("roi-median"): every channel except ADC is divided by the median of its ROI
   (the field of view is >= 3 diameters, so the median is parenchyma), which removes scanner gain;
   ADC is quantitative and kept in 1e-3 mm^2/s;
4. attention: from what the product has -- the ROI centre and the measured diameter (default,
   ``attention="diameter"``) -- or, in the second mode (``attention="mask"``, a drawn segment),
   from a mask: its centroid, sigma never below the measured radius. The two modes are
   evaluated and reported separately; the phantom's ground-truth mask is never the default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .attention import attention_from_diameter, attention_from_mask
from .guard import adc_affine, channel_features, training_distribution
from .phases import PHASES, REFERENCE_PHASE
from .roi import Lesion, RoiSpec, extract_rois, mask_roi

QUANTITATIVE = ("ADC",)
NORMALISATION = "roi-median"
ATTENTION_SOURCES = ("diameter", "mask")


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


def study_adc_scale(images: dict, acquisition: dict | None = None) -> tuple:
    """(factor, note, offset) of a study's ADC map, ``raw * factor + offset`` in 1e-3 mm^2/s (once per
    study; see ``guard.adc_affine``: Real World Value Mapping slope and intercept, plausibility)."""
    if "ADC" not in images:
        return 1.0, None, 0.0
    factor, offset, note = adc_affine(sitk.GetArrayViewFromImage(images["ADC"]), acquisition, "ADC")
    return factor, note, offset


def disk_mask(shape, diameter_mm: float, spacing_mm: float) -> np.ndarray:
    """bool [H, W]: the disk of the measured diameter at the ROI centre."""
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    c = ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
    return (rr - c[0]) ** 2 + (cc - c[1]) ** 2 <= (diameter_mm / 2 / spacing_mm) ** 2


def lesion_sample(images, lesion: Lesion, phases=PHASES, spec: RoiSpec = RoiSpec(), mask=None, adc=None,
                  acquisition: dict | None = None):
    """(normalised stack [P, H, W], attention map [H, W], lesion mask ROI [H, W], rois) of one lesion.

    THE sample path (module doc). ``mask`` (sitk, any grid): attention from the mask (second mode);
    None: from the ROI centre and the measured diameter. ``adc``: (factor, note) from
    ``study_adc_scale`` when the caller classifies many lesions of one study (else measured here,
    with ``acquisition``'s Real World Value Mapping units). The returned mask is the mask on the
    reference phase's ROI when given, else the disk of the measured diameter; ``rois.notes`` holds
    unit conversions.
    """
    rois = extract_rois(images, lesion, phases, spec)
    shape = rois.array.shape[-2:]
    if "ADC" in rois.phases:
        factor, note, *rest = adc if adc is not None else study_adc_scale(images, acquisition)
        k = rois.phases.index("ADC")
        rois.array[k] = rois.array[k] * np.float32(factor) + np.float32(rest[0] if rest else 0.0)
        if note:
            rois.notes.append(note)
    ref = REFERENCE_PHASE if REFERENCE_PHASE in rois.phases else rois.phases[0]
    if mask is not None:
        m = mask_roi(mask, rois.geometries[ref])
        if not m.any():
            raise InputError("lesion mask does not cover the lesion's ROI", lesion.lesion_id)
        G = attention_from_mask(m, rois.spacing_mm, lesion.diameter_mm)
    else:
        m = disk_mask(shape, lesion.diameter_mm, rois.spacing_mm)
        G = attention_from_diameter(shape, lesion.diameter_mm, rois.spacing_mm)
    return normalise_stack(rois.array, rois.phases), G, m, rois


def max_in_plane_spacing(images: dict) -> float:
    """The coarsest in-plane spacing (mm) over a study's phases (what the card's range checks)."""
    return float(max(max(img.GetSpacing()[:2]) for img in images.values()))


@dataclass
class RoiDataset:
    """Arrays for training/evaluation; one row per lesion. Attention maps are kept apart from images."""

    x: np.ndarray            # float32 [N, P, H, W], normalised, NOT attended
    attention: np.ndarray    # float32 [N, H, W] (from ``attention_source``)
    labels: np.ndarray       # int64 [N] (index into classes)
    classes: tuple
    phases: tuple
    diameters_mm: np.ndarray
    patient_ids: list
    lesion_ids: list
    padded: np.ndarray       # bool [N]
    masks: np.ndarray        # bool [N, H, W]: where the lesion is (phantom truth on the ROI plane when known,
                             # else the measured-diameter disk) -- for evaluation (focus, occlusion) only
    disks: np.ndarray = None  # bool [N, H, W]: disk of the measured diameter (what the product knows)
    lesions: list = field(default_factory=list)        # the ``Lesion`` each sample was cut for (with offsets)
    attention_source: str = "diameter"
    acquisitions: list = field(default_factory=list)   # per sample {field_strength_t, b_value}
    spacings_mm: np.ndarray = None                     # per sample: coarsest in-plane spacing of its study
    roi_spacings_mm: np.ndarray = None                 # per sample: ROI pixel size (field of view / size_px)

    def features(self) -> np.ndarray:
        """[N, P, 4] ``guard.channel_features`` of every normalised stack."""
        return np.stack([channel_features(s) for s in self.x])

    def distribution(self) -> dict:
        """The training distribution of these samples (``guard.training_distribution``)."""
        return training_distribution(self.features(), self.phases, self.acquisitions, self.diameters_mm,
                                     [] if self.spacings_mm is None else self.spacings_mm)


def phantom_lesion_input(item, reader_offsets: bool = True, residual_mm: float = 1.5, rng=None) -> Lesion:
    """A ``Lesion`` for a phantom lesion; with ``reader_offsets`` each phase's centre is nudged to
    the true breath-hold shift plus Gaussian reader error of ``residual_mm`` (per axis); ADC keeps DWI's."""
    offsets = {}
    if reader_offsets:
        rng = rng if rng is not None else np.random.default_rng(0)
        offsets = {p: tuple(np.asarray(s) + rng.normal(0, residual_mm, 3)) if np.any(s) else (0.0, 0.0, 0.0)
                   for p, s in item.shifts_mm.items()}
        if "DWI" in offsets and "ADC" in offsets:  # the ADC map is computed from the DWI: one acquisition, one offset
            offsets["ADC"] = offsets["DWI"]
    return Lesion(item.lesion_id, tuple(item.center_lps), item.diameter_mm, "LPS", offsets)


def phantom_acquisition(item) -> dict:
    """What a scanner's tags would say about a phantom lesion's study."""
    return {"field_strength_t": float(item.field_strength_t), "b_value": float(item.b_value)}


def _attention_source(attention, use_masks) -> str:
    if use_masks is not None:                      # the old keyword
        attention = "mask" if use_masks else "diameter"
    if isinstance(attention, bool):
        attention = "mask" if attention else "diameter"
    if attention not in ATTENTION_SOURCES:
        raise InputError(f"attention must be one of {ATTENTION_SOURCES}, got {attention!r}", "attention")
    return attention


def build_dataset(items, classes, phases=PHASES, spec: RoiSpec = RoiSpec(), attention: str = "diameter",
                  reader_offsets: bool = True, seed: int = 0, use_masks: bool | None = None) -> RoiDataset:
    """ROI dataset from phantom lesions (``PhantomLesion``) or anything with the same fields, through
    ``lesion_sample`` -- the product's path. ``attention``: 'diameter' (ROI centre + measured
    diameter: the product's default) or 'mask' (the lesion's mask: the second mode)."""
    source = _attention_source(attention, use_masks)
    rng = np.random.default_rng(seed)
    xs, gs, ms, ds, labels, padded, lesions, acqs, spacings, roi_sp = [], [], [], [], [], [], [], [], [], []
    for item in items:
        lesion = phantom_lesion_input(item, reader_offsets, rng=rng)
        acq = phantom_acquisition(item) if hasattr(item, "b_value") else {}
        truth = getattr(item, "mask", None)
        x, G, m, rois = lesion_sample(item.images, lesion, phases, spec, truth if source == "mask" else None,
                                      acquisition=acq)
        disk = disk_mask(x.shape[-2:], lesion.diameter_mm, rois.spacing_mm)
        if truth is not None:
            m = mask_roi(truth, rois.geometries[REFERENCE_PHASE if REFERENCE_PHASE in rois.phases
                                                else rois.phases[0]])
        xs.append(x)
        gs.append(G)
        ms.append(m)
        ds.append(disk)
        labels.append(list(classes).index(item.label))
        padded.append(rois.padded)
        lesions.append(lesion)
        acqs.append(acq)
        spacings.append(max_in_plane_spacing(item.images))
        roi_sp.append(rois.spacing_mm)
    return RoiDataset(np.stack(xs), np.stack(gs), np.asarray(labels, np.int64), tuple(classes), tuple(phases),
                      np.array([i.diameter_mm for i in items]), [i.patient_id for i in items],
                      [i.lesion_id for i in items], np.asarray(padded), np.stack(ms), np.stack(ds), lesions,
                      source, acqs, np.asarray(spacings), np.asarray(roi_sp))
