"""Map the volumes of one study to named contrast phases from descriptions, DICOM tags and timing.

Evidence, strongest first: the user's overrides; ImageType (ADC, DIFFUSION/TRACEW, EXP/EADC, LOCALIZER),
the diffusion b-value (standard or vendor private tag) and DiffusionDirectionality; an exponential ADC
(eADC, EXP) is never taken as ADC; SeriesDescription/ProtocolName keywords in several vendors' spellings (Siemens
VIBE, GE LAVA, Philips THRIVE, Canon Quick3D, Japanese phase names); and the **timing order** of
the T1-weighted (MR) or CT volumes. Timing is fitted with an unknown injection time t_inj: volumes
acquired before t_inj are pre-contrast, each later one is scored on log(delay / typical delay)
with the typical delays below (EOB-MRI: arterial ~20-40 s, portal ~60-80 s, transitional ~3 min,
hepatobiliary ~20 min; CT liver: arterial ~35 s, portal ~70 s, delayed ~3 min; renal CT:
corticomedullary ~30-40 s, nephrographic ~90-120 s, excretory ~5-10 min); phases follow acquisition
order, several volumes may share one (multi-arterial protocols). Times crossing midnight are unwrapped.
Confidence: keyword + consistent timing 0.95, keyword only 0.85, keyword against timing 0.7 (0.5
where timing overrules a description shared by several volumes), timing only 0.45-0.8 (by how much
worse the next-best phase fits), order guess without any times 0.25. A tie the tags cannot break
is resolved by typical practice: the earliest T1/CT volume is taken as pre-contrast.
CT on ``auto``: renal when a description names renal phases; else renal from timing alone when >= 4 timed CT
volumes span a last one >= ``RENAL_DELAY_S`` (5 min) after the injection estimated on the renal timeline --
then every assignment of the study is capped at confidence 0.55 and its reason says the protocol came from
timing; else liver CT.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .dicom.tags import SeriesTags
from .errors import PhaseError

LIVER_MRI_PHASES = ("T1_pre", "arterial", "portal", "transitional", "hepatobiliary", "T2", "DWI", "ADC")
CT_PHASES = ("unenhanced", "arterial", "corticomedullary", "portal", "nephrographic", "delayed", "excretory")
PROTOCOLS = ("auto", "liver_mri", "liver_ct", "renal_ct")

# protocol -> ordered timeline: (phase, typical delay after injection in s, log-scale width)
TIMELINES = {
    "liver_mri": (("T1_pre", None, None), ("arterial", 30.0, 0.35), ("portal", 72.0, 0.30),
                  ("transitional", 180.0, 0.40), ("hepatobiliary", 1200.0, 0.35)),
    "liver_ct": (("unenhanced", None, None), ("arterial", 35.0, 0.35), ("portal", 72.0, 0.30),
                 ("delayed", 180.0, 0.45)),
    "renal_ct": (("unenhanced", None, None), ("corticomedullary", 35.0, 0.35), ("nephrographic", 100.0, 0.30),
                 ("excretory", 480.0, 0.45)),
}
# generic keyword class -> phase, per protocol
_GENERIC = ("pre", "arterial", "portal", "late", "hepatobiliary", "cortico", "nephro", "excret")
_PHASE_OF = {
    "liver_mri": dict(zip(_GENERIC, ("T1_pre", "arterial", "portal", "transitional", "hepatobiliary",
                                     "arterial", "portal", "transitional"))),
    "liver_ct": dict(zip(_GENERIC, ("unenhanced", "arterial", "portal", "delayed", "delayed",
                                    "arterial", "portal", "delayed"))),
    "renal_ct": dict(zip(_GENERIC, ("unenhanced", "corticomedullary", "nephrographic", "excretory", "excretory",
                                    "corticomedullary", "nephrographic", "excretory"))),
}
_KEYWORDS = {  # exact tokens, token prefixes (stems), substrings (Japanese)
    "pre": ({"pre", "precontrast", "plain", "native", "nativ", "nc", "noncontrast", "noncon", "unenhanced",
             "mask", "wo"}, (), ("単純", "造影前")),
    "arterial": ({"art", "ap", "hap", "lap", "eap", "aph", "arterial"}, ("arteri",), ("動脈", "早期")),
    "portal": ({"pv", "pvp", "portal", "venous", "ven", "vp", "port", "portovenous"}, ("portal",), ("門脈",)),
    "late": ({"transitional", "transit", "tp", "equilibrium", "eq", "equil", "delay", "delayed"},
             ("transition", "equilib"), ("平衡", "移行", "後期")),
    "hepatobiliary": ({"hbp", "hb", "hepatobiliary", "hepatocyte", "hepatocellular", "hepato"},
                      ("hepatobil",), ("肝細胞",)),
    "cortico": ({"cm", "cmp", "cortical", "cortico", "corticomedullary"}, ("corticomed",), ("皮髄",)),
    "nephro": ({"np", "ng", "nephro", "nephrographic", "nephrogram", "parenchymal"}, ("nephrog",), ("腎実質",)),
    "excret": ({"excret", "excretory", "excretion", "urogram", "urography", "pyelo", "pyelographic"},
               ("excret", "urogra"), ("排泄",)),
}
_WEAK = {"early": "arterial", "late": "late"}  # only when no other phase keyword is present
_CONTRAST = {"post", "gd", "gad", "eob", "primovist", "eovist", "ce", "postcontrast", "contrast", "enhanced"}
_LOCALIZER = {"loc", "localizer", "localiser", "scout", "survey", "3pl", "tripilot", "pilot", "cal", "calibration",
              "topogram", "surview", "scanogram", "refscan", "aahscout", "dose", "report", "mip", "minip", "vr",
              "vrt", "mrcp"}
_CHEMSHIFT = {"in", "opp", "out", "inphase", "outphase", "opposed", "ip", "op", "fat"}
_T2 = {"haste", "ssfse", "ssh", "fase", "fse", "tse", "frfse", "blade", "propeller", "multivane", "mvxd", "space"}
_T1 = {"t1", "vibe", "starvibe", "twist", "lava", "lavaflex", "flex", "disco", "thrive", "ethrive", "quick3d",
       "quick", "3d", "ffe", "tfe", "fl3d", "gre", "spgr", "fspgr", "flash", "dyn", "dynamic", "multiphase",
       "caipirinha", "caipi", "dixon", "mdixon", "water", "radial", "fame", "volume"}
_DWI = {"dwi", "diff", "diffusion", "dw", "trace", "tracew", "resolve", "ep2d", "dwibs", "isotropic"}
_ADC = {"adc", "dadc"}                                    # Siemens *_ADC, Philips dADC, GE/Canon ADC
_EADC = {"eadc", "deadc", "expadc", "exp", "exponential"}  # exp(-b ADC), unitless: Siemens EXP, Philips dEADC
_ADC_TYPES = {"ADC", "ADC_UNSPECIFIED"}
_EADC_TYPES = {"EXP", "EADC", "EXPONENTIAL", "EXP_ADC"}
_DWI_TYPES = {"DIFFUSION", "TRACEW", "TRACE", "ISOTROPIC", "ISODWI", "DWI", "CALC_BVALUE"}
_DIFFUSION_MAPS = {"FA", "COLFA", "TENSOR", "TENSOR_B0"}   # diffusion-derived, neither DWI nor ADC
_RENAL_HINT = re.compile(r"cortico|nephro|excret|urogra|kidney|(?<!ad)renal|\bcmp\b|皮髄|腎")
_MINUTES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:min|mins|minute|minutes|分)(?![a-z])")
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds|秒)(?![a-z])")
_INF = 1e6
_DAY = 86400.0
RENAL_DELAY_S = 300.0
RENAL_BY_TIMING_CONFIDENCE = 0.55


@dataclass
class PhaseAssignment:
    """One volume's phase (None = unassigned, with the reason), and how sure the assignment is."""

    volume_id: str
    phase: str | None
    confidence: float
    reason: str
    b_value: float | None = None
    overridden: bool = False


