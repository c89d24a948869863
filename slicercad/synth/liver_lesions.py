"""SYNTHETIC multi-phase Gd-EOB-DTPA MRI liver-lesion phantom (seed 000): parameters and sampling.

Every number below is a lesion-to-liver or absolute signal parameter drawn uniformly from a
range; ranges of different lesion types deliberately OVERLAP, as they do in the literature, so
no single threshold separates the classes. Sources for the ranges (typical appearances, widened):
- Cysts, hemangiomas, metastases on EOB-MRI: Doo KW et al., AJR 2009;193:W490 (pseudo-washout of
  hemangioma in the transitional phase); Kim YK et al., Radiology 2011 (EOB vs DWI for
  metastases); Goshima S et al., JMRI 2010 (hemangioma on EOB-MRI).
- Flash-filling hemangioma ~16%: Hanafusa K et al., Radiology 1995; Jang HJ et al., Radiology 2003.
- Hypovascular HCC ~15%, HBP iso/hyper HCC ~10%: Kitao A et al., Radiology 2010; Bolondi L et al.,
  Hepatology 2005 (arterial hypovascular HCC).
- FNH iso/hyper in the HBP with a central scar: Zech CJ et al., Invest Radiol 2008; Grazioli L et
  al., Radiology 2012.
- ADC (x1e-3 mm^2/s): Parikh T et al., Radiology 2008; Bruegel M et al., JMRI 2008; Taouli B, Koh
  DM, Radiology 2010 (cysts ~2.5-3.2, hemangiomas ~1.7-2.2, metastases ~1.0-1.4, HCC ~1.0-1.4,
  liver ~1.1-1.4; all with wide spread).
- Necrotic/cystic metastases, complicated (haemorrhagic/proteinaceous) cysts: Silva AC et al.,
  RadioGraphics 2009 ("MR imaging of hepatic metastases"); Mortelé KJ, Ros PR, RadioGraphics 2001.
- Rician noise of magnitude MR images: Gudbjartsson H, Patz S, MRM 1995.
- Inter-scanner ADC bias up to ~10%: Donati OF et al., Radiology 2014;270:454.
T1-weighted signal = T1base * (1 + enhancement) at 3 T, enhancement per dynamic phase; rendered at the
patient's field strength by ``anatomy.t1w_at_field`` (longer T1 at 3 T, lower relaxivity). T2 and ADC are
given per lesion as a radial profile (centre value, edge value, transition radius) so rim, target,
fill-in, scar and necrotic patterns come out of one representation.
"""
from __future__ import annotations

import numpy as np

T1_PHASES = ("T1_pre", "arterial", "portal", "transitional", "hepatobiliary")
CLASSES = ("cyst", "hemangioma", "metastasis")
EXTENDED_CLASSES = ("cyst", "hemangioma", "metastasis", "hcc", "fnh")
# seed 000: 94 cysts, 64 hemangiomas, ~481 metastases among 639 lesions
REPORT_PRIORS = {"cyst": 94 / 639, "hemangioma": 64 / 639, "metastasis": 481 / 639}
EXTENDED_PRIORS = {"cyst": 0.14, "hemangioma": 0.10, "metastasis": 0.56, "hcc": 0.12, "fnh": 0.08}

# Rates of atypical variants (fraction of lesions of that type)
VARIANT_RATES = {
    "cyst": {"complicated": 0.12},
    "hemangioma": {"flash_filling": 0.16, "pseudo_washout": 0.30},
    "metastasis": {"necrotic": 0.15, "hypervascular": 0.20},
    "hcc": {"hypovascular": 0.15, "hbp_hyper": 0.10},
    "fnh": {"no_scar": 0.40},
}

