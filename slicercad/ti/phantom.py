"""SYNTHETIC short-axis TI scouts from inversion-recovery physics (no real patient data).

Tissues: LV blood pool, myocardium (optional subendocardial or transmural scar sector), RV blood,
liver, subcutaneous and epicardial fat, lungs, chest wall. Post-contrast T1 per tissue is drawn from
ranges typical 10–20 min after 0.1–0.2 mmol/kg gadolinium (1.5 T / 3 T; e.g. Kellman & Arai 2012,
Messroghli 2017 T1-mapping consensus): below. Look-Locker signal per tissue
``|A - B exp(-TI/T1*)|`` with ``1/T1* = 1/T1 + c`` (readout-driven, one c per scan), ``A = M0 T1*/T1``,
``B = A + eta M0`` (inversion efficiency eta). Complex Gaussian noise -> Rician magnitude, smooth coil
shading, sub-pixel motion per frame (breathing/heart position), varied TI start, spacing and jitter.
The offset category of a frame cannot be read from its index, TI tag or file name: the null itself
varies (T1, c, eta), the TI start and step vary, and written files get shuffled names.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError

# post-contrast T1 ranges (ms) and proton density (relative)
T1_RANGES_MS = {
    1.5: {"blood": (250, 400), "myocardium": (380, 520), "scar": (200, 320), "liver": (330, 500),
          "fat": (240, 290), "lung": (700, 1100), "muscle": (600, 800)},
    3.0: {"blood": (330, 480), "myocardium": (480, 640), "scar": (250, 380), "liver": (420, 600),
          "fat": (350, 400), "lung": (800, 1200), "muscle": (750, 950)},
}
PROTON_DENSITY = {"blood": 1.0, "myocardium": 0.78, "scar": 0.82, "liver": 0.72, "fat": 0.9,
                  "lung": 0.12, "muscle": 0.7, "background": 0.0}
LABELS = ("background", "blood", "myocardium", "scar", "liver", "fat", "lung", "muscle", "rv_blood")
LABEL = {name: i for i, name in enumerate(LABELS)}


@dataclasses.dataclass
class ScoutPhantom:
    """One SYNTHETIC scout: frames [n, rows, cols], TIs, tissue labels (frame 0) and the truth."""

    frames: np.ndarray
    ti_ms: np.ndarray
    labels: np.ndarray
    pixel_spacing_mm: tuple
    t1_ms: dict
    t1star_ms: dict
    null_ms: dict                 # true scout null per tissue ('myocardium', 'blood', ...)
    field_strength_t: float
    snr: float
    scar: str
    patient_id: str
    meta: dict

    @property
    def myo_null_ms(self) -> float:
        return float(self.null_ms["myocardium"])

    def offsets_ms(self) -> np.ndarray:
        return self.ti_ms - self.myo_null_ms


def _ellipse(x, y, cx, cy, ax, ay, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def _anatomy(rng, shape, spacing, scar):
    """Label-map drawing function of mm coordinates (shifted per frame for motion)."""
    body = (rng.uniform(150, 180), rng.uniform(105, 130))
    fat_mm = rng.uniform(8, 20)
    heart = (rng.uniform(-15, 15), rng.uniform(-10, 10))
    r_blood = rng.uniform(17, 27)
    wall = rng.uniform(7, 11)
    rv_dir = rng.uniform(np.pi * 0.85, np.pi * 1.15)
    rot = rng.uniform(-0.3, 0.3)
    scar_angle, scar_span = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.8)
    liver_c = (rng.uniform(-90, -40), rng.uniform(40, 80))

    def draw(x, y):
        lab = np.zeros(x.shape, np.uint8)
        inside = _ellipse(x, y, 0, 0, body[0], body[1], rot)
        lab[inside] = LABEL["fat"]
        inner = _ellipse(x, y, 0, 0, body[0] - fat_mm, body[1] - fat_mm, rot)
        lab[inner] = LABEL["muscle"]
        thorax = _ellipse(x, y, 0, -5, body[0] - fat_mm - 12, body[1] - fat_mm - 12, rot)
        lab[thorax] = LABEL["lung"]
        lab[thorax & _ellipse(x, y, liver_c[0], liver_c[1], 85, 55, rot + 0.4)] = LABEL["liver"]
        hx, hy = heart
        r_out = r_blood + wall
        lab[thorax & (np.hypot(x - hx, y - hy) <= r_out + rng_fat)] = LABEL["fat"]   # epicardial fat
        rvx, rvy = hx + np.cos(rv_dir) * r_out * 0.9, hy + np.sin(rv_dir) * r_out * 0.9
        rv = _ellipse(x, y, rvx, rvy, r_out * 1.05, r_out * 0.7, rv_dir)
        lab[rv & thorax] = LABEL["myocardium"]   # RV free wall: myocardium
        lab[_ellipse(x, y, rvx, rvy, r_out * 1.05 - 3.5, r_out * 0.7 - 3.5, rv_dir) & thorax] = LABEL["rv_blood"]
        d = np.hypot(x - hx, y - hy)
        lab[d <= r_out] = LABEL["myocardium"]
        if scar != "none":
            ang = np.angle(np.exp(1j * (np.arctan2(y - hy, x - hx) - scar_angle)))
            depth = r_blood + (wall if scar == "transmural" else wall * 0.5)
            lab[(np.abs(ang) <= scar_span / 2) & (d <= depth) & (d > r_blood)] = LABEL["scar"]
        lab[d <= r_blood] = LABEL["blood"]
        return lab

    rng_fat = rng.uniform(0, 3)
    return draw, heart


def make_scout(seed: int, field_strength_t: float = 1.5, snr: float | None = None, scar: str | None = None,
               shape=(128, 128), n_frames: int | None = None, ti_start_ms: float | None = None,
               ti_step_ms: float | None = None, motion_mm: float = 1.0, supersample: int = 2,
               patient_id: str | None = None, ti_offsets_ms=None) -> ScoutPhantom:
    """One SYNTHETIC TI scout. ``snr``: myocardial M0 over the noise sd (random 15–60 when None).
    ``ti_offsets_ms``: render only frames at these offsets from the myocardial null (training samples)."""
    if field_strength_t not in T1_RANGES_MS:
        raise InputError(f"field strength must be one of {sorted(T1_RANGES_MS)} T, got {field_strength_t}",
                         "field_strength_t")
    rng = np.random.default_rng(seed)
    scar = scar if scar is not None else str(rng.choice(["none", "none", "subendocardial", "transmural"]))
    if scar not in ("none", "subendocardial", "transmural"):
        raise InputError(f"scar must be none, subendocardial or transmural, got {scar!r}", "scar")
    snr = float(rng.uniform(15, 60)) if snr is None else float(snr)
    spacing = float(rng.uniform(2.2, 2.8))
    t1 = {k: float(rng.uniform(*v)) for k, v in T1_RANGES_MS[field_strength_t].items()}
    t1["rv_blood"] = t1["blood"] * rng.uniform(0.97, 1.03)
    c = 1.0 / rng.uniform(1200, 3000)          # readout-driven relaxation rate (1/ms)
    eta = rng.uniform(0.92, 1.0)
    t1star = {k: 1.0 / (1.0 / v + c) for k, v in t1.items()}
    a = {k: t1star[k] / t1[k] for k in t1}      # per unit M0
    b = {k: a[k] + eta for k in t1}
    null = {k: float(t1star[k] * np.log(b[k] / a[k])) for k in t1}
    n = int(n_frames or rng.integers(16, 29))
    start = float(ti_start_ms if ti_start_ms is not None else rng.uniform(70, 190))
    step = float(ti_step_ms if ti_step_ms is not None else rng.uniform(18, 45))
    ti = start + step * np.arange(n) + rng.uniform(-2, 2, n) * (step > 4)
    ti = np.round(np.sort(ti), 1)
    if ti_offsets_ms is not None:
        ti = np.round(null["myocardium"] + np.asarray(ti_offsets_ms, float), 1)
        n = len(ti)
    draw, heart = _anatomy(rng, shape, spacing, scar)
    rows, cols = shape
    ss = supersample
    yy, xx = np.mgrid[0:rows * ss, 0:cols * ss]
    x = ((xx + 0.5) / ss - cols / 2) * spacing
    y = ((yy + 0.5) / ss - rows / 2) * spacing
    tissue_names = [name for name in LABELS if name != "background"]
    pd = np.array([0.0] + [PROTON_DENSITY.get("blood" if t == "rv_blood" else t, 0.7) for t in tissue_names])
    shading_dir = rng.uniform(0, 2 * np.pi)
    shade = (1 + rng.uniform(0.1, 0.35) * ((x * np.cos(shading_dir) + y * np.sin(shading_dir)) / 180.0)
             + rng.uniform(0.1, 0.4) * np.exp(-((x - rng.uniform(-60, 60)) ** 2 + (y + 120) ** 2) / (2 * 90.0 ** 2)))
    shade = shade.reshape(rows, ss, cols, ss).mean((1, 3))
    sigma = PROTON_DENSITY["myocardium"] / snr
    frames = np.empty((n, rows, cols), np.float32)
    labels0 = None
    for i, t in enumerate(ti):
        dx, dy = rng.normal(0, motion_mm, 2) if motion_mm else (0.0, 0.0)
        lab = draw(x - dx, y - dy)
        if labels0 is None:
            lab0 = draw(x, y)
            labels0 = lab0.reshape(rows, ss, cols, ss)[:, 0, :, 0] if ss > 1 else lab0
            # majority label per output pixel
            votes = np.stack([(lab0 == k).reshape(rows, ss, cols, ss).mean((1, 3)) for k in range(len(LABELS))])
            labels0 = votes.argmax(0).astype(np.uint8)
        sig = np.zeros(len(LABELS))
        for k, name in enumerate(tissue_names, start=1):
            sig[k] = a[name] - b[name] * np.exp(-t / t1star[name])
        signed = (pd * sig)[lab].reshape(rows, ss, cols, ss).mean((1, 3)) * shade
        noisy = np.hypot(signed + rng.normal(0, sigma, signed.shape), rng.normal(0, sigma, signed.shape))
        frames[i] = (noisy * 1000.0).astype(np.float32)
    pid = patient_id or f"P{seed:05d}"
    meta = {"rr_ms": float(rng.uniform(700, 1100)), "field_strength_t": field_strength_t, "c_per_ms": c,
            "inversion_efficiency": eta, "ti_start_ms": start, "ti_step_ms": step,
            "minutes_since_injection": float(rng.uniform(8, 20))}
    return ScoutPhantom(frames, ti, labels0, (spacing, spacing), t1, t1star, null, field_strength_t, snr,
                        scar, pid, meta)


def write_scout_dicom(ph: ScoutPhantom, folder, ti_in: str = "InversionTime", seed: int = 0,
                      series_number: int = 1) -> list:
    """Write a phantom scout as DICOM with shuffled file names. ``ti_in``: 'InversionTime' (classic,
    one file per frame), 'ImageComments' ('TI 150'), 'TriggerTime' (only the trigger delay), or
    'multiframe' (one enhanced MR file, TIs in the per-frame MR modifier macro)."""
    import SimpleITK as sitk

    from ..dicom.write import _tm, write_series

    if ti_in == "multiframe":
        return [_write_enhanced(ph, folder, seed, series_number)]
    if ti_in not in ("InversionTime", "ImageComments", "TriggerTime"):
        raise InputError(f"ti_in must be InversionTime, ImageComments, TriggerTime or multiframe, got {ti_in!r}",
                         "ti_in")
    rng = np.random.default_rng(seed)
    r_wave = rng.uniform(20, 60)   # TriggerTime = TI + a fixed delay from the R-wave
    base_uid = f"2.25.{abs(hash((ph.patient_id, seed))) % 10**30}"
    files = []
    acq = 10 * 3600 + ph.meta["minutes_since_injection"] * 60
    for k in rng.permutation(len(ph.ti_ms)):
        img = sitk.GetImageFromArray(np.round(ph.frames[k:k + 1]).astype(np.float32))
        img.SetSpacing((ph.pixel_spacing_mm[1], ph.pixel_spacing_mm[0], 8.0))
        tags = {"InstanceNumber": int(k) + 1, "MagneticFieldStrength": ph.field_strength_t,
                "NominalInterval": int(round(ph.meta["rr_ms"])), "SeriesDescription": "TI scout (SYNTHETIC)",
                "AcquisitionTime": _tm(acq + k * 0.8), "ContrastBolusStartTime": _tm(10 * 3600),
                "ScanningSequence": "IR\\GR", "Manufacturer": "SYNTHETIC"}
        if ti_in == "InversionTime":
            tags["InversionTime"] = float(ph.ti_ms[k])
        elif ti_in == "ImageComments":
            tags["ImageComments"] = f"TI {ph.ti_ms[k]:g}"
        else:
            tags["TriggerTime"] = float(ph.ti_ms[k] + r_wave)
        files += write_series(img, folder, series_uid=base_uid, series_number=series_number,
                              series_description="TI scout (SYNTHETIC)", tags=tags, shuffle_names=True,
                              seed=int(rng.integers(0, 2**31)), patient={"PatientID": ph.patient_id})
    return files


def _write_enhanced(ph: ScoutPhantom, folder, seed, series_number):
    from pathlib import Path

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    from ..atomic import atomic_path

    folder = Path(folder)
    stored = np.clip(np.round(ph.frames), 0, 65535).astype(np.uint16)
    order = np.random.default_rng(seed).permutation(len(stored))      # frames stored out of TI order
    uid = generate_uid(entropy_srcs=[ph.patient_id, str(seed), "enh"])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid, "sop"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[ph.patient_id, "study"])
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uid, generate_uid(entropy_srcs=[uid, "for"])
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", series_number, 1
    ds.SeriesDescription, ds.PatientID, ds.PatientName = "TI scout (SYNTHETIC)", ph.patient_id, "Phantom^Synthetic"
    ds.MagneticFieldStrength, ds.NominalInterval = ph.field_strength_t, int(round(ph.meta["rr_ms"]))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.NumberOfFrames = len(stored)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = list(ph.pixel_spacing_mm)
    pm.SliceThickness = 8.0
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pt = Dataset()
    pt.RescaleSlope, pt.RescaleIntercept, pt.RescaleType = 1, 0, "US"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([pm]), Sequence([po])
    shared.PixelValueTransformationSequence = Sequence([pt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for j, k in enumerate(order):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, 0.0]
        mod = Dataset()
        mod.InversionRecovery, mod.InversionTimes = "YES", [float(ph.ti_ms[k])]
        content = Dataset()
        content.TemporalPositionIndex = j + 1
        item.PlanePositionSequence, item.MRModifierSequence = Sequence([pos]), Sequence([mod])
        item.FrameContentSequence = Sequence([content])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = stored[order].tobytes()
    path = folder / f"{generate_uid(entropy_srcs=[uid, 'name']).split('.')[-1][:12]}.dcm"
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
