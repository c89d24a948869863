"""KiTS23 clinical data (``dataset/kits23.json`` of github.com/neheller/kits23, MIT licence, (c) 2023
Nicholas Heller): loader, the seed's selection rules and the derived statistics the phantom draws from.

The file is read from a path the user gives; nothing is downloaded. The package ships (MIT, with the
licence notice in ``data/LICENSE-KiTS23.txt``) ``data/kits23_clinical_subset.json`` -- the 6 fields below for
all 489 cases, values unchanged -- and the derived statistics ``data/kits23_small_masses.json``. Fields used per case: ``case_id``,
``age_at_nephrectomy`` (years), ``gender``, ``radiographic_size`` (cm, longest diameter on imaging),
``malignant`` (pathology) and ``tumor_histologic_subtype``.

Selection (``select_small_solid``): the seed's population, solid renal masses <= 4 cm with pathology.
Rules in order; a case leaves at the first it fails, and the count per rule is reported:
  1. ``no_radiographic_size``: radiographic_size missing;
  2. ``over_4cm``: radiographic_size > 4.0 cm (4.0 itself is kept: "<= 4 cm");
  3. ``no_histology``: malignant or tumor_histologic_subtype missing;
  4. ``cystic_or_urothelial``: subtype in ``EXCLUDED_SUBTYPES`` (cyst, multilocular cystic RCC,
     transitional cell carcinoma: not solid renal-parenchymal masses);
  5. ``sex_excluded``: the sex policy maps the gender value to None (or it is missing);
  6. ``no_age``: age missing.
Sex (``SEX_POLICIES``): the ``gender`` field takes 'male', 'female' and 'transgender_male_to_female'
(KiTS23 HEAD: 306 / 182 / 1). Policy 'assigned-at-birth' (default) codes the last as male (sex
assigned at birth, the biological covariate of renal tumour epidemiology) and lists the recoded case;
'exclude' leaves such cases out. Any other value is refused naming the case (an unseen value must
not be coded silently).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .constants import SIZE_LIMIT_MM

SOURCE = "KiTS23 dataset/kits23.json (github.com/neheller/kits23), MIT licence, Copyright (c) 2023 Nicholas Heller"
EXCLUDED_SUBTYPES = ("cyst", "multilocular_cystic_rcc", "transitional_cell_carcinoma")
SEX_VALUES = ("male", "female", "transgender_male_to_female")
SEX_POLICIES = {
    "assigned-at-birth": {"male": 1, "female": 0, "transgender_male_to_female": 1},
    "exclude": {"male": 1, "female": 0, "transgender_male_to_female": None},
}
DEFAULT_SEX_POLICY = "assigned-at-birth"
RULES = ("no_radiographic_size", "over_4cm", "no_histology", "cystic_or_urothelial", "sex_excluded", "no_age")
SIZE_LIMIT_CM = SIZE_LIMIT_MM / 10.0
# subtype -> the phantom's mass type (benign: oncocytoma, fat-poor AML; malignant: ccRCC, papillary, chromophobe);
# subtypes without a phantom model are drawn as the malignant/benign type of the same row's class
PHANTOM_TYPE = {"clear_cell_rcc": "clear_cell_rcc", "papillary_rcc": "papillary_rcc",
                "chromophobe_rcc": "chromophobe_rcc", "oncocytoma": "oncocytoma",
                "angiomyolipoma": "fat_poor_aml"}


@dataclass
class Mass:
    """One KiTS23 case reduced to what the clinical model uses (size in cm as KiTS23 gives it)."""

    case_id: str
    age_years: float
    male: int
    size_cm: float
    malignant: int
    subtype: str
    gender: str


@dataclass
class Selection:
    masses: list
    excluded: dict                      # rule -> [case_id, ...]
    n_cases: int
    sex_policy: str
    recoded_sex: list = field(default_factory=list)   # (case_id, gender value, coded as)

    def counts(self) -> dict:
        n_benign = sum(1 for m in self.masses if not m.malignant)
        return {"n_cases_in_file": self.n_cases, "n_masses": len(self.masses), "n_benign": n_benign,
                "n_malignant": len(self.masses) - n_benign,
                "excluded": {r: len(self.excluded.get(r, [])) for r in RULES},
                "subtypes": dict(sorted(Counter(m.subtype for m in self.masses).items())),
                "sex": dict(sorted(Counter(m.gender for m in self.masses).items()))}


def load_kits23(path) -> list:
    """The case list of a KiTS23 clinical JSON; InputError naming the file (and case) when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the KiTS23 clinical JSON ({exc}); pass the path of dataset/kits23.json "
                         "from github.com/neheller/kits23", path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from exc
    if isinstance(data, dict) and isinstance(data.get("cases"), list):   # the bundled subset (with its licence)
        data = data["cases"]
    if not isinstance(data, list) or not data:
        raise InputError("expected a non-empty JSON list of cases (KiTS23 dataset/kits23.json)", path)
    for i, case in enumerate(data):
        if not isinstance(case, dict) or not isinstance(case.get("case_id"), str):
            raise InputError(f"entry {i} is not a case object with a 'case_id'", path)
    return data


def _number(case, key, src):
    v = case.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
        raise InputError(f"{key} must be a non-negative number or null, got {v!r}", src)
    return float(v)