# Acquisition of the training and (shifted) test sets. "protocols": ((field strength T, b-value s/mm^2),
# weight) drawn per patient; SNR = liver signal / noise sigma at 3 T (scaled by B0, ``anatomy.snr_factor``).
ACQUISITION = {
    "train": {"protocols": (((3.0, 800.0), 0.6), ((1.5, 1000.0), 0.2), ((1.5, 800.0), 0.2)),
              "t1_spacing": (1.2, 1.6), "t1_thickness": (3.0, 5.0),
              "t2_spacing": (1.0, 1.5), "dwi_spacing": (2.0, 3.0), "thick_t2_dwi": (5.0, 7.0),
              "snr_t1": (18.0, 40.0), "snr_t2": (14.0, 30.0), "snr_b0": (14.0, 24.0),
              "liver_hbp_enh": (0.7, 1.2), "max_shift_mm": 10.0, "max_oblique_deg": 8.0},
    "test": {"protocols": (((1.5, 1000.0), 0.5), ((3.0, 800.0), 0.25), ((1.5, 800.0), 0.25)),
             "t1_spacing": (1.4, 1.9), "t1_thickness": (4.0, 6.0),
             "t2_spacing": (1.2, 1.8), "dwi_spacing": (2.5, 3.5), "thick_t2_dwi": (6.0, 8.0),
             "snr_t1": (14.0, 30.0), "snr_t2": (10.0, 24.0), "snr_b0": (10.0, 20.0),
             "liver_hbp_enh": (0.5, 1.0), "max_shift_mm": 10.0, "max_oblique_deg": 12.0},
}

# Lesions per patient. A patient with a malignancy has 1-6 malignant lesions of one type (metastases of
# one primary, or HCC) and Poisson(0.6) co-occurring benign ones; a benign-only patient has 1-4. A
# patient's benign lesions share its benign type with probability 0.7. The share of patients with a
# malignancy is solved so that the lesion-level class fractions equal the priors.
MALIGNANT = ("metastasis", "hcc")
MALIGNANT_PER_PATIENT = (1, 6)
BENIGN_WITH_MALIGNANT = 0.6
BENIGN_ONLY_PER_PATIENT = (1, 4)
SAME_BENIGN_TYPE = 0.7


def _u(rng, lo_hi):
    return float(rng.uniform(*lo_hi))


def _profile(centre, edge=None, radius=0.0):
    """Radial profile: ``centre`` inside normalised radius ``radius``, ``edge`` outside."""
    return (float(centre), float(centre if edge is None else edge), float(radius))


def _variant(rng, label):
    for name, rate in VARIANT_RATES.get(label, {}).items():
        if rng.random() < rate:
            return name
    return "typical"


