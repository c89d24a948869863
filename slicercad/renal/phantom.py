"""SYNTHETIC 4-phase renal CT phantom with small renal masses (1-4 cm). Not patient data.

Per case: a kidney (ellipsoid: cortex shell, medulla, collecting system in the sinus) in perirenal fat and
soft tissue, and one mass (some patients two) on the cortex. Each phase is rendered on its own grid
(own slice thickness and z origin, a small breath-hold shift of the anatomy), blurred 1 mm (partial
volume) with Gaussian noise of 12 HU, stored as int16 HU.

Tissue HU per phase (``TISSUE_HU``; unenhanced, corticomedullary ~35 s, nephrographic ~100 s, excretory
~8 min), textbook values: cortex 30 / 170 / 160 / 120, medulla 30 / 70 / 160 / 130 (corticomedullary
differentiation, then a homogeneous nephrogram), collecting system 10 / 10 / 20 / 600 (excreted contrast),
fat -100, soft tissue 45 / 60 / 80 / 70 (e.g. Szolar DH et al., Radiology 1997;202:211; Kim JK et al.,
Radiology 2002;224:695 for mass enhancement by subtype).

Mass types (``MASS_TYPES``: mean HU per phase, within-mass heterogeneity SD, pattern):
  clear-cell RCC   35 / 130 / 100 / 75  avid heterogeneous corticomedullary enhancement (non-enhancing
                                        necrotic foci), washout;
  papillary RCC    35 /  55 /  70 / 75  low, slow, progressive, homogeneous;
  chromophobe RCC  35 /  85 /  95 / 80  moderate, fairly homogeneous;
  oncocytoma       35 / 115 / 105 / 80  central stellate scar (low early, fills late) and segmental
                                        enhancement inversion (one half brighter early, the other late);
  fat-poor AML     45 /  95 /  90 / 70  high unenhanced attenuation, homogeneous.
Each mass's enhancement (phase mean - unenhanced mean) is its type's times a factor ~ N(1, ``ENHANCEMENT_CV``
= 0.25), shared by the enhanced phases, + 5 HU per phase (unenhanced mean + N(0, 5 HU)), so the classes
overlap while a type's spread scales with its enhancement (papillary RCC, nominal peak +40 HU: SD ~ 10 HU,
as reported for papillary RCC; clear-cell +95 HU: SD ~ 24 HU). Within-mass texture scales with the phase's
enhancement (the type's SD at its peak enhancement, ``UNENHANCED_TEXTURE_SD_HU`` = 3 HU unenhanced: real
unenhanced CT of a solid mass is nearly homogeneous); necrotic foci keep the unenhanced value in every phase.
Flag cases (not in the scored population): classic AML with macroscopic fat (~ -60 HU component) and a
hyperdense cyst (60 HU, no enhancement).

Population (``bundled_statistics()`` from KiTS23, solid masses <= 4 cm): benign fraction 28 / 236, subtype mix
within class renormalised over the modelled types (malignant: ccRCC 156, papillary 25, chromophobe 15;
benign: oncocytoma 17, angiomyolipoma 7 -- surgically resected AMLs are mostly fat-poor), sex from the
class's male fraction, age ~ N(mean, sd) of the class clipped to its range, size from the class's linear
model size ~ age + male + N(0, residual sd), clipped to 1-4 cm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .constants import PHASES
from .kits23 import bundled_statistics

TISSUE_HU = {
    "fat": (-100.0, -100.0, -100.0, -100.0),
    "soft": (45.0, 60.0, 80.0, 70.0),
    "cortex": (30.0, 170.0, 160.0, 120.0),
    "medulla": (30.0, 70.0, 160.0, 130.0),
    "collecting": (10.0, 10.0, 20.0, 600.0),
}
MASS_TYPES = {   # name: (malignant, HU per phase, heterogeneity SD HU, pattern)
    "clear_cell_rcc": (1, (35.0, 130.0, 100.0, 75.0), 22.0, "necrosis"),
    "papillary_rcc": (1, (35.0, 55.0, 70.0, 75.0), 8.0, "homogeneous"),
    "chromophobe_rcc": (1, (35.0, 85.0, 95.0, 80.0), 12.0, "homogeneous"),
    "oncocytoma": (0, (35.0, 115.0, 105.0, 80.0), 12.0, "scar_inversion"),
    "fat_poor_aml": (0, (45.0, 95.0, 90.0, 70.0), 6.0, "homogeneous"),
}
FLAG_TYPES = {
    "classic_aml": (0, (-60.0, -20.0, -25.0, -35.0), 10.0, "fat"),
    "hyperdense_cyst": (0, (60.0, 62.0, 63.0, 62.0), 5.0, "homogeneous"),
}
MALIGNANT_MIX = {"clear_cell_rcc": 156, "papillary_rcc": 25, "chromophobe_rcc": 15}
BENIGN_MIX = {"oncocytoma": 17, "fat_poor_aml": 7}
ENHANCEMENT_CV = 0.25
UNENHANCED_TEXTURE_SD_HU = 3.0
NOISE_HU = 12.0
BLUR_MM = 1.0
GRID = ((96, 96), 1.25)                     # in-plane voxels and spacing (mm)
SLICES = {"unenhanced": (14, 5.0), "corticomedullary": (28, 2.5), "nephrographic": (28, 2.5),
          "excretory": (14, 5.0)}           # slices, thickness (mm) per phase: each phase its own grid
SIZE_RANGE_CM = (1.0, 4.0)


@dataclass
class RenalCase:
    """One SYNTHETIC mass: its 4 phase images, clinical fields and truth (LPS mm)."""

    patient_id: str
    mass_id: str
    images: dict
    center_lps: tuple
    diameter_mm: float
    mass_type: str
    malignant: int
    age_years: float
    male: int
    flag_type: str | None = None
    shifts_mm: dict = field(default_factory=dict)
    synthetic: bool = True


def _grid(n_slices, thickness, z_offset, centre):
    (nx, ny), sp = GRID
    img = sitk.Image([nx, ny, n_slices], sitk.sitkFloat32)
    img.SetSpacing((sp, sp, thickness))
    half = np.array([(nx - 1) * sp, (ny - 1) * sp, (n_slices - 1) * thickness]) / 2.0
    img.SetOrigin(tuple(np.asarray(centre, float) - half + np.array([0.0, 0.0, z_offset])))
    return img


def _points(img):
    size = img.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in size[::-1]), indexing="ij")
    sp, org = np.asarray(img.GetSpacing()), np.asarray(img.GetOrigin())
    return np.stack([i * sp[0] + org[0], j * sp[1] + org[1], k * sp[2] + org[2]], axis=-1)


def texture_sd(kind_row, phase_index) -> float:
    """Within-mass heterogeneity SD (HU) of a type in one phase: the type's SD at its peak nominal enhancement,
    scaled by the phase's nominal enhancement; ``UNENHANCED_TEXTURE_SD_HU`` on the unenhanced phase."""
    _, means, sd, _ = kind_row
    if phase_index == 0:
        return UNENHANCED_TEXTURE_SD_HU
    enh = np.asarray(means[1:], float) - means[0]
    peak = float(np.max(np.abs(enh)))
    return max(UNENHANCED_TEXTURE_SD_HU, sd * abs(float(enh[phase_index - 1])) / peak) if peak > 0 else \
        UNENHANCED_TEXTURE_SD_HU


