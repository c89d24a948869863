"""Defined quantities of RenalMassCAD (each pinned by Testing/test_renal_core.py). Standard library only.

- ``PHASES``: the 4 CT phases of the source report, in channel order (names of ``slicercad.phases``'
  renal protocol): unenhanced, corticomedullary (~35 s), nephrographic (~100 s), excretory (~8 min).
- ``SIZE_LIMIT_MM`` = 40: the report's population is solid masses <= 4 cm; a larger mass is flagged
  (outside the model's range) and not scored.
- ``HU_WINDOW`` = (-160, 240) HU (centre 40, width 400, the abdominal soft-tissue window): CT values are
  clipped to it and mapped linearly to [0, 1] before the CNN (HU are absolute: no per-ROI normalisation).
- ``FAT_HU`` = -10: a mass holding macroscopic fat (>= ``FAT_FRACTION`` = 10 % of its core voxels on the
  unenhanced phase below -10 HU) is a classic angiomyolipoma, flagged and not scored.
- ``ENHANCEMENT_HU`` = 15: the mass's peak enhancement over unenhanced (max over the enhanced phases of
  the core mean HU minus unenhanced) below 15 HU is hypo-/non-enhancing: indeterminate (a hyperdense cyst or a
  hypovascular RCC, e.g. papillary), flagged and not scored (10-20 HU is the indeterminate band; 20 HU is the
  usual cut for definite enhancement).
- ``CORE_FRACTION`` = 0.6: the mass "core" for HU statistics is the disk of 0.6 x the measured diameter.
- ``CV_FOLDS`` = 5 and ``CV_REPEATS`` = 10 (clinical baseline; patient-level folds, stratified on the label).
- Youden's rule: the cut-off maximising sensitivity + specificity - 1, chosen on training folds only.
"""
PHASES = ("unenhanced", "corticomedullary", "nephrographic", "excretory")
PHASE_TITLES = {"unenhanced": "Unenhanced", "corticomedullary": "Corticomedullary",
                "nephrographic": "Nephrographic", "excretory": "Excretory"}
ENHANCED_PHASES = PHASES[1:]
SIZE_LIMIT_MM = 40.0
HU_WINDOW = (-160.0, 240.0)
FAT_HU = -10.0
FAT_FRACTION = 0.10
ENHANCEMENT_HU = 15.0
CORE_FRACTION = 0.6
CV_FOLDS = 5
CV_REPEATS = 10
CLASSES = ("benign", "malignant")
CLINICAL_FEATURES = ("age_years", "male", "size_cm")
