"""The 8-image Gd-EOB-DTPA MRI set of the source report (seed 000) and phase checks."""
from __future__ import annotations

from ..errors import PhaseError
from ..phases import LIVER_MRI_PHASES

# Order is the channel order of every ROI stack and model input. The core phase-assignment vocabulary (one set of names across the project):
# T1_pre (before contrast), arterial (late arterial), portal (~60 s), transitional (~3 min; EOB liver
# uptake starts, so washout can be mimicked), hepatobiliary (~20 min; the reference phase where lesions
# are clearest), T2, DWI (high b-value, b recorded with the study), ADC (x 1e-3 mm^2/s).
PHASES = LIVER_MRI_PHASES
REFERENCE_PHASE = "hepatobiliary"

PHASE_TITLES = {
    "T1_pre": "T1 pre", "arterial": "Arterial", "portal": "Portal", "transitional": "Transitional",
    "hepatobiliary": "Hepatobiliary", "T2": "T2", "DWI": "DWI", "ADC": "ADC",
}


def check_phases(available, required, lesion_id=None) -> tuple:
    """Return ``required`` as a tuple in canonical order; raise PhaseError naming what is missing.

    Unknown phase names are an error too: a typo must not silently drop a channel.
    """
    required = tuple(required)
    unknown = [p for p in required if p not in PHASES]
    if unknown:
        raise PhaseError(f"unknown phase(s) {unknown}; expected names from {list(PHASES)}",
                         lesion_id)
    missing = [p for p in required if p not in set(available)]
    if missing:
        raise PhaseError(f"required phase(s) {missing} missing; available {sorted(available)}",
                         lesion_id)
    return tuple(p for p in PHASES if p in required)


# gadoxetate (Gd-EOB-DTPA): the only agent with a ~20-min hepatobiliary phase; matched on lower-case text
# with spaces, hyphens and punctuation removed ("Gd-EOB-DTPA", "gadoxetic acid", "EOB・プリモビスト")
_GADOXETATE = ("gadoxet", "eob", "primovist", "eovist", "プリモビスト", "ガドキセト")


def is_gadoxetate(agent: str) -> bool:
    """True when a ContrastBolusAgent text names gadoxetate (Gd-EOB-DTPA, Primovist, Eovist)."""
    text = "".join(ch for ch in str(agent).lower() if ch.isalnum())
    return any(name in text for name in _GADOXETATE)


def hepatobiliary_agent_warning(agents) -> str | None:
    """Warning for a liver MRI study whose ContrastBolusAgent texts (empty = unknown) are not gadoxetate."""
    named = sorted({a.strip() for a in agents if a and a.strip()})
    if any(is_gadoxetate(a) for a in named):
        return None
    if not named:
        return ("contrast agent unknown (no ContrastBolusAgent): a hepatobiliary phase needs gadoxetate "
                "(Gd-EOB-DTPA, Primovist/Eovist); check the ~20-min volume before using it as one")
    return (f"contrast agent {', '.join(map(repr, named))} is not gadoxetate (Gd-EOB-DTPA, Primovist/Eovist): "
            "a late volume shows no hepatocyte uptake and is not a hepatobiliary phase")