def _text(tags: SeriesTags) -> str:
    return f"{tags.series_description} {tags.protocol_name}".lower()


def _tokens(text: str) -> set[str]:
    """Lower-case alphanumeric tokens, plus each word token without trailing digits ('art1' -> 'art')."""
    text = re.sub(r"w/o\b|without", " wo ", text)
    text = re.sub(r"\bnon[\s_-]+(contrast|enhanced|con)", " noncontrast ", text)
    out = set()
    for tok in re.split(r"[^0-9a-z*+]+", text):
        tok = tok.strip("+")
        if tok:
            out.add(tok)
            stem = re.sub(r"\d+$", "", tok)
            if len(stem) >= 3 and stem != tok:
                out.add(stem)
    return out


def _generic_keyword(text: str, tokens: set[str]) -> str | None:
    """The one generic phase a description names, None when it names none or several."""
    hits = set()
    for generic, (exact, stems, subs) in _KEYWORDS.items():
        if tokens & exact or any(t.startswith(s) for t in tokens for s in stems) or any(s in text for s in subs):
            hits.add(generic)
    if "arterial" in hits and "late" in hits and "delay" not in tokens:  # "late arterial"
        hits.discard("late")
    if not hits:
        hits = {_WEAK[t] for t in tokens if t in _WEAK}
    return hits.pop() if len(hits) == 1 else None