def select_small_solid(cases, sex_policy: str = DEFAULT_SEX_POLICY, limit_cm: float = SIZE_LIMIT_CM,
                       source="kits23.json") -> Selection:
    """The seed's population from KiTS23 cases (rules in the module doc)."""
    if sex_policy not in SEX_POLICIES:
        raise InputError(f"sex policy must be one of {list(SEX_POLICIES)}, got {sex_policy!r}", "--sex-policy")
    coding = SEX_POLICIES[sex_policy]
    masses, excluded, recoded = [], {r: [] for r in RULES}, []
    for case in cases:
        cid = case["case_id"]
        src = f"{source}: {cid}"
        size = _number(case, "radiographic_size", src)
        age = _number(case, "age_at_nephrectomy", src)
        malignant, subtype, gender = case.get("malignant"), case.get("tumor_histologic_subtype"), case.get("gender")
        if malignant is not None and not isinstance(malignant, bool):
            raise InputError(f"malignant must be true, false or null, got {malignant!r}", src)
        if gender is not None and gender not in SEX_VALUES:
            raise InputError(f"gender value {gender!r} is not one of {list(SEX_VALUES)} (or null); "
                             "extend SEX_POLICIES to say how it is coded", src)
        if size is None:
            rule = "no_radiographic_size"
        elif size > limit_cm:
            rule = "over_4cm"
        elif malignant is None or subtype is None:
            rule = "no_histology"
        elif subtype in EXCLUDED_SUBTYPES:
            rule = "cystic_or_urothelial"
        elif gender is None or coding[gender] is None:
            rule = "sex_excluded"
        elif age is None:
            rule = "no_age"
        else:
            rule = None
        if rule:
            excluded[rule].append(cid)
            continue
        male = coding[gender]
        if gender not in ("male", "female"):
            recoded.append((cid, gender, "male" if male else "female"))
        masses.append(Mass(cid, age, int(male), size, int(malignant), str(subtype), gender))
    return Selection(masses, excluded, len(cases), sex_policy, recoded)


def _quantiles(values, qs=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)) -> list:
    import numpy as np

    return [round(float(v), 3) for v in np.quantile(np.asarray(values, float), qs)]


def derive_statistics(selection: Selection) -> dict:
    """What the phantom draws from (per class: count, subtype counts, male fraction, age mean/sd, size
    quantiles in cm; the age-size-sex relation as a per-class linear model size ~ age + male)."""
    import numpy as np

    out = {"source": SOURCE, "licence": "MIT", "derived_by": "slicercad.renal.kits23.derive_statistics",
           "selection": "solid renal masses <= 4 cm with histology (see slicercad/renal/kits23.py)",
           "sex_policy": selection.sex_policy, "counts": selection.counts(), "classes": {}}
    for label, name in ((0, "benign"), (1, "malignant")):
        ms = [m for m in selection.masses if m.malignant == label]
        age = np.array([m.age_years for m in ms])
        size = np.array([m.size_cm for m in ms])
        male = np.array([m.male for m in ms], float)
        X = np.column_stack([np.ones(len(ms)), age, male])
        coef, *_ = np.linalg.lstsq(X, size, rcond=None)
        resid = size - X @ coef
        out["classes"][name] = {
            "n": len(ms), "subtypes": dict(sorted(Counter(m.subtype for m in ms).items())),
            "male_fraction": round(float(male.mean()), 4), "age_mean": round(float(age.mean()), 2),
            "age_sd": round(float(age.std(ddof=1)), 2), "age_range": [float(age.min()), float(age.max())],
            "size_cm_quantiles": _quantiles(size), "quantile_levels": [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0],
            "size_model": {"intercept": round(float(coef[0]), 4), "age": round(float(coef[1]), 5),
                           "male": round(float(coef[2]), 4), "residual_sd": round(float(resid.std(ddof=3)), 4)}}
    return out


DATA_DIR = Path(__file__).with_name("data")
STATISTICS_FILE = DATA_DIR / "kits23_small_masses.json"
# the 6 fields used, for all 489 cases of KiTS23 (MIT; data/LICENSE-KiTS23.txt): tests and users without a checkout
BUNDLED_SUBSET = DATA_DIR / "kits23_clinical_subset.json"


def bundled_statistics() -> dict:
    """The derived statistics shipped with the package (regenerate: ``python -m slicercad.renal.kits23 PATH``)."""
    if not STATISTICS_FILE.is_file():
        raise InputError("derived KiTS23 statistics missing; regenerate with "
                         "`python -m slicercad.renal.kits23 path/to/kits23.json`", STATISTICS_FILE)
    return json.loads(STATISTICS_FILE.read_text(encoding="utf-8"))


if __name__ == "__main__":  # regenerate the bundled derived-statistics file from a local kits23.json
    import sys

    from ..atomic import write_json

    sel = select_small_solid(load_kits23(sys.argv[1]))
    stats = derive_statistics(sel)
    text = (DATA_DIR / "LICENSE-KiTS23.txt").read_text(encoding="utf-8")
    stats["licence_text"] = text[text.index("MIT License"):]
    print(write_json(STATISTICS_FILE, stats, indent=1))