def _mass_values(kind_row, phase_means, pts, centre, radii, rot, rng_state, phase_index):
    """HU of the mass at points ``pts`` (inside-mask applied by the caller) for one phase."""
    pattern = kind_row[3]
    local = (pts - centre) @ rot
    r = np.sqrt(np.sum((local / radii) ** 2, axis=-1))
    base = np.full(pts.shape[:-1], phase_means[phase_index])
    tex = rng_state["texture"]                           # fixed texture field (same across phases)
    base = base + texture_sd(kind_row, phase_index) * tex
    if pattern == "necrosis":
        nec = rng_state["necrosis"]
        base = np.where(nec, phase_means[0] + UNENHANCED_TEXTURE_SD_HU * tex, base)   # necrotic foci do not enhance
    elif pattern == "scar_inversion":
        scar = r < 0.3
        scar_hu = (35.0, 50.0, 80.0, 95.0)[phase_index]          # central scar: low early, fills late
        side = local[..., 0] > 0
        inv = (25.0, -25.0, 0.0, 20.0)[phase_index] if phase_index else 0.0   # segmental inversion
        base = np.where(side, base + inv, base - inv)
        base = np.where(scar, scar_hu + 5.0 * tex, base)
    elif pattern == "fat":
        base = np.where(rng_state["fat"], -90.0 + 5.0 * tex, base + 80.0)   # macroscopic fat (about half the mass)
    return base


