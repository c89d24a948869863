"""Every quantity the TI method defines, in one light module (numbers pinned by Testing/test_ti_constants.py).

Offsets are ``frame TI - myocardial null TI`` on the scout, in ms.

* CNN categories (``OFFSET_BIN_EDGES_MS``): six 20 ms bins covering the trained range -60..+60 ms,
  as in the report (trained on frames within ±60 ms of the null). A bin holds its lower edge; the
  last holds +60. Frames beyond ±60 ms are not trained on (closed model); when evaluated they are
  "correct" when put in the extreme bin on their side. The open-ended variant (``OPEN_BIN_EDGES_MS``)
  adds a "< -60" and a "> +60" class and is trained on such frames; it is a separate model.
* Optimal range (``OPTIMAL_RANGE_MS``): LGE TI in [null - 10, null + 30] ms. Asymmetric on purpose:
  a TI shorter than the null leaves normal myocardium with negative longitudinal magnetisation,
  which a magnitude reconstruction shows bright — enhanced scar can then be nulled and the
  contrast inverts; a TI longer than the null only lets normal myocardium grey slowly (the
  recovery slope at the null is gentle), so about 3x more room is allowed on the long side.
* Recommendation: the estimated null + ``RECOMMEND_MARGIN_MS`` (the middle of the optimal range),
  so an estimate within ±20 ms of the true null lands in range.
"""
from __future__ import annotations

OFFSET_BIN_EDGES_MS = (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0)
OFFSET_BIN_CENTRES_MS = (-50.0, -30.0, -10.0, 10.0, 30.0, 50.0)
OFFSET_CLASSES = ("-60..-40", "-40..-20", "-20..0", "0..+20", "+20..+40", "+40..+60")
TRAINED_RANGE_MS = (-60.0, 60.0)
OPEN_CLASSES = ("<-60",) + OFFSET_CLASSES + (">+60",)
OPEN_BIN_CENTRES_MS = (-80.0,) + OFFSET_BIN_CENTRES_MS + (80.0,)   # used for correction only

OPTIMAL_RANGE_MS = (-10.0, 30.0)      # recommended LGE TI relative to the true null
RECOMMEND_MARGIN_MS = 10.0            # recommended = estimated null + margin (centre of the range)

# CNN input: the central CNN_CROP_FRACTION of the frame in each direction (a scout is planned on the
# heart: the ROI finder's centre prior assumes the same), resized, normalised by its 99.5th percentile.
# The whole 128-px frame at 64 px left the myocardium ~2 px thick: frame accuracy 0.32 vs 0.43 cropped
# (diagnosis in README "CardiacTICorrector").
CNN_INPUT_PX = 64
CNN_CROP_FRACTION = 0.5
CNN_NORM_PERCENTILE = 99.5
CNN_SIGMA_FLOOR_MS = 8.0              # a CNN series estimate is never claimed tighter than this
CNN_LOGLIK_TEMPER = 0.5               # frames of one series are correlated: log-likelihoods x 0.5

# physics fit
MIN_DISTINCT_TIS = 3
T1STAR_GRID_MS = (30.0, 3000.0, 300)  # log-spaced grid for the variable-projection start
BAD_FIT_NRMSE = 0.12                  # residual RMS / signal range above this: fit flagged bad
BAD_FIT_MAX_UNCERTAINTY_MS = 40.0     # a null less certain than this (1 sd) is flagged
FUSION_DISAGREE_SIGMAS = 3.0          # CNN and physics further apart than this: warning

# scout -> LGE relation and the later-after-contrast drift (adjustable, see physics.lge_rule)
DEFAULT_RR_MS = 857.0                 # 70 bpm when NominalInterval / HeartRate are absent
DEFAULT_INVERSIONS_EVERY_RR = 2       # a typical segmented IR-GRE LGE
DEFAULT_READOUT_MS = 150.0            # readout window after the TI, per inversion
DRIFT_MS_PER_MIN_AT_10MIN = 3.0       # null-TI lengthening rate 10 min after injection; rate ~ 1/t
DEFAULT_MINUTES_SINCE_INJECTION = 10.0
DEFAULT_MINUTES_SCOUT_TO_LGE = 2.0    # the LGE is acquired this long after the scout

FIELD_STRENGTHS_T = (1.5, 3.0)
# physics null sd (slicercad/ti/uncertainty.py): fit sd, ROI pixel bootstrap, ROI-halves gap, model floor
ROI_BOOTSTRAP_N = 12
ROI_BOOTSTRAP_GN_STEPS = 2             # Gauss–Newton steps of each resample's linearised refit (>= 2)
ROI_BOOTSTRAP_GN_TOL_MS = 0.25         # a resample whose last step moved its null more: refitted in full
PHYSICS_MODEL_FLOOR_MS = 4.5          # ~68 % coverage at 1 sd on validation phantoms (not the test seed)
ROI_HALVES_FLAG_MS = 20.0             # the two halves of the ROI null this far apart: fit flagged