def _keyword_delay(text: str) -> float | None:
    """A delay written into the description ('20min', '70s'), in seconds."""
    m = _MINUTES.search(text)
    if m:
        return float(m.group(1)) * 60.0
    m = _SECONDS.search(text)
    return float(m.group(1)) if m else None


def _nearest_phase(protocol: str, delay: float) -> str:
    posts = TIMELINES[protocol][1:]
    return min(posts, key=lambda p: abs(math.log(max(delay, 1.0) / p[1])))[0]


def _resolve_protocol(protocol: str, tags: SeriesTags, ct_protocol: str) -> str | None:
    modality = tags.modality.upper()
    if protocol == "auto":
        return "liver_mri" if modality == "MR" else ct_protocol if modality == "CT" else None
    if (protocol == "liver_mri") != (modality == "MR"):
        return None
    return protocol


def _classify(protocol: str, tags: SeriesTags) -> tuple[str, str, float]:
    """('exclude'|'ADC'|'DWI'|'T2'|'timeline', reason, confidence) from ImageType, diffusion tags and
    description tokens; the confidence is that of an ADC/DWI call (0.95 from tags, 0.85 from a description)."""
    text = _text(tags)
    tokens = _tokens(text)
    image_type = {str(v).upper() for v in tags.image_type}
    desc = repr(tags.series_description or tags.protocol_name)
    if "LOCALIZER" in image_type or tokens & _LOCALIZER:
        return "exclude", f"not a phase volume: localizer, projection, dose report or MRCP ({desc})", 0.0
    if image_type & {"MIP", "VOLUME RENDERING", "SCREEN SAVE", "PROJECTION IMAGE"}:
        return "exclude", f"projection/secondary capture (ImageType {sorted(image_type)})", 0.0
    if protocol != "liver_mri":
        return "timeline", f"CT volume {desc}", 0.0
    chosen = "\\".join(tags.image_type)
    named = f"ImageType {chosen}" if chosen else f"description {desc}"
    if image_type & _EADC_TYPES or tokens & _EADC:
        return "exclude", f"exponential ADC (eADC, unitless exp(-b ADC)) is not an ADC map ({named})", 0.0
    if image_type & _DIFFUSION_MAPS or tokens & {"fa", "colfa", "tensor"}:
        return "exclude", f"diffusion-derived map (FA/tensor) is neither DWI nor ADC ({named})", 0.0
    if image_type & _ADC_TYPES:
        return "ADC", f"ImageType {chosen} names ADC", 0.95
    if tokens & _ADC or "apparent diffusion" in text:
        return "ADC", f"description {desc} names ADC", 0.85
    if tags.b_value is not None:
        return "DWI", f"b-value {tags.b_value:g} s/mm^2 in the DICOM tags", 0.95
    if image_type & _DWI_TYPES:
        return "DWI", f"ImageType {chosen} names diffusion", 0.95
    if tags.diffusion_directionality == "ISOTROPIC":
        return "DWI", "DiffusionDirectionality ISOTROPIC (trace-weighted)", 0.95
    if (tokens & _DWI or any(t.endswith("dwi") for t in tokens) or any(re.fullmatch(r"b\d{1,4}", t) for t in tokens)
            or "拡散" in text):
        return "DWI", f"description {desc} names diffusion", 0.85
    if re.search(r"t2\*|t2star|t2_star|\bswi\b", text):
        return "exclude", f"T2*-weighted series is not a phase of the set ({desc})", 0.0
    has_t1 = any(t.startswith("t1") for t in tokens)
    if not has_t1 and (any(t.startswith("t2") for t in tokens) or tokens & _T2 or "t2強調" in text):
        return "T2", f"T2-weighted by description {desc}", 0.85
    if (tokens & _CHEMSHIFT and not tokens & {"fs", "sat", "water"}) or image_type & {"IN_PHASE", "OPP_PHASE",
                                                                                      "OUT_PHASE", "FAT"}:
        return "exclude", f"chemical-shift/fat image, not a dynamic phase ({desc})", 0.0
    if (has_t1 or tokens & _T1 or tokens & _CONTRAST or _generic_keyword(text, tokens) or _keyword_delay(text)
            or tags.contrast_bolus_agent):
        return "timeline", f"T1-weighted {desc}", 0.0
    return "exclude", f"no sequence or phase keyword in {desc}", 0.0


