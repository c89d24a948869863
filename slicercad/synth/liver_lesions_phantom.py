"""SYNTHETIC 8-phase EOB-MRI lesion patches with true physical geometry (seed 000 phantom).

``generate_lesions`` draws patients (scanner, liver, breath-hold shifts, a realistic number of
lesions with labels correlated within the patient: ``liver_lesions.patient_labels``) and their lesions
(parameters in ``liver_lesions``) and renders, per lesion, a crop of each phase's own grid
around the lesion: per-series oblique direction, anisotropic spacing (DWI coarser, thick T2/DWI
slices), the liver displaced by that phase's breath-hold shift (up to 10 mm, the hepatobiliary
phase is the reference), smooth parenchymal texture, vessels, lobulated heterogeneous lesions with
partial volume through the slice, multiplicative bias field, per-series gain and Rician noise.
Field strength (drawn per patient with the b-value, ``ACQUISITION["protocols"]``) changes the images:
T1-weighted contrast and enhancement by ``anatomy.t1w_at_field``, SNR ~ B0. DWI is rendered as b0 and
b images, S_b = S_0 exp(-b ADC), with Rician noise; the ADC channel is computed from those noisy
images on the DWI grid, so it shares the DWI's breath-hold shift. Everything here is synthetic and
labelled so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..phases import LIVER_MRI_PHASES
from .anatomy import snr_factor, t1w_at_field
from .liver_lesions import (ACQUISITION, CLASSES, EXTENDED_PRIORS, REPORT_PRIORS, T1_PHASES, patient_labels,
                            sample_lesion, sample_patient)

GROUP = {p: "t1" for p in T1_PHASES}
GROUP.update({"T2": "t2", "DWI": "dwi"})
N_SLICES = 7          # +-3.5 slices around the midpoint of fiducial and moved lesion: covers 10 mm shifts
_VESSEL_RATIO = {"T1_pre": (0.6, 0.8), "arterial": (1.1, 1.6), "portal": (1.3, 1.9), "transitional": (1.0, 1.4),
                 "hepatobiliary": (0.45, 0.8), "T2": (0.3, 0.7)}


@dataclass
class PhantomLesion:
    """One SYNTHETIC lesion: its 8 phase images (sitk, LPS), HBP mask and ground truth."""

    patient_id: str
    lesion_id: str
    label: str
    variant: str
    diameter_mm: float
    center_lps: np.ndarray          # lesion centre in the hepatobiliary (reference) phase
    shifts_mm: dict                 # phase -> true displacement of the lesion in that phase (LPS mm)
    images: dict                    # phase -> sitk.Image (float32)
    mask: sitk.Image                # lesion partial-volume fraction (float32, 0..1; see partial_volume_mask)
    b_value: float
    field_strength_t: float
    split: str
    synthetic: bool = field(default=True)


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _texture(points, dirs, phases, freq):
    """Smooth zero-mean random field (sum of plane waves) at ``points`` [..., 3] (mm)."""
    proj = points @ (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).T
    return np.cos(2 * np.pi * freq * proj + phases).sum(-1) / np.sqrt(len(phases) / 2.0)


def _profile_value(rho, profile):
    centre, edge, radius = profile
    if radius <= 0:
        return np.full_like(rho, edge)
    return edge + (centre - edge) * (1.0 - _sigmoid((rho - radius) / 0.08))


class _Grid:
    """A phase's patch grid: direction, spacing, size, origin, and voxel centres (LPS)."""

    def __init__(self, rng, patient, group, centre, half_mm):
        axis, deg = patient["oblique"][group]
        self.direction = _rotation(axis, deg)
        s, th = patient[f"{group}_spacing"], patient[f"{group}_thickness"]
        self.spacing = np.array([s, s, th])
        n = int(np.ceil(2 * half_mm / s)) + 1
        self.size = (n, n, N_SLICES)
        centre_idx = np.array([(n - 1) / 2, (n - 1) / 2, (N_SLICES - 1) / 2]) + rng.uniform(-0.5, 0.5, 3)
        self.origin = centre - self.direction @ (self.spacing * centre_idx)

    def points(self, dz=0.0):
        n, nz = self.size[0], self.size[2]
        kk, jj, ii = np.meshgrid(np.arange(nz) + dz, np.arange(n), np.arange(n), indexing="ij")
        idx = np.stack([ii, jj, kk], -1).astype(float)
        return self.origin + idx @ (self.direction * self.spacing).T

    def image(self, array):
        img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
        img.SetSpacing(tuple(self.spacing))
        img.SetDirection(tuple(self.direction.ravel()))
        img.SetOrigin(tuple(self.origin))
        return img


def _lesion_geometry(local, les):
    """Normalised radius rho and in-plane angle phi of points ``local`` (lesion frame, mm)."""
    c, s = np.cos(les["angle"]), np.sin(les["angle"])
    x = c * local[..., 0] + s * local[..., 1]
    y = -s * local[..., 0] + c * local[..., 1]
    r = les["diameter_mm"] / 2.0
    ax = les["axes"]
    rho_e = np.sqrt((x / (r * ax[0])) ** 2 + (y / (r * ax[1])) ** 2 + (local[..., 2] / (r * ax[2])) ** 2)
    phi = np.arctan2(y, x)
    k, phase0, amp = les["lobes"]
    return rho_e / (1.0 + amp * np.cos(k * phi + phase0)), phi


