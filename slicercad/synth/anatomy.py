"""SYNTHETIC abdomen phantom: analytic anatomy in LPS millimetres, tissue properties and
contrast-enhancement kinetics. No patient data; every number is a textbook-typical value.

Enhancement curve (time t in s after the start of the injection, per tissue):
    c(t) = (1 - exp(-(t - a) / tau_in)) * (f * exp(-(t - a) / tau_out) + (1 - f) * exp(-(t - a) / tau_slow))
for t > a (arrival), else 0: a wash-in, a fast first-pass washout and a slow equilibrium washout.
CT:  HU(t) = HU_base + E_ct * c(t)                               (iodine adds HU linearly)
MR:  S(t)  = S_pre * (1 + E_mr * c(t) + H * u(t)),  u(t) = 1 - exp(-(t - 60) / 600) for t > 60,
the gadoxetate (EOB) hepatocyte uptake term H that makes the liver bright at ~20 min.
Renal collecting system (CT excretion): x(t) = 1 - exp(-(t - 150) / 120) for t > 150, E_ct = 700 HU.
T2: S_T2 per tissue; DWI: S_b = 0.8 * S_T2 * exp(-b * ADC); ADC in 1e-3 mm^2/s.
Field strength B0 (``t1w_at_field``, ``snr_factor``): T1-weighted signals are given at the reference 3 T
and re-rendered at B0 with the spoiled gradient-echo equation
    S(R1) = sin(a) (1 - E1) / (1 - cos(a) E1),  E1 = exp(-TR R1),  TR 3.9 ms, a 10 deg:
a signal is inverted to R1 at 3 T, split into native R1 and contrast dR1, native T1 scaled as
T1 ~ B0^0.465 (liver 586 ms at 1.5 T, 809 ms at 3 T: de Bazelaire CM et al., Radiology 2004;230:652)
and dR1 by the relaxivity, r1 ~ B0^-0.154 (Gd-EOB-DTPA 6.9 / 6.2 L/mmol/s at 1.5 / 3 T: Rohrer M et
al., Invest Radiol 2005;40:715). SNR ~ B0.
"""
from __future__ import annotations

import numpy as np

# name: (arrival a, tau_in, f, tau_out, tau_slow), seconds
KINETICS = {
    "none": None,
    "aorta": (15.0, 4.0, 0.75, 25.0, 1500.0),
    "vein": (28.0, 12.0, 0.5, 60.0, 1500.0),
    "liver": (25.0, 30.0, 0.3, 120.0, 900.0),
    "spleen": (16.0, 8.0, 0.5, 50.0, 900.0),
    "cortex": (14.0, 5.0, 0.5, 40.0, 900.0),
    "medulla": (35.0, 35.0, 0.3, 200.0, 600.0),
    "soft": (30.0, 60.0, 0.0, 1.0, 1200.0),
    "avid_washout": (15.0, 6.0, 0.9, 40.0, 600.0),
    "slow_fill": (20.0, 120.0, 0.0, 1.0, 3000.0),
    "rim": (16.0, 8.0, 0.6, 60.0, 900.0),
}

# tissue: (label, CT HU, CT enhancement HU, MR T1w pre, MR enhancement, EOB uptake H, T2 signal,
#          ADC 1e-3 mm^2/s, kinetics)
TISSUES = {
    "air": (0, -1000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "none"),
    "soft_tissue": (1, 45.0, 25.0, 350.0, 0.3, 0.0, 120.0, 1.5, "soft"),
    "fat": (2, -100.0, 0.0, 120.0, 0.0, 0.0, 60.0, 0.5, "none"),
    "bone": (3, 400.0, 0.0, 250.0, 0.0, 0.0, 100.0, 0.5, "none"),
    "liver": (4, 60.0, 70.0, 500.0, 0.45, 1.0, 150.0, 1.2, "liver"),
    "spleen": (5, 50.0, 110.0, 380.0, 1.0, 0.0, 300.0, 0.9, "spleen"),
    "renal_cortex": (6, 35.0, 190.0, 480.0, 1.6, 0.0, 300.0, 2.0, "cortex"),
    "renal_medulla": (7, 30.0, 170.0, 380.0, 1.4, 0.0, 380.0, 2.0, "medulla"),
    "collecting_system": (8, 10.0, 0.0, 200.0, 1.0, 0.0, 900.0, 3.0, "medulla"),
    "aorta": (9, 40.0, 450.0, 300.0, 3.0, 0.0, 40.0, 3.0, "aorta"),
    "vein": (10, 40.0, 200.0, 300.0, 2.0, 0.0, 60.0, 3.0, "vein"),
    "cyst": (11, 8.0, 0.0, 150.0, 0.0, 0.0, 1200.0, 3.0, "none"),
    "hemangioma": (12, 40.0, 160.0, 250.0, 2.0, 0.0, 900.0, 1.9, "slow_fill"),
    "metastasis": (13, 40.0, 25.0, 330.0, 0.3, 0.0, 280.0, 1.0, "soft"),
    "metastasis_rim": (14, 45.0, 60.0, 350.0, 1.0, 0.0, 250.0, 1.0, "rim"),
    "hcc": (15, 45.0, 120.0, 420.0, 1.6, 0.0, 260.0, 1.0, "avid_washout"),
    "renal_mass": (16, 35.0, 150.0, 400.0, 1.5, 0.0, 450.0, 1.4, "avid_washout"),
}
EXCRETION_HU = 700.0