def _choice(rng, names, priors):
    p = np.array([priors[c] for c in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def patient_labels(rng, classes, priors) -> list:
    """Lesion labels of one patient (see ``MALIGNANT_PER_PATIENT``); their expected fractions are ``priors``."""
    malignant = tuple(c for c in classes if c in MALIGNANT)
    benign = tuple(c for c in classes if c not in MALIGNANT)
    f = sum(priors[c] for c in malignant) / sum(priors[c] for c in classes)
    n_mal, n_ben = np.mean(MALIGNANT_PER_PATIENT), np.mean(BENIGN_ONLY_PER_PATIENT)
    p_malignant = 1.0 if not benign else min(1.0, f * n_ben / (n_mal * (1 - f) + f * (n_ben - BENIGN_WITH_MALIGNANT)))
    if rng.random() < p_malignant:
        labels = [_choice(rng, malignant, priors)] * int(rng.integers(MALIGNANT_PER_PATIENT[0],
                                                                       MALIGNANT_PER_PATIENT[1] + 1))
        n = int(rng.poisson(BENIGN_WITH_MALIGNANT)) if benign else 0
    else:
        labels, n = [], int(rng.integers(BENIGN_ONLY_PER_PATIENT[0], BENIGN_ONLY_PER_PATIENT[1] + 1))
    if n:
        own = _choice(rng, benign, priors)
        labels += [own if rng.random() < SAME_BENIGN_TYPE else _choice(rng, benign, priors) for _ in range(n)]
    return labels


def sample_patient(rng, acq: dict) -> dict:
    """Per-patient liver, scanner (field strength, b-value from ``acq["protocols"]``) and breath-hold
    parameters."""
    weights = np.array([w for _, w in acq["protocols"]], float)
    (field_t, b_value), _ = acq["protocols"][int(rng.choice(len(weights), p=weights / weights.sum()))]
    shifts = {}
    for p in ("T1_pre", "arterial", "portal", "transitional", "T2", "DWI"):
        v = rng.normal(size=3) * (0.35, 0.35, 1.0)        # breathing moves the liver mostly head-foot
        shifts[p] = v / np.linalg.norm(v) * rng.uniform(0, acq["max_shift_mm"])
    shifts["hepatobiliary"] = np.zeros(3)
    shifts["ADC"] = shifts["DWI"]                          # the ADC is computed from the DWI acquisition
    return {
        "liver_t1": 1.0,
        "liver_enh": {"T1_pre": 0.0, "arterial": _u(rng, (0.1, 0.35)), "portal": _u(rng, (0.4, 0.75)),
                      "transitional": _u(rng, (0.5, 0.9)), "hepatobiliary": _u(rng, acq["liver_hbp_enh"])},
        "liver_t2": 1.0, "liver_adc": _u(rng, (1.0, 1.45)),
        "adc_calibration": _u(rng, (0.9, 1.1)),             # inter-scanner ADC bias, scales every tissue's ADC
        "liver_texture": _u(rng, (0.02, 0.1)), "steatosis_t1": _u(rng, (0.85, 1.1)),
        "snr": {"t1": _u(rng, acq["snr_t1"]), "t2": _u(rng, acq["snr_t2"]), "b0": _u(rng, acq["snr_b0"])},
        "gain": {p: _u(rng, (600.0, 1600.0)) for p in T1_PHASES + ("T2", "DWI")},
        "bias": {p: rng.uniform(-0.15, 0.15, size=5) for p in T1_PHASES + ("T2", "DWI")},
        "shifts_mm": shifts,
        "t1_spacing": _u(rng, acq["t1_spacing"]), "t1_thickness": _u(rng, acq["t1_thickness"]),
        "t2_spacing": _u(rng, acq["t2_spacing"]), "dwi_spacing": _u(rng, acq["dwi_spacing"]),
        "t2_thickness": _u(rng, acq["thick_t2_dwi"]), "dwi_thickness": _u(rng, acq["thick_t2_dwi"]),
        "oblique": {g: (rng.normal(size=3), rng.uniform(0, acq["max_oblique_deg"])) for g in ("t1", "t2", "dwi")},
        "met_hypervascular": bool(rng.random() < VARIANT_RATES["metastasis"]["hypervascular"]),
        "b_value": float(b_value), "field_strength_t": float(field_t),
    }


def _cyst(rng, variant):
    t1 = _u(rng, (0.9, 1.5)) if variant == "complicated" else _u(rng, (0.3, 0.8))
    enh = {p: _profile(_u(rng, (0.0, 0.1))) for p in T1_PHASES[1:]}
    t2 = _u(rng, (1.3, 2.6)) if variant == "complicated" else _u(rng, (2.0, 4.5))
    adc = _u(rng, (1.3, 2.4)) if variant == "complicated" else _u(rng, (2.0, 3.2))
    return t1, enh, _profile(t2), _profile(adc), {"heterogeneity": _u(rng, (0.0, 0.08)), "lobulation": 0.03}


def _hemangioma(rng, variant):
    pool = _u(rng, (0.6, 1.4))                            # blood-pool enhancement
    if variant == "flash_filling":
        art = _profile(_u(rng, (0.6, 1.5)))
        portal = _profile(pool)
    else:
        art = _profile(_u(rng, (0.0, 0.15)), _u(rng, (0.5, 1.5)), 1.0 - _u(rng, (0.1, 0.35)))
        portal = _profile(_u(rng, (0.05, 0.4)), pool, 1.0 - _u(rng, (0.35, 0.9)))
    trans_level = _u(rng, (0.2, 0.5)) if variant == "pseudo_washout" else _u(rng, (0.45, 1.1))
    enh = {"arterial": art, "portal": portal,
           "transitional": _profile(trans_level * _u(rng, (0.5, 1.0)), trans_level, 1.0 - _u(rng, (0.6, 1.0))),
           "hepatobiliary": _profile(_u(rng, (0.15, 0.6)))}
    return (_u(rng, (0.35, 0.85)), enh, _profile(_u(rng, (1.6, 3.8))), _profile(_u(rng, (1.2, 2.4))),
            {"heterogeneity": _u(rng, (0.03, 0.15)), "lobulation": 0.1, "nodular": True})


def _metastasis(rng, variant, hypervascular):
    tumour_adc, tumour_t2 = _u(rng, (0.8, 1.7)), _u(rng, (1.1, 2.2))
    if hypervascular:
        art = _profile(_u(rng, (0.3, 1.0)), _u(rng, (0.5, 1.3)), 0.6)
    else:
        art = _profile(_u(rng, (0.0, 0.2)), _u(rng, (0.15, 0.8)), 1.0 - _u(rng, (0.15, 0.4)))
    enh = {"arterial": art,
           "portal": _profile(_u(rng, (0.1, 0.45)), _u(rng, (0.25, 0.8)), 0.7),
           "transitional": _profile(_u(rng, (0.15, 0.6)), _u(rng, (0.2, 0.7)), 0.7),
           "hepatobiliary": _profile(_u(rng, (0.05, 0.45)), _u(rng, (0.1, 0.5)), 0.7)}
    t2 = _profile(tumour_t2 * _u(rng, (1.0, 1.4)), tumour_t2, 0.4)      # target appearance
    adc = _profile(tumour_adc, tumour_adc * _u(rng, (0.9, 1.1)), 0.4)
    if variant == "necrotic":
        r = _u(rng, (0.35, 0.75))
        enh = {p: _profile(_u(rng, (0.0, 0.1)), v[1], r) for p, v in enh.items()}
        t2 = _profile(_u(rng, (2.0, 3.8)), tumour_t2, r)
        adc = _profile(_u(rng, (1.6, 2.7)), tumour_adc, r)
    return (_u(rng, (0.4, 0.9)), enh, t2, adc, {"heterogeneity": _u(rng, (0.05, 0.25)), "lobulation": 0.15})


def _hcc(rng, variant):
    aphe = _u(rng, (0.05, 0.35)) if variant == "hypovascular" else _u(rng, (0.45, 1.3))
    hbp = _u(rng, (0.7, 1.4)) if variant == "hbp_hyper" else _u(rng, (0.05, 0.5))
    enh = {"arterial": _profile(aphe), "portal": _profile(_u(rng, (0.2, 0.65))),
           "transitional": _profile(_u(rng, (0.2, 0.6))), "hepatobiliary": _profile(hbp)}
    return (_u(rng, (0.55, 1.15)), enh, _profile(_u(rng, (1.0, 1.9))), _profile(_u(rng, (0.8, 1.45))),
            {"heterogeneity": _u(rng, (0.05, 0.2)), "lobulation": 0.1})


def _fnh(rng, variant):
    scar = 0.0 if variant == "no_scar" else _u(rng, (0.1, 0.25))
    enh = {"arterial": _profile(_u(rng, (0.0, 0.2)), _u(rng, (0.5, 1.4)), scar),
           "portal": _profile(_u(rng, (0.1, 0.4)), _u(rng, (0.4, 0.85)), scar),
           "transitional": _profile(_u(rng, (0.3, 0.6)), _u(rng, (0.5, 0.9)), scar),
           "hepatobiliary": _profile(_u(rng, (0.1, 0.4)), _u(rng, (0.6, 1.4)), scar)}
    t2 = _u(rng, (0.9, 1.35))
    return (_u(rng, (0.8, 1.05)), enh, _profile(_u(rng, (1.5, 2.5)), t2, scar),
            _profile(_u(rng, (1.0, 1.7))), {"heterogeneity": _u(rng, (0.02, 0.1)), "lobulation": 0.12})


def sample_lesion(rng, label: str, patient: dict) -> dict:
    """Signal, shape and size of one lesion of ``label`` (diameter 3-40 mm, log-uniform)."""
    variant = _variant(rng, label)
    if label == "cyst":
        t1, enh, t2, adc, extra = _cyst(rng, variant)
    elif label == "hemangioma":
        t1, enh, t2, adc, extra = _hemangioma(rng, variant)
    elif label == "metastasis":
        hyper = patient["met_hypervascular"]
        variant = "hypervascular" if hyper and variant == "typical" else variant
        t1, enh, t2, adc, extra = _metastasis(rng, variant, hyper)
    elif label == "hcc":
        t1, enh, t2, adc, extra = _hcc(rng, variant)
    elif label == "fnh":
        t1, enh, t2, adc, extra = _fnh(rng, variant)
    else:
        raise ValueError(f"unknown lesion class {label!r}")
    enh["T1_pre"] = _profile(0.0)
    return {"label": label, "variant": variant, "t1": t1 * patient["steatosis_t1"], "enh": enh, "t2": t2,
            "adc": adc, "diameter_mm": float(np.exp(rng.uniform(np.log(3.0), np.log(40.0)))),
            "axes": (1.0, _u(rng, (0.7, 1.0)), _u(rng, (0.7, 1.0))), "angle": _u(rng, (0, np.pi)),
            "lobes": (int(rng.integers(3, 7)), _u(rng, (0, 2 * np.pi)), _u(rng, (0.0, 1.0)) * extra["lobulation"]),
            "heterogeneity": extra["heterogeneity"], "nodular": extra.get("nodular", False),
            "texture_phase": rng.uniform(0, 2 * np.pi, size=8), "texture_dirs": rng.normal(size=(8, 3))}