def _unwrap(times: list[float | None]) -> list[float | None]:
    """Seconds since the first acquisition, across midnight: the session starts after the largest gap."""
    known = sorted({t % _DAY for t in times if t is not None})
    if not known:
        return list(times)
    gaps = [((known[(i + 1) % len(known)] - known[i]) % _DAY) or _DAY for i in range(len(known))]
    start = known[(int(np.argmax(gaps)) + 1) % len(known)]
    return [None if t is None else (t - start) % _DAY for t in times]


def _fit(times: np.ndarray, cost_pre: np.ndarray, cost_kw: np.ndarray, timeline, margins: bool = True) -> tuple:
    """Best phase path and injection time. times sorted ascending; cost_* shape (n, P)."""
    n, n_phase = cost_kw.shape
    grid = np.arange(times[0] - 1500.0, times[-1], 1.0)
    delay = times[None, :] - grid[:, None]                               # (G, n)
    cost = np.empty((len(grid), n, n_phase))
    cost[:, :, 0] = np.where(delay < 0, 0.0, _INF)
    for p, (_, typical, width) in enumerate(timeline[1:], start=1):
        safe = np.log(np.clip(delay, 1e-3, None) / typical) / width
        cost[:, :, p] = np.where(delay > 0, safe ** 2, _INF)
    cost += cost_pre[None] + cost_kw[None]
    n_pre = (delay < 0).sum(axis=1)
    last_pre = np.where(n_pre > 0, times[np.clip(n_pre - 1, 0, None)], np.nan)
    gap = grid - last_pre
    prior = np.where(n_pre > 0, ((gap - 45.0) / 60.0) ** 2, 2.0 if n > 1 else 0.5)   # injection ~45 s after pre
    best, back = _monotone_dp(cost)
    total = best[:, -1, :].min(axis=1) + prior
    g = int(np.argmin(total))
    path = [int(np.argmin(best[g, -1]))]
    for i in range(n - 1, 0, -1):
        path.append(int(back[g, i, path[-1]]))
    path.reverse()

    def forced(i, p):  # best total with volume i forced to phase p
        c = cost.copy()
        c[:, i, [q for q in range(n_phase) if q != p]] = _INF
        return float((_monotone_dp(c)[0][:, -1, :].min(axis=1) + prior).min())

    if not margins:
        return path, float(grid[g]), []
    return path, float(grid[g]), [min(forced(i, p) for p in range(n_phase) if p != path[i]) - total[g]
                                  for i in range(n)]


def _transitions(n_phase: int) -> np.ndarray:
    """Cost of phase q followed by phase p: order only forward; repeating a phase costs 2.0
    (pre-contrast) or 1.0; each post-contrast phase skipped in between costs 1.5."""
    q, p = np.meshgrid(np.arange(n_phase), np.arange(n_phase), indexing="ij")
    t = np.where(p > q, 1.5 * np.clip(p - q - 1, 0, None), np.where(p == q, np.where(p == 0, 2.0, 1.0), _INF))
    return t.astype(float)


def _monotone_dp(cost: np.ndarray):
    """Dynamic programme over volumes in time order; best[g, i, p] = cheapest path ending in p."""
    _, n, n_phase = cost.shape
    trans = _transitions(n_phase)
    best = np.empty_like(cost)
    back = np.zeros(cost.shape, dtype=int)
    best[:, 0] = cost[:, 0] + 1.5 * np.clip(np.arange(n_phase) - 1, 0, None)   # phases skipped before the first
    for i in range(1, n):
        total = best[:, i - 1, :, None] + trans[None]                          # (G, q, p)
        back[:, i] = total.argmin(axis=1)
        best[:, i] = cost[:, i] + total.min(axis=1)
    return best, back


