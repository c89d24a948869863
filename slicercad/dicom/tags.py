"""The DICOM attributes later modules need, read once per volume into a plain record."""
from __future__ import annotations

import dataclasses
import re
from typing import Optional


@dataclasses.dataclass
class SeriesTags:
    """Per-volume metadata. Times are seconds since midnight (None when absent)."""

    modality: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    series_number: Optional[int] = None
    series_description: str = ""
    protocol_name: str = ""
    image_type: tuple = ()
    contrast_bolus_agent: str = ""
    acquisition_time: Optional[float] = None
    content_time: Optional[float] = None
    series_time: Optional[float] = None
    inversion_time: Optional[float] = None   # ms
    trigger_time: Optional[float] = None     # ms
    b_value: Optional[float] = None          # s/mm^2
    diffusion_directionality: str = ""       # (0018,9075): ISOTROPIC, DIRECTIONAL, NONE, BMATRIX
    temporal_position: Optional[int] = None
    patient_age_years: Optional[float] = None
    patient_sex: str = ""                    # 'M', 'F', 'O' or ''
    field_strength_t: Optional[float] = None
    manufacturer: str = ""
    patient_id: str = ""
    study_date: str = ""                     # DICOM DA 'YYYYMMDD'
    study_description: str = ""
    acquisition_number: Optional[int] = None

    def earliest_time(self) -> Optional[float]:
        """Best available acquisition clock for ordering dynamic phases."""
        for t in (self.acquisition_time, self.content_time, self.series_time):
            if t is not None:
                return t
        return None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_dicom_time(value) -> Optional[float]:
    """DICOM TM ('HHMMSS.FFFFFF', also 'HH:MM:SS') -> seconds since midnight, None if unparsable."""
    text = str(value or "").strip().replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    frac = float(m.group(4) or 0.0)
    if h > 23 or mi > 59 or s > 60:
        return None
    return h * 3600 + mi * 60 + s + frac


def parse_age_years(value) -> Optional[float]:
    """DICOM AS ('045Y', '006M', '003W', '010D') -> years, None if unparsable."""
    m = re.fullmatch(r"(\d{1,3})([DWMY])", str(value or "").strip().upper())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[unit]