def _tissues(rng, grid, shift, centre, les, vessels, edge_mm):
    """Lesion membership (partial volume over the slice), rho, phi, vessel membership, anatomy points."""
    r = les["diameter_mm"] / 2.0
    member = 0.0
    for dz in (-1 / 3, 1 / 3):
        rho_dz, _ = _lesion_geometry(grid.points(dz) - shift - centre, les)
        member = member + _sigmoid((1.0 - rho_dz) * r / edge_mm) / 3.0
    anat = grid.points() - shift
    rho, phi = _lesion_geometry(anat - centre, les)
    member = member + _sigmoid((1.0 - rho) * r / edge_mm) / 3.0
    vessel = np.zeros(anat.shape[:-1])
    for q, u, radius in vessels:
        d = anat - q
        dist = np.linalg.norm(d - (d @ u)[..., None] * u, axis=-1)
        vessel = np.maximum(vessel, _sigmoid((radius - dist) / (0.4 * grid.spacing[0])))
    return member, rho, phi, vessel, anat


def _rician(rng, signal, sigma):
    return np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)


def _bias(coeffs, pts):
    x, y, z = (pts[..., i] / 150.0 for i in range(3))
    return 1.0 + coeffs[0] * x + coeffs[1] * y + coeffs[2] * z + coeffs[3] * x * x + coeffs[4] * y * y


MASK_SUPERSAMPLE = 3   # sub-samples per voxel axis of the partial-volume mask


def partial_volume_mask(les, centre, direction, in_plane_mm: float) -> sitk.Image:
    """The lesion's partial-volume fraction (float32 0..1) on an isotropic grid with the hepatobiliary
    phase's axes: voxel side min(in-plane spacing, diameter / 6), each voxel the fraction of its
    ``MASK_SUPERSAMPLE``^3 sub-samples inside the lesion surface (rho <= 1). Resampled onto a ROI plane
    (``roi.mask_roi``: fraction >= 0.5) it gives the lesion's cross-section on that plane, so a 3 mm
    lesion covers its ~13 ROI pixels instead of collapsing to the 1-2 voxel centres of thick slices."""
    d = les["diameter_mm"]
    step = float(min(in_plane_mm, d / 6.0))
    half = 0.5 * d * 1.2 + 2 * step                         # lobulation can push the surface past d/2
    n = int(np.ceil(2 * half / step)) + 1
    sub = (np.arange(MASK_SUPERSAMPLE) + 0.5) / MASK_SUPERSAMPLE - 0.5
    ax = (np.arange(n) - (n - 1) / 2.0) * step
    fine = (ax[:, None] + sub[None, :] * step).ravel()      # sub-sample coordinates along one axis
    kk, jj, ii = np.meshgrid(fine, fine, fine, indexing="ij")
    local = np.stack([ii, jj, kk], -1) @ np.asarray(direction).T
    rho, _ = _lesion_geometry(local, les)
    m = MASK_SUPERSAMPLE
    frac = (rho <= 1.0).reshape(n, m, n, m, n, m).mean(axis=(1, 3, 5)).astype(np.float32)
    img = sitk.GetImageFromArray(frac)
    img.SetSpacing((step, step, step))
    img.SetDirection(tuple(np.asarray(direction).ravel()))
    img.SetOrigin(tuple(np.asarray(centre, float) - np.asarray(direction) @ np.full(3, (n - 1) / 2.0 * step)))
    return img


