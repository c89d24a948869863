"""Load a DICOM folder into volume nodes, assign phases, and list them in a table node."""
from __future__ import annotations

import dataclasses

from slicercad.dicom.scan import scan_folder
from slicercad.errors import DicomError
from slicercad.phases import assign_phases

from .app import ensure_scene
from .dicom_nodes import set_volume_files
from .tables import append_rows
from .volumes import sitk_to_volume_node

VOLUME_ID_ATTRIBUTE = "SlicerCAD.volumeID"
PHASE_ATTRIBUTE = "SlicerCAD.phase"


@dataclasses.dataclass
class StudyLoadResult:
    """Volume nodes by volume id, their phase assignments (input order) and the summary table node."""

    volume_nodes: dict
    assignments: list
    table_node: object
    not_loaded: list = dataclasses.field(default_factory=list)  # (volume_id, reason)

    def summary(self) -> str:
        """One line, e.g. '8 volumes loaded; phases: T1_pre, arterial, ...; unassigned: 1'."""
        phases = list(dict.fromkeys(a.phase for a in self.assignments if a.phase))
        unassigned = sum(a.phase is None for a in self.assignments)
        text = f"{len(self.volume_nodes)} volumes loaded; phases: {', '.join(phases) or 'none'}"
        text += f"; unassigned: {unassigned}" if unassigned else ""
        return text + (f"; not loaded: {len(self.not_loaded)}" if self.not_loaded else "")


def _node_name(assignment, description: str, volume_id: str) -> str:
    label = description or volume_id
    phase = assignment.phase
    if phase == "DWI" and assignment.b_value is not None:
        phase = f"DWI b{assignment.b_value:g}"
    return f"{phase}: {label}" if phase else label


def load_study(scene, folder, strict: bool = False, protocol: str = "auto") -> StudyLoadResult:
    """Scan ``folder``, load every volume as a node (named after its phase) and assign phases per study.

    Each node records its DICOM files (``SlicerCAD.files``, so ``tags_for_volume_node`` works),
    its volume id and its phase as attributes. The table lists one row per volume.
    """
    scene = ensure_scene(scene)
    scan = scan_folder(folder, strict)
    if not scan.volumes():
        raise DicomError(f"no DICOM volumes found ({len(scan.skipped)} of {scan.n_files} files skipped)",
                         str(folder))
    nodes: dict = {}
    assignments: list = []
    not_loaded = [(v.volume_id, "time series (cine/perfusion), not a phase volume")
                  for v in scan.volumes() if v.kind == "timeseries"]
    rows: list[dict] = []
    for study in scan.studies:
        records = [v for v in study.volumes() if v.kind != "timeseries"]
        study_assignments = assign_phases([(v.volume_id, v.tags) for v in records], protocol)
        for record, assignment in zip(records, study_assignments):
            image = record.load(strict)
            name = _node_name(assignment, record.tags.series_description, record.volume_id)
            node = sitk_to_volume_node(image, scene, name=name)
            set_volume_files(node, record.files, record.frames[0].index if record.frames else 0)
            node.SetAttribute(VOLUME_ID_ATTRIBUTE, record.volume_id)
            node.SetAttribute(PHASE_ATTRIBUTE, assignment.phase or "")
            nodes[record.volume_id] = node
            rows.append({
                "volume_id": record.volume_id,
                "series_number": record.tags.series_number if record.tags.series_number is not None else -1,
                "series_description": record.tags.series_description,
                "phase": assignment.phase or "",
                "confidence": float(assignment.confidence),
                "b_value": assignment.b_value,
                "reason": assignment.reason,
                "files": len(record.files),
                "warnings": "; ".join(record.warnings),
            })
        assignments.extend(study_assignments)
    table = append_rows(rows, name="Study volumes", scene=scene)
    return StudyLoadResult(nodes, assignments, table, not_loaded)
