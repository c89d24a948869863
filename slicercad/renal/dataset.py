"""The one sample path of the renal models: 4 phase images + mass -> windowed ROI slices + HU features + flags.

``mass_sample`` builds every model input -- training and evaluation (``study``), the reproduce tables, the
benchmark and the product (``inference.assess_masses``: panel, batch CLI). Steps:
1. phases checked (``check_phases``: the 4 of ``constants.PHASES``, none missing);
2. per phase, on that phase's own grid, ``n_slices`` ROIs (``ROI_SPEC``: 48 x 48 px over max(2 d, 40 mm))
   at the mass centre (+ the phase's offset) and at ``SLICE_STEP`` x d steps along that phase's slice
   normal (default 3 slices: -0.25 d, 0, +0.25 d), through ``slicercad.liver.roi.extract_phase_roi`` -- the
   project's one ROI resampler (sign-normalised in-plane axes, padding flagged);
3. HU features from the centre slice: core (disk of ``CORE_FRACTION`` x d) mean HU per phase, enhancement
   ΔHU = phase - unenhanced, fraction of core voxels < ``FAT_HU`` on the unenhanced phase;
4. flags (``flags``): > 4 cm (outside the model's range), macroscopic fat, hypo-/non-enhancing (indeterminate:
   a cyst or a hypovascular RCC): a flagged mass is reported, never scored;
5. window: HU clipped to ``HU_WINDOW`` and mapped to [0, 1] (HU are absolute: no per-ROI normalisation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, PhaseError
from ..liver.roi import Lesion, RoiSpec, extract_phase_roi, roi_axes
from .constants import (CORE_FRACTION, ENHANCED_PHASES, ENHANCEMENT_HU, FAT_FRACTION, FAT_HU, HU_WINDOW, PHASES,
                        SIZE_LIMIT_MM)

ROI_SPEC = RoiSpec(size_px=48, fov_factor=2.0, min_fov_mm=40.0)
N_SLICES = 3
SLICE_STEP = 0.25


def check_phases(images: dict, phases=PHASES, where=None) -> tuple:
    unknown = [p for p in phases if p not in PHASES]
    missing = [p for p in phases if p not in images]
    if unknown or missing:
        what = f"unknown phase name(s) {unknown}" if unknown else f"missing phase(s) {missing}"
        raise PhaseError(f"the renal model needs {list(phases)}: {what} (available {sorted(images)})", where)
    return tuple(p for p in PHASES if p in phases)


def window(hu) -> np.ndarray:
    lo, hi = HU_WINDOW
    return ((np.clip(np.asarray(hu, np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def core_mask(shape, diameter_mm, spacing_mm, fraction=CORE_FRACTION) -> np.ndarray:
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    c = ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
    return (rr - c[0]) ** 2 + (cc - c[1]) ** 2 <= (fraction * diameter_mm / 2 / spacing_mm) ** 2


def slice_offsets(diameter_mm, n_slices=N_SLICES, step=SLICE_STEP) -> np.ndarray:
    return (np.arange(n_slices) - (n_slices - 1) / 2.0) * step * float(diameter_mm)


@dataclass
class MassSample:
    mass_id: str
    phases: tuple
    x: np.ndarray                 # float32 [P, S, H, W], windowed to [0, 1]
    hu: np.ndarray                # float32 [P, H, W] centre-slice HU
    features: dict                # phase -> {"mean_hu", "delta_hu"}; "fat_fraction"
    flags: list
    geometries: dict              # phase -> sitk ROI image of the centre slice
    padded: bool
    diameter_mm: float
    spacing_mm: float
    notes: list = field(default_factory=list)

    @property
    def scorable(self) -> bool:
        return not self.flags


def hu_features(hu, phases, diameter_mm, spacing_mm) -> dict:
    core = core_mask(hu.shape[-2:], diameter_mm, spacing_mm)
    means = {p: float(hu[k][core].mean()) for k, p in enumerate(phases)}
    feats = {p: {"mean_hu": means[p], "delta_hu": means[p] - means[PHASES[0]]} for p in phases}
    feats["fat_fraction"] = float((hu[phases.index(PHASES[0])][core] < FAT_HU).mean())
    feats["peak_enhancement_hu"] = max(feats[p]["delta_hu"] for p in ENHANCED_PHASES if p in phases)
    return feats


def mass_flags(features, diameter_mm) -> list:
    out = []
    if diameter_mm > SIZE_LIMIT_MM:
        out.append(f"mass {diameter_mm:.1f} mm > {SIZE_LIMIT_MM:.0f} mm: outside the model's range (solid masses "
                   "<= 4 cm), not scored")
    if features["fat_fraction"] >= FAT_FRACTION:
        out.append(f"macroscopic fat: {100 * features['fat_fraction']:.0f} % of the core < {FAT_HU:.0f} HU on the "
                   "unenhanced phase (a classic angiomyolipoma), not scored")
    if features["peak_enhancement_hu"] < ENHANCEMENT_HU:
        out.append(f"hypo-/non-enhancing: peak enhancement {features['peak_enhancement_hu']:.0f} HU < "
                   f"{ENHANCEMENT_HU:.0f} HU: indeterminate (cyst vs hypovascular RCC, e.g. papillary), not scored")
    return out


def mass_sample(images: dict, mass: Lesion, phases=PHASES, spec: RoiSpec = ROI_SPEC, n_slices: int = N_SLICES,
                step: float = SLICE_STEP) -> MassSample:
    """The model input and HU features of one mass (see module doc)."""
    mass.check()
    phases = check_phases(images, phases, mass.lesion_id)
    centre = mass.center_lps()
    stacks, hu, geoms, padded = [], [], {}, False
    offsets = slice_offsets(mass.diameter_mm, n_slices, step)
    for p in phases:
        c = centre + mass.offset_lps(p)
        image = images[p] if images[p].GetPixelID() == sitk.sitkFloat32 else sitk.Cast(images[p], sitk.sitkFloat32)
        normal = roi_axes(image)[:, 2]
        slabs = []
        for off in offsets:
            arr, geom, frac = extract_phase_roi(image, c + off * normal, spec, mass.diameter_mm,
                                                mass.lesion_id, p)
            slabs.append(arr)
            padded |= frac > 0
            if off == offsets[len(offsets) // 2]:
                geoms[p] = geom
        stacks.append(np.stack(slabs))
        hu.append(slabs[len(slabs) // 2])
    hu = np.stack(hu).astype(np.float32)
    spacing = spec.field_of_view(mass.diameter_mm) / spec.size_px
    feats = hu_features(hu, phases, mass.diameter_mm, spacing)
    return MassSample(mass.lesion_id, phases, window(np.stack(stacks)), hu, feats,
                      mass_flags(feats, mass.diameter_mm), geoms, bool(padded), float(mass.diameter_mm), spacing)


def case_mass(case, reader_offsets: bool = False) -> Lesion:
    """The ``Lesion`` (centre + diameter) a reader would place on a phantom case (no per-phase offsets by default)."""
    offsets = {p: tuple(s) for p, s in case.shifts_mm.items()} if reader_offsets else {}
    return Lesion(case.mass_id, tuple(case.center_lps), case.diameter_mm, "LPS", offsets)


@dataclass
class RenalDataset:
    x: np.ndarray            # [N, P, S, H, W]
    labels: np.ndarray       # [N] 1 = malignant
    patient_ids: list
    mass_ids: list
    age: np.ndarray
    male: np.ndarray
    size_cm: np.ndarray
    mean_hu: np.ndarray      # [N, P]
    mass_types: list
    flags: list
    phases: tuple = PHASES


def build_dataset(cases, reader_offsets: bool = False) -> RenalDataset:
    """Samples of SYNTHETIC cases through ``mass_sample``; flagged masses are left out and listed in ``flags``
    as (mass_id, flags, mass_type, malignant)."""
    xs, keep = [], []
    rows = []
    for c in cases:
        s = mass_sample(c.images, case_mass(c, reader_offsets))
        if not s.scorable:
            keep.append((c.mass_id, s.flags, c.mass_type, int(c.malignant)))
            continue
        xs.append(s.x)
        rows.append((c, s))
    if not xs:
        raise InputError("no scorable masses", "build_dataset")
    return RenalDataset(np.stack(xs), np.array([c.malignant for c, _ in rows]), [c.patient_id for c, _ in rows],
                        [c.mass_id for c, _ in rows], np.array([c.age_years for c, _ in rows], float),
                        np.array([c.male for c, _ in rows], float), np.array([c.diameter_mm / 10 for c, _ in rows]),
                        np.array([[s.features[p]["mean_hu"] for p in PHASES] for _, s in rows]),
                        [c.mass_type for c, _ in rows], keep)