REFERENCE_FIELD_T = 3.0
SPGR_TR_MS, SPGR_FLIP_DEG = 3.9, 10.0
LIVER_T1_MS = 809.0                                   # at the reference 3 T
T1_FIELD_EXPONENT = np.log(809.0 / 586.0) / np.log(2.0)
R1_FIELD_EXPONENT = np.log(6.2 / 6.9) / np.log(2.0)
LABEL_NAMES = {v[0]: k for k, v in TISSUES.items()}

# lesion anchors (LPS mm) and diameter ranges per study kind; jittered by the seed
LESION_PLAN = {
    "liver_mri": (("cyst", (-100.0, -5.0, 35.0), (10.0, 24.0)), ("hemangioma", (-45.0, -35.0, 45.0), (14.0, 28.0)),
                  ("metastasis", (-80.0, 20.0, 50.0), (16.0, 30.0))),
    "liver_ct": (("hcc", (-100.0, -5.0, 35.0), (16.0, 30.0)), ("cyst", (-45.0, -35.0, 45.0), (10.0, 22.0)),
                 ("hemangioma", (-80.0, 20.0, 50.0), (14.0, 26.0))),
    "renal_ct": (("renal_mass", (93.0, 55.0, -30.0), (15.0, 35.0)), ("cyst", (-90.0, 60.0, -50.0), (12.0, 24.0))),
}
LESION_LABELS = {"renal_ct": {"cyst": "renal_cyst"}}


def curve(kinetics: str, t: float) -> float:
    """Contrast concentration (relative units) of a tissue ``t`` s after injection (module docstring)."""
    params = KINETICS[kinetics]
    if params is None or t <= params[0]:
        return 0.0
    a, tau_in, f, tau_out, tau_slow = params
    s = t - a
    return float((1 - np.exp(-s / tau_in)) * (f * np.exp(-s / tau_out) + (1 - f) * np.exp(-s / tau_slow)))


def hepatocyte_uptake(t: float) -> float:
    return float(1 - np.exp(-(t - 60.0) / 600.0)) if t > 60.0 else 0.0


def excretion(t: float) -> float:
    return float(1 - np.exp(-(t - 150.0) / 120.0)) if t > 150.0 else 0.0


def spgr(r1_per_ms):
    """Spoiled gradient-echo signal (M0 = 1) of longitudinal relaxation rate ``r1_per_ms``."""
    a, e1 = np.radians(SPGR_FLIP_DEG), np.exp(-SPGR_TR_MS * np.asarray(r1_per_ms, float))
    return np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)


def _r1_at_reference(relative):
    """R1 (1/ms) at 3 T of a signal given relative to pre-contrast liver at 3 T (inverse of ``spgr``)."""
    a = np.radians(SPGR_FLIP_DEG)
    s = np.clip(np.asarray(relative, float) * spgr(1.0 / LIVER_T1_MS), 1e-6, 0.95 * np.sin(a))
    return -np.log((np.sin(a) - s) / (np.sin(a) - s * np.cos(a))) / SPGR_TR_MS


