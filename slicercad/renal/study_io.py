"""A renal CT study from a DICOM folder: the 4 phases by phase assignment (``slicercad.phases``; protocol
``renal_ct`` by default, as the panel), age and sex from the tags. Refuses a folder with several studies or
patients, or without all 4 phases; phases assigned with confidence < 0.6 are noted."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..dicom.scan import scan_folder
from ..errors import DicomError, PhaseError
from ..phases import assign_phases, best_by_phase
from .constants import PHASES
from .patient import clinical_from_file


@dataclass
class RenalStudy:
    images: dict
    assignments: dict            # phase -> PhaseAssignment
    clinical: dict
    notes: list = field(default_factory=list)
    files: dict = field(default_factory=dict)   # phase -> the DICOM files of its volume


def load_renal_study(folder, protocol: str = "renal_ct", overrides: dict | None = None, strict=False) -> RenalStudy:
    folder = Path(folder)
    scan = scan_folder(folder, strict)
    vols = [v for v in scan.volumes() if v.kind != "timeseries"]
    if not vols:
        raise DicomError(f"no DICOM volumes found ({len(scan.skipped)} of {scan.n_files} files skipped)", folder)
    studies = {v.tags.study_instance_uid for v in vols}
    patients = {v.tags.patient_id for v in vols}
    if len(studies) > 1 or len(patients) > 1:
        raise PhaseError(f"the folder holds {len(studies)} studies of {len(patients)} patient(s): phases must come from "
                         "one study of one patient; give one study per folder", folder)
    assignments = assign_phases([(v.volume_id, v.tags) for v in vols], protocol, overrides)
    best = best_by_phase(assignments)
    missing = [p for p in PHASES if p not in best]
    if missing:
        seen = {a.volume_id: a.phase for a in assignments}
        raise PhaseError(f"missing phase(s) {missing} (assigned: {seen}); override the assignment or add the series",
                         folder)
    by_id = {v.volume_id: v for v in vols}
    images = {p: by_id[best[p].volume_id].load(strict) for p in PHASES}
    notes = [f"{p}: confidence {best[p].confidence:.2f} ({best[p].reason})" for p in PHASES
             if best[p].confidence < 0.6]
    clinical = clinical_from_file(by_id[best[PHASES[0]].volume_id].files[0])
    files = {p: list(by_id[best[p].volume_id].files) for p in PHASES}
    return RenalStudy(images, {p: best[p] for p in PHASES}, clinical, notes, files)