def _assign_timeline(protocol: str, items: list[tuple[str, SeriesTags]]) -> dict[str, PhaseAssignment]:
    timeline = TIMELINES[protocol]
    names = [p for p, _, _ in timeline]
    phase_of = _PHASE_OF[protocol]
    shown = [(t.series_description or t.protocol_name).strip() for _, t in items]
    descriptions = [d.lower() for d in shown]
    agents = [bool(t.contrast_bolus_agent.strip()) for _, t in items]
    agent_informative = 0 < sum(agents) < len(agents)
    keyword, weight, pre_cost = [], [], []
    for (vid, tags), desc, agent in zip(items, descriptions, agents):
        text = _text(tags)
        tokens = _tokens(text)
        generic = _generic_keyword(text, tokens)
        kw = phase_of[generic] if generic else None
        if kw is None and _keyword_delay(text) is not None:
            kw = _nearest_phase(protocol, _keyword_delay(text))
        keyword.append(kw)
        weight.append(25.0 if descriptions.count(desc) == 1 else 3.0)   # shared descriptions are weak evidence
        row = np.zeros(len(names))
        if tokens & _CONTRAST and generic != "pre":
            row[0] += weight[-1]
        if agent_informative:
            row[0] += 8.0 if agent else 0.0
            row[1:] += 0.0 if agent else 3.0
        pre_cost.append(row)
    times = _unwrap([t.earliest_time() for _, t in items])
    out = {}
    timed = [i for i, t in enumerate(times) if t is not None]
    if timed:
        order = sorted(timed, key=lambda i: (times[i], items[i][1].series_number or 0))
        t_arr = np.array([times[i] for i in order], dtype=float)
        pre_arr = np.array([pre_cost[i] for i in order])
        kw_arr = np.zeros_like(pre_arr)
        for row, i in enumerate(order):
            if keyword[i] is not None:
                kw_arr[row] = np.where(np.array(names) == keyword[i], 0.0, weight[i])
        path, t_inj, margins = _fit(t_arr, pre_arr, kw_arr, timeline)
        timing_path, _, _ = _fit(t_arr, pre_arr, np.zeros_like(kw_arr), timeline, margins=False)
        for row, i in enumerate(order):
            vid, phase, timing_phase = items[i][0], names[path[row]], names[timing_path[row]]
            d = t_arr[row] - t_inj
            when = (f"{d:.0f} s after the estimated injection" if d > 0 else f"{-d:.0f} s before the estimated "
                    "injection")
            place = f"{row + 1} of {len(order)} by acquisition time, {when}"
            if keyword[i] is not None and keyword[i] == timing_phase:
                out[vid] = PhaseAssignment(vid, phase, 0.95, f"description {shown[i]!r} and timing agree "
                                                             f"({place})")
            elif keyword[i] is not None:
                out[vid] = PhaseAssignment(vid, phase, 0.7 if phase == keyword[i] else 0.5,
                                           f"description {shown[i]!r} says {keyword[i]}, timing alone "
                                           f"suggests {timing_phase} ({place})")
            else:
                conf = 0.45 + 0.35 * (1.0 - math.exp(-max(margins[row], 0.0) / 2.0))
                out[vid] = PhaseAssignment(vid, phase, round(conf, 3), f"timing: {place}")
    untimed = [i for i, t in enumerate(times) if t is None]
    if untimed and not timed:
        order = sorted(untimed, key=lambda i: (items[i][1].temporal_position or 0, items[i][1].series_number or 0))
        for rank, i in enumerate(order):
            vid = items[i][0]
            if keyword[i] is not None:
                out[vid] = PhaseAssignment(vid, keyword[i], 0.85, f"description {shown[i]!r} (no times)")
            else:
                guess = names[min(rank, len(names) - 1)]
                out[vid] = PhaseAssignment(vid, guess, 0.25, f"guess from series order {rank + 1} of "
                                                             f"{len(order)} (no acquisition times)")
    else:
        for i in untimed:
            vid = items[i][0]
            out[vid] = (PhaseAssignment(vid, keyword[i], 0.85, f"description {shown[i]!r} (no time)")
                        if keyword[i] else PhaseAssignment(vid, None, 0.0, "no phase keyword and no acquisition time"))
    return out