def t1w_at_field(pre, post, field_t: float):
    """T1-weighted signal at ``field_t`` of a tissue whose native (``pre``) and contrast-enhanced (``post``)
    signals are given relative to pre-contrast liver at 3 T; returned relative to pre-contrast liver at
    ``field_t`` (module docstring). Identity at 3 T."""
    native, total = _r1_at_reference(pre), _r1_at_reference(post)
    k_t1 = (field_t / REFERENCE_FIELD_T) ** -T1_FIELD_EXPONENT          # native R1 = 1 / T1
    k_r1 = (field_t / REFERENCE_FIELD_T) ** R1_FIELD_EXPONENT
    r1 = np.maximum(native * k_t1 + (total - native) * k_r1, 1e-6)
    return spgr(r1) / spgr(k_t1 / LIVER_T1_MS)


def snr_factor(field_t: float) -> float:
    """SNR at ``field_t`` relative to the reference 3 T (SNR ~ B0)."""
    return float(field_t) / REFERENCE_FIELD_T


def lesions(kind: str, seed: int) -> list[dict]:
    """Lesions of the phantom: centre (LPS mm), diameter (mm), label. Independent of the image grid."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for tissue, anchor, (lo, hi) in LESION_PLAN[kind]:
        centre = np.asarray(anchor) + rng.uniform(-6.0, 6.0, 3)
        out.append({"center_lps": [round(float(v), 2) for v in centre],
                    "diameter_mm": round(float(rng.uniform(lo, hi)), 1),
                    "label": LESION_LABELS.get(kind, {}).get(tissue, tissue), "tissue": tissue,
                    "coordinate_system": "LPS"})
    return out


def _ellipsoid(p, centre, semi):
    return (((p - np.asarray(centre)) / np.asarray(semi)) ** 2).sum(axis=1) <= 1.0


def _cylinder_z(p, cx, cy, r):
    return (p[:, 0] - cx) ** 2 + (p[:, 1] - cy) ** 2 <= r * r


def _segment(p, a, b, r):
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1) <= r


def label_map(points: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Tissue label of each LPS point (N, 3): later organs overwrite earlier ones."""
    lab = np.zeros(len(points), dtype=np.uint8)

    def paint(mask, tissue):
        lab[mask] = TISSUES[tissue][0]

    x, y = points[:, 0], points[:, 1]
    paint(((x / 150.0) ** 2 + ((y - 5.0) / 110.0) ** 2) <= 1.0, "fat")
    paint(((x / 135.0) ** 2 + ((y - 5.0) / 95.0) ** 2) <= 1.0, "soft_tissue")
    for side in (-1.0, 1.0):
        paint(_ellipsoid(points, (75.0 * side, 60.0, -35.0), (38.0, 35.0, 66.0)), "fat")   # perirenal fat
    paint(_cylinder_z(points, 0.0, 70.0, 18.0), "bone")
    paint(_ellipsoid(points, (-65.0, 0.0, 25.0), (80.0, 75.0, 65.0)) & (x < 30.0), "liver")
    paint(_ellipsoid(points, (95.0, 45.0, 35.0), (28.0, 45.0, 50.0)), "spleen")
    for side in (-1.0, 1.0):
        centre = np.array([75.0 * side, 60.0, -35.0])
        paint(_ellipsoid(points, centre, (30.0, 28.0, 55.0)), "renal_cortex")
        paint(_ellipsoid(points, centre, (22.0, 20.0, 42.0)), "renal_medulla")
        paint(_ellipsoid(points, centre - [12.0 * side, 0.0, 0.0], (9.0, 9.0, 20.0)), "collecting_system")
    paint(_cylinder_z(points, 12.0, 45.0, 11.0), "aorta")
    paint(_cylinder_z(points, -22.0, 40.0, 11.0), "vein")                       # inferior vena cava
    paint(_segment(points, (-10.0, 20.0, -10.0), (-55.0, 10.0, 20.0), 7.0), "vein")  # portal vein
    for lesion in lesions(kind, seed):
        centre, radius = np.asarray(lesion["center_lps"]), lesion["diameter_mm"] / 2.0
        ball = np.linalg.norm(points - centre, axis=1) <= radius
        if lesion["tissue"] == "metastasis":
            paint(ball, "metastasis_rim")
            paint(np.linalg.norm(points - centre, axis=1) <= 0.7 * radius, "metastasis")
        else:
            paint(ball, lesion["tissue"])
    return lab