def draw_phase_means(rng, row) -> np.ndarray:
    """One mass's mean HU per phase: the type's unenhanced HU + N(0, 5), its enhancement times a factor
    ~ N(1, ``ENHANCEMENT_CV``) shared by the enhanced phases, + N(0, 5) per phase (module doc)."""
    means = np.array(row[1], float)
    factor = max(0.0, rng.normal(1.0, ENHANCEMENT_CV))
    means[0] += rng.normal(0.0, 5.0)
    means[1:] = means[0] + factor * (means[1:] - row[1][0]) + rng.normal(0.0, 5.0, 3)
    return means


def render_case(rng, mass_type, diameter_mm, patient_id="P0000", mass_id="M0000", malignant=None,
                age_years=60.0, male=1, flag_type=None) -> RenalCase:
    """Render one SYNTHETIC case with the given mass (see module doc)."""
    table = {**MASS_TYPES, **FLAG_TYPES}
    if mass_type not in table:
        raise InputError(f"mass type must be one of {sorted(table)}, got {mass_type!r}", "mass_type")
    if not (5.0 <= diameter_mm <= 60.0):
        raise InputError(f"diameter must be 5-60 mm, got {diameter_mm}", "diameter_mm")
    row = table[mass_type]
    means = draw_phase_means(rng, row) if flag_type is None else np.array(row[1], float)
    centre = np.array([rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-3, 3)])
    # kidney: ellipsoid whose lateral cortex passes through the mass centre (mass half exophytic on average)
    k_radii = np.array([30.0, 55.0, 45.0]) * rng.uniform(0.9, 1.1)
    depth = rng.uniform(-0.25, 0.35) * diameter_mm
    k_centre = centre - np.array([k_radii[0] - depth, rng.uniform(-15, 15), rng.uniform(-10, 10)])
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    radii = diameter_mm / 2.0 * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)])
    tex_seed = int(rng.integers(1 << 31))
    images, shifts = {}, {}
    for p_i, phase in enumerate(PHASES):
        n, th = SLICES[phase]
        grid = _grid(n, th, rng.uniform(-th / 2, th / 2), (0.0, 0.0, 0.0))
        shift = np.zeros(3) if p_i == 0 else np.array([rng.normal(0, 0.7), rng.normal(0, 0.7), rng.normal(0, 1.0)])
        shifts[phase] = tuple(shift)
        pts = _points(grid) - shift
        hu = np.full(pts.shape[:-1], TISSUE_HU["soft"][p_i])
        kr = np.sqrt(np.sum(((pts - k_centre) / k_radii) ** 2, axis=-1))
        hu = np.where(kr < 1.25, TISSUE_HU["fat"][p_i], hu)
        hu = np.where(kr < 1.0, TISSUE_HU["cortex"][p_i], hu)
        hu = np.where(kr < 0.72, TISSUE_HU["medulla"][p_i], hu)
        sinus = np.sqrt(np.sum(((pts - k_centre - np.array([-10.0, 0, 0])) / (k_radii * [0.3, 0.45, 0.35])) ** 2,
                               axis=-1)) < 1.0
        hu = np.where(sinus, TISSUE_HU["collecting"][p_i], hu)
        local = (pts - centre) @ rot
        inside = np.sum((local / radii) ** 2, axis=-1) < 1.0
        trng = np.random.default_rng(tex_seed)   # same texture field (in mass coordinates) in every phase
        coarse = trng.normal(0, 1, (6, 6, 6))
        idx = np.clip(((local / radii + 1.0) / 2.0 * 5.99).astype(int), 0, 5)
        tex = coarse[idx[..., 0], idx[..., 1], idx[..., 2]]
        state = {"texture": tex, "necrosis": tex > 1.0, "fat": tex > 0.0}
        hu = np.where(inside, _mass_values(row, means, pts, centre, radii, rot, state, p_i), hu)
        img = sitk.GetImageFromArray(hu.astype(np.float32))
        img.CopyInformation(grid)
        img = sitk.SmoothingRecursiveGaussian(img, BLUR_MM)
        arr = sitk.GetArrayFromImage(img) + rng.normal(0, NOISE_HU, hu.shape)
        out = sitk.GetImageFromArray(np.clip(np.round(arr), -1024, 3071).astype(np.int16))
        out.CopyInformation(grid)
        images[phase] = out
    return RenalCase(patient_id, mass_id, images, tuple(centre), float(diameter_mm), mass_type,
                     int(row[0] if malignant is None else malignant), float(age_years), int(male), flag_type, shifts)