def _ct_protocol(volumes) -> tuple[str, str | None]:
    """The CT protocol on 'auto' and, when timing alone chose renal, why (module doc)."""
    ct = [t for _, t in volumes if t.modality.upper() == "CT"]
    if _RENAL_HINT.search(" ".join(_text(t) for t in ct)):
        return "renal_ct", None
    timed = [t.earliest_time() for t in ct if _classify("renal_ct", t)[0] == "timeline"]
    times = np.sort([t for t in _unwrap(timed) if t is not None])
    if len(times) >= 4:
        zeros = np.zeros((len(times), len(TIMELINES["renal_ct"])))
        _, t_inj, _ = _fit(times, zeros, zeros, TIMELINES["renal_ct"], margins=False)
        last = float(times[-1] - t_inj)
        if last >= RENAL_DELAY_S:
            return "renal_ct", (f"renal protocol from timing alone (no description names a renal phase; the last of "
                                f"{len(times)} CT volumes {last / 60:.1f} min after the estimated injection)")
    return "liver_ct", None


def assign_phases(volumes: list[tuple[str, SeriesTags]], protocol: str = "auto",
                  overrides: dict[str, str] | None = None) -> list[PhaseAssignment]:
    """One PhaseAssignment per volume, in input order. See the module docstring for the rules.

    protocol: "auto" (MR -> liver_mri; CT -> renal_ct when a description names renal phases or, at
    capped confidence, when the timing has an excretory-like delay; else liver_ct) | "liver_mri" | "liver_ct" | "renal_ct". overrides: volume_id -> phase name (None to
    unassign); they win with confidence 1.0.
    """
    if protocol not in PROTOCOLS:
        raise PhaseError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}", "protocol")
    ids = [vid for vid, _ in volumes]
    if len(set(ids)) != len(ids):
        raise PhaseError("volume ids must be unique", "volumes")
    ct_protocol, by_timing = _ct_protocol(volumes) if protocol == "auto" else ("liver_ct", None)
    resolved = {vid: _resolve_protocol(protocol, tags, ct_protocol) for vid, tags in volumes}
    result: dict[str, PhaseAssignment] = {}
    groups: dict[str, list] = {}
    for vid, tags in volumes:
        proto = resolved[vid]
        if proto is None:
            result[vid] = PhaseAssignment(vid, None, 0.0, f"modality {tags.modality or '?'!r} does not fit "
                                                          f"protocol {protocol!r}")
            continue
        kind, reason, confidence = _classify(proto, tags)
        if kind == "exclude":
            result[vid] = PhaseAssignment(vid, None, 0.0, reason)
        elif kind == "timeline":
            groups.setdefault(proto, []).append((vid, tags))
        else:
            b = tags.b_value
            if kind == "DWI" and b is None:
                found = re.findall(r"\bb(\d{1,4})\b", _text(tags))
                b = float(found[0]) if len(found) == 1 else None
            result[vid] = PhaseAssignment(vid, kind, confidence, reason,
                                          b_value=b if kind == "DWI" else None)
    for proto, items in groups.items():
        result.update(_assign_timeline(proto, items))
    if by_timing:
        for vid, a in result.items():
            if resolved[vid] == "renal_ct" and a.phase is not None:
                result[vid] = PhaseAssignment(vid, a.phase, min(a.confidence, RENAL_BY_TIMING_CONFIDENCE),
                                              f"{by_timing}; {a.reason}", a.b_value)
    for vid, phase in (overrides or {}).items():
        if vid not in result:
            raise PhaseError(f"override names a volume that is not in the study; volumes: {ids}", vid)
        allowed = LIVER_MRI_PHASES if resolved[vid] == "liver_mri" else CT_PHASES if resolved[vid] else \
            LIVER_MRI_PHASES + CT_PHASES
        if phase is not None and phase not in allowed:
            raise PhaseError(f"unknown phase {phase!r} in overrides; expected one of {list(allowed)}", vid)
        auto = result[vid]
        tags = dict(volumes)[vid]
        result[vid] = PhaseAssignment(vid, phase, 1.0, f"user override (automatic: {auto.phase}, "
                                                       f"confidence {auto.confidence:.2f})",
                                      b_value=tags.b_value if phase == "DWI" else None, overridden=True)
    return [result[vid] for vid in ids]


def best_by_phase(assignments: list[PhaseAssignment]) -> dict[str, PhaseAssignment]:
    """One volume per phase: the most confident; for DWI the highest b-value first."""
    best: dict[str, PhaseAssignment] = {}
    for a in assignments:
        if a.phase is None:
            continue
        key = ((a.b_value or 0.0) if a.phase == "DWI" else 0.0, a.overridden, a.confidence)
        cur = best.get(a.phase)
        if cur is None or key > ((cur.b_value or 0.0) if cur.phase == "DWI" else 0.0, cur.overridden,
                                 cur.confidence):
            best[a.phase] = a
    return best