def render_lesion(rng, patient, les, centre, pid, lid, split) -> PhantomLesion:
    """Render the 8 phases of one lesion of one patient (see module doc)."""
    d = les["diameter_mm"]
    half = max(1.5 * d, 24.0) + 8.0
    vessels = []
    for _ in range(int(rng.integers(2, 6))):
        u = rng.normal(size=3)
        vessels.append((centre + rng.uniform(-half, half, 3) * (1, 1, 0.3), u / np.linalg.norm(u),
                        rng.uniform(1.5, 5.0)))
    vratio = {p: rng.uniform(*v) for p, v in _VESSEL_RATIO.items()}
    liver_dirs, liver_ph = rng.normal(size=(4, 3)), rng.uniform(0, 2 * np.pi, 4)
    les_freq = 1.0 / (0.6 * d / 2.0 + 2.0)
    images, mask = {}, None
    field = patient["field_strength_t"]
    snr = snr_factor(field)
    for phase in T1_PHASES + ("T2", "DWI"):
        group = GROUP[phase]
        shift = patient["shifts_mm"][phase]
        grid = _Grid(rng, patient, group, centre + shift / 2.0, half)
        member, rho, phi, vessel, anat = _tissues(rng, grid, shift, centre, les, vessels, 0.35 * grid.spacing[0])
        liver_tex = 1.0 + patient["liver_texture"] * _texture(anat, liver_dirs, liver_ph, 1 / 25.0)
        les_tex = np.ones_like(member)
        inside = member > 1e-3   # the lesion's texture only matters where the lesion is
        les_tex[inside] += les["heterogeneity"] * _texture(anat[inside] - centre, les["texture_dirs"],
                                                           les["texture_phase"], les_freq)
        bias = _bias(patient["bias"][phase], grid.points())
        if group == "t1":
            pre = patient["liver_t1"]
            liver = t1w_at_field(pre, pre * (1.0 + patient["liver_enh"][phase]), field)
            prof = les["enh"][phase]
            if les["nodular"] and phase == "arterial" and prof[2] > 0:
                nod = np.clip(0.3 + np.cos(5 * phi + les["angle"]), 0.0, 1.0)
                enh = _profile_value(rho, (prof[0], prof[0], 0.0)) + (prof[1] - prof[0]) * nod * _sigmoid((rho - prof[2]) / 0.08)
            else:
                enh = _profile_value(rho, prof)
            lesion_sig = t1w_at_field(les["t1"], les["t1"] * (1.0 + enh), field)
            blood = t1w_at_field(pre * vratio["T1_pre"], pre * (1.0 + patient["liver_enh"][phase]) * vratio[phase],
                                 field)
            bg = liver * liver_tex * (1 - vessel) + blood * vessel
            signal = ((1 - member) * bg + member * lesion_sig * les_tex) * bias
            noisy = _rician(rng, signal, 1.0 / (patient["snr"]["t1"] * snr))
        elif group == "t2":
            bg = patient["liver_t2"] * liver_tex * (1 - vessel) + vratio["T2"] * vessel
            signal = ((1 - member) * bg + member * _profile_value(rho, les["t2"]) * les_tex) * bias
            noisy = _rician(rng, signal, patient["liver_t2"] / (patient["snr"]["t2"] * snr))
        else:
            b, cal = patient["b_value"] / 1000.0, patient["adc_calibration"]
            t2_les = _profile_value(rho, les["t2"]) * les_tex
            adc_les = _profile_value(rho, les["adc"]) * cal
            b0_bg = (patient["liver_t2"] * liver_tex) ** 0.7 * (1 - vessel) + 0.5 * vessel
            bb_bg = (patient["liver_t2"] * liver_tex) ** 0.7 * np.exp(-b * cal * patient["liver_adc"]) * (1 - vessel) \
                + 0.5 * np.exp(-b * cal * 3.0) * vessel
            b0 = ((1 - member) * b0_bg + member * t2_les ** 0.7) * bias
            bb = ((1 - member) * bb_bg + member * t2_les ** 0.7 * np.exp(-b * adc_les)) * bias
            sigma = 1.0 / (patient["snr"]["b0"] * snr)
            b0n, bbn = _rician(rng, b0, sigma), _rician(rng, bb, sigma)
            adc = np.clip(np.log(np.maximum(b0n, 1e-3) / np.maximum(bbn, 1e-3)) / b, 0.0, 4.0)
            images["ADC"] = grid.image(adc)
            noisy = bbn
        images[phase] = grid.image(noisy * patient["gain"][phase])
        if phase == "hepatobiliary":
            mask = partial_volume_mask(les, centre, grid.direction, grid.spacing[0])
    shifts = {p: np.asarray(patient["shifts_mm"][p], float) for p in images}
    return PhantomLesion(pid, lid, les["label"], les["variant"], float(d), np.asarray(centre, float), shifts,
                         {p: images[p] for p in LIVER_MRI_PHASES},
                         mask, patient["b_value"], patient["field_strength_t"], split)


def generate_lesions(n_lesions: int, seed: int = 0, split: str = "train", classes=CLASSES, priors=None) -> list:
    """``n_lesions`` SYNTHETIC lesions from patients drawn with ``liver_lesions.patient_labels``.

    ``split`` picks the acquisition ('train' or the shifted 'test'); use a different ``seed``
    for the test set. Class priors (lesion-level) default to the report's (~75% metastases) or, for the
    extended class set, ``EXTENDED_PRIORS``. Deterministic for a given (n_lesions, seed, split, classes).
    """
    if split not in ACQUISITION:
        raise ValueError(f"split must be one of {sorted(ACQUISITION)}, got {split!r}")
    if priors is None:
        priors = REPORT_PRIORS if tuple(classes) == CLASSES else EXTENDED_PRIORS
    rng = np.random.default_rng([seed, list(ACQUISITION).index(split)])
    acq = ACQUISITION[split]
    out, k = [], 0
    while len(out) < n_lesions:
        patient = sample_patient(rng, acq)
        pid = f"synth-{split}-{seed}-p{k:04d}"
        k += 1
        for j, label in enumerate(patient_labels(rng, tuple(classes), priors)[:n_lesions - len(out)]):
            les = sample_lesion(rng, label, patient)
            centre = rng.uniform(-80.0, 80.0, 3) * (1, 1, 0.5)
            out.append(render_lesion(rng, patient, les, centre, pid, f"{pid}-l{j:02d}", split))
    return out