def _draw_mix(rng, mix):
    names = list(mix)
    w = np.array([mix[n] for n in names], float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def draw_population(n_patients: int, seed: int = 0, second_mass_fraction: float = 0.1,
                    benign_fraction: float | None = None) -> list:
    """Clinical draws per mass (no images): dicts of patient_id, mass_id, mass_type, malignant, age, male,
    diameter_mm, from KiTS23's small-mass distributions (module doc). ``benign_fraction`` None = KiTS23's."""
    stats = bundled_statistics()
    rng = np.random.default_rng([seed, 404])
    counts = stats["counts"]
    pb = counts["n_benign"] / counts["n_masses"] if benign_fraction is None else float(benign_fraction)
    out = []
    for i in range(int(n_patients)):
        pid = f"RP{seed:02d}{i:04d}"
        n_mass = 2 if rng.random() < second_mass_fraction else 1
        benign = rng.random() < pb
        cls = stats["classes"]["benign" if benign else "malignant"]
        male = int(rng.random() < cls["male_fraction"])
        age = float(np.clip(rng.normal(cls["age_mean"], cls["age_sd"]), *cls["age_range"]))
        for m in range(n_mass):
            mt = _draw_mix(rng, BENIGN_MIX if benign else MALIGNANT_MIX)
            sm = cls["size_model"]
            size = sm["intercept"] + sm["age"] * age + sm["male"] * male + rng.normal(0, sm["residual_sd"])
            size = float(np.clip(size, *SIZE_RANGE_CM))
            out.append({"patient_id": pid, "mass_id": f"{pid}_m{m}", "mass_type": mt, "malignant": int(not benign),
                        "age_years": round(age), "male": male, "diameter_mm": round(size * 10.0, 1)})
    return out


def generate_cases(n_patients: int, seed: int = 0, **kw) -> list:
    """SYNTHETIC ``RenalCase`` list for ``n_patients`` drawn patients (deterministic by seed)."""
    rng = np.random.default_rng([seed, 405])
    return [render_case(rng, d["mass_type"], d["diameter_mm"], d["patient_id"], d["mass_id"], d["malignant"],
                        d["age_years"], d["male"]) for d in draw_population(n_patients, seed, **kw)]


def flag_case(kind: str, seed: int = 0, diameter_mm: float = 25.0) -> RenalCase:
    """A SYNTHETIC case that must be flagged, not scored: 'classic_aml' (macroscopic fat) or 'hyperdense_cyst'."""
    if kind not in FLAG_TYPES:
        raise InputError(f"flag case must be one of {sorted(FLAG_TYPES)}, got {kind!r}", "kind")
    return render_case(np.random.default_rng([seed, 406]), kind, diameter_mm, f"FLAG{seed:03d}",
                       f"{kind}_{seed}", 0, 55.0, 1, flag_type=kind)


SERIES = {"unenhanced": (None, "Kidney 5.0 unenhanced"), "corticomedullary": (35.0, "Kidney 2.5 corticomedullary"),
          "nephrographic": (100.0, "Kidney 2.5 nephrographic"), "excretory": (480.0, "Kidney 5.0 excretory")}


def write_case_dicom(case: RenalCase, folder, patient: dict | None = None, start_time: float = 36000.0,
                     phases=PHASES) -> dict:
    """Write a SYNTHETIC case's phases as CT DICOM series (one sub-folder each; SYNTHETIC in every description);
    returns {phase: series folder}. ``patient``: DICOM patient keywords (default: age/sex of the case)."""
    from pathlib import Path

    from pydicom.uid import generate_uid

    from ..dicom.write import write_series

    folder = Path(folder)
    study_uid = generate_uid(entropy_srcs=["slicercad-renal", case.mass_id])
    pat = {"PatientName": "SYNTHETIC^RENAL", "PatientID": case.patient_id,
           "PatientAge": f"{int(round(case.age_years)):03d}Y", "PatientSex": "M" if case.male else "F"}
    pat.update(patient or {})
    pat = {k: v for k, v in pat.items() if v is not None}
    out = {}
    for n, p in enumerate(phases, start=1):
        delay, desc = SERIES[p]
        t = start_time + (0.0 if delay is None else 45.0 + delay)
        tags = {"AcquisitionTime": t, "SeriesTime": t, "ContentTime": t, "ImageComments": "SYNTHETIC renal phantom",
                "KVP": 120, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "StudyDate": "20240105"}
        if delay is not None:
            tags.update(ContrastBolusAgent="Iopamidol 370", ContrastBolusRoute="IV")
        sub = folder / f"{n:02d}_{p}"
        write_series(case.images[p], sub, modality="CT", series_description=f"{desc} SYNTHETIC", study_uid=study_uid,
                     series_uid=generate_uid(entropy_srcs=["slicercad-renal", case.mass_id, p]), series_number=n,
                     tags=tags, patient=pat, seed=n)
        out[p] = sub
    return out
