"""Coded terminology and algorithm identification shared by the SEG, Parametric Map and SR writers.

Lesion types are SNOMED-CT codes from Slicer's terminology (``SegmentationCategoryTypeModifier-DICOM-Master``:
category 49755003 "Morphologically Altered Structure" with types Cyst 367643001, Mass 4147007, Nodule 27925004,
Neoplasm 108369006, "Neoplasm, Primary" 86049000, "Neoplasm, Secondary" 14799000, "Neoplasm, benign" 3898006,
Hemorrhage 50960005) and, for the types that list lacks, the DICOM content mapping resource's SNOMED concepts
(Hemangioma 400210000, Hyperplasia 76197007) and Hepatocellular carcinoma 25370001. A class with no standard
code gets a private code of its own (``99SLICERCAD``, value derived from its name, meaning = the name), so two
classes never share a code. Values without a standard concept (probabilities, TI values, anomaly scores, a
method or rule stated as text) use private concepts of the same scheme, one meaning per code, declared in each
file's Coding Scheme Identification.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

PRIVATE_SCHEME = "99SLICERCAD"
MANUFACTURER = "SlicerCAD"
RESEARCH_NOTICE = "SlicerCAD research use only - not for diagnosis"

# name -> (category (scheme, value, meaning), type (scheme, value, meaning))
_MAS = ("SCT", "49755003", "Morphologically Altered Structure")
_TISSUE = ("SCT", "85756007", "Tissue")
LESION_TYPES = {
    "lesion": (_MAS, ("SCT", "52988006", "Lesion")),
    "mass": (_MAS, ("SCT", "4147007", "Mass")),
    "nodule": (_MAS, ("SCT", "27925004", "Nodule")),
    "cyst": (_MAS, ("SCT", "367643001", "Cyst")),
    "hemangioma": (_MAS, ("SCT", "400210000", "Hemangioma")),
    "metastasis": (_MAS, ("SCT", "14799000", "Neoplasm, Secondary")),
    "hcc": (_MAS, ("SCT", "25370001", "Hepatocellular carcinoma")),
    "fnh": (_MAS, ("SCT", "76197007", "Hyperplasia")),
    "neoplasm": (_MAS, ("SCT", "108369006", "Neoplasm")),
    "tumor": (_MAS, ("SCT", "108369006", "Neoplasm")),
    "benign": (_MAS, ("SCT", "3898006", "Neoplasm, benign")),
    "malignant": (_MAS, ("SCT", "86049000", "Neoplasm, Primary")),
    "renal_cell_carcinoma": (_MAS, ("SCT", "702391001", "Renal cell carcinoma")),
    "hemorrhage": (_MAS, ("SCT", "50960005", "Hemorrhage")),
    "anomaly": (_MAS, ("SCT", "49755003", "Morphologically Altered Structure")),
}
ALIASES = {"haemangioma": "hemangioma", "metastases": "metastasis", "met": "metastasis",
           "hepatocellular_carcinoma": "hcc", "focal_nodular_hyperplasia": "fnh", "rcc": "renal_cell_carcinoma",
           "haemorrhage": "hemorrhage"}
SITES = {"liver": ("SCT", "10200004", "Liver"), "kidney": ("SCT", "64033007", "Kidney"),
         "brain": ("SCT", "12738006", "Brain"), "heart": ("SCT", "80891009", "Heart"),
         "lung": ("SCT", "39607008", "Lung"), "abdomen": ("SCT", "113345001", "Abdomen"),
         "head": ("SCT", "69536005", "Head"), "chest": ("SCT", "51185008", "Chest")}
# private concepts: key -> (value, meaning)
PRIVATE = {"probability": ("P001", "Probability"), "predicted_class": ("P002", "Predicted class"),
           "recommended_ti": ("P003", "Recommended inversion time"), "anomaly_score": ("P004", "Anomaly score"),
           "anomaly_percentile": ("P005", "Anomaly percentile among normals"),
           "model_sha256": ("P006", "Model SHA-256"), "case": ("P007", "Case-level result"),
           "model_score": ("P008", "Model score"),
           "score_name": ("P025", "Model score name"), "roi_sphere_volume": ("P026", "ROI sphere volume"), "null_ti": ("P009", "Myocardial null TI on the scout"),
           "blood_null_ti": ("P010", "Blood null TI on the scout"),
           "ti_uncertainty": ("P011", "Null TI uncertainty (1 SD)"),
           "optimal_ti_low": ("P012", "Optimal LGE TI range, low end"),
           "optimal_ti_high": ("P013", "Optimal LGE TI range, high end"),
           "anomaly_variant_score": ("P014", "Complexity-corrected anomaly score"),
           "anomaly_map_threshold": ("P015", "Anomaly map threshold"),
           "anomaly_flagged_volume": ("P016", "Volume above the anomaly map threshold"),
           "heat_map": ("P017", "Heat map value"), "anomaly_z": ("P018", "Anomaly z-score vs normals"),
           "anomaly_map_score": ("P019", "Anomaly map score (top 1 %)"),
           "anomaly_map_percentile": ("P024", "Anomaly map score percentile among normals"),
           "method": ("P020", "Estimation method"), "rule": ("P021", "Recommendation rule"),
           "warnings": ("P022", "Warnings"), "status": ("P023", "Result status"),
           "alignment": ("P027", "Spatial normalisation to the model grid")}


def lesion_type_key(name: str) -> str | None:
    """Normalised key of a class / lesion-type name ('Haemangioma' -> 'hemangioma'); None when it has no
    standard code."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    key = ALIASES.get(key, key)
    return key if key in LESION_TYPES else None


def code(triple):
    """A pydicom ``Code`` from (scheme, value, meaning)."""
    from pydicom.sr.coding import Code

    scheme, value, meaning = triple
    return Code(value=value, scheme_designator=scheme, meaning=meaning)


def private_code(key: str, meaning: str | None = None):
    value, default = PRIVATE[key]
    return code((PRIVATE_SCHEME, value, meaning or default))


def named_code(prefix: str, name: str):
    """A private code standing for one name (a class, a score, a status): value ``prefix`` + 12 hex digits of
    the name's sha1 (stable across runs), meaning the name. Names over 64 characters are refused (the meaning
    would be cut and the name lost)."""
    from ..errors import InputError

    name = str(name).strip()
    if not name or len(name) > 64:
        raise InputError(f"a coded name must be 1-64 characters, got {len(name)}", name[:80])
    return code((PRIVATE_SCHEME, prefix + hashlib.sha1(name.encode()).hexdigest()[:12], name))


def class_code(name: str):
    """The code of a lesion class: its SNOMED-CT type (``LESION_TYPES``), else a private code of its own name."""
    key = lesion_type_key(name)
    return code(LESION_TYPES[key][1]) if key else named_code("C", name)


def category_code(name: str):
    key = lesion_type_key(name)
    return code(LESION_TYPES[key][0] if key else _MAS)


def class_name(scheme: str, value: str, meaning: str) -> str:
    """The class name a class code stands for (inverse of ``class_code``): the first ``LESION_TYPES`` key of a
    SNOMED code, the meaning of a private class code."""
    if scheme == PRIVATE_SCHEME:
        return str(meaning)
    return next((k for k, (_, t) in LESION_TYPES.items() if (t[0], t[1]) == (scheme, value)), str(meaning))


def distinct_class_codes(names, what: str) -> None:
    """Refuse classes that share a code (they could not be told apart when read back)."""
    from ..errors import InputError

    seen = {}
    for name in names:
        c = class_code(name)
        key = (c.scheme_designator, c.value)
        if key in seen:
            raise InputError(f"classes {seen[key]!r} and {name!r} have the same code {c.scheme_designator} "
                             f"{c.value} ({c.meaning}); name them apart", what)
        seen[key] = name


def coding_scheme_identification():
    """The (0008,0110) item declaring the private scheme, so validators and readers know it."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "SlicerCAD result concepts"
    item.CodingSchemeResponsibleOrganization = "SlicerCAD"
    return item


@dataclass
class Algorithm:
    """Who made a result: model name and version, the weights' sha256, how ('AUTOMATIC' model output,
    'SEMIAUTOMATIC' once a person corrected it, 'MANUAL')."""

    name: str
    version: str = "1"
    sha256: str | None = None
    family: str = "ai"                       # ai | region_growing | morphology | deformable | threshold | manual
    algorithm_type: str = "AUTOMATIC"
    parameters: dict = field(default_factory=dict)

    def corrected(self) -> "Algorithm":
        """The same algorithm, marked SEMIAUTOMATIC (a person edited its output)."""
        return Algorithm(self.name, self.version, self.sha256, self.family, "SEMIAUTOMATIC", dict(self.parameters))

    def all_parameters(self) -> dict:
        out = {str(k): str(v) for k, v in self.parameters.items()}
        if self.sha256:
            out["model_sha256"] = str(self.sha256)
        return out

    def family_code(self):
        from pydicom.sr.codedict import codes

        return {"ai": codes.cid7162.ArtificialIntelligence, "region_growing": codes.cid7162.NeighborhoodAnalysis,
                "manual": codes.cid7162.ManualProcessing,
                "morphology": codes.cid7162.MorphologicalOperations,
                "threshold": codes.cid7162.MorphologicalOperations}.get(self.family,
                                                                         codes.cid7162.DeformableModels)

    def seg_identification(self):
        """highdicom's Segment Algorithm Identification (name, family, version, model_sha256 in parameters)."""
        import highdicom as hd

        return hd.AlgorithmIdentificationSequence(name=self.name[:64], family=self.family_code(),
                                                  version=str(self.version)[:64], source=MANUFACTURER,
                                                  parameters=self.all_parameters() or None)

    def sr_identification(self):
        """highdicom's TID 4019 Algorithm Identification (parameters 'key=value', model_sha256 among them)."""
        import highdicom as hd

        params = [f"{k}={v}" for k, v in self.all_parameters().items()]
        return hd.sr.AlgorithmIdentification(name=self.name[:64], version=str(self.version)[:64],
                                             parameters=params or None)


# A sphere built from a lesion list's centre and diameter (a person's measurement): not model output
SPHERE_ROI = Algorithm("SlicerCAD sphere ROI from centre/diameter", "1", family="manual",
                       algorithm_type="SEMIAUTOMATIC")


def derived_uids(source_series_uid: str, algorithm, *content) -> tuple:
    """(series UID, SOP instance UID) of a result, derived from its source series, the model (name, version,
    sha256) and its content (bytes or text pieces): a rerun with the same input writes the same UIDs, so the
    PACS does not gain a duplicate result series."""
    from pydicom.uid import generate_uid

    digest = hashlib.sha256()
    for piece in content:
        digest.update(piece if isinstance(piece, bytes) else str(piece).encode())
    who = "none" if algorithm is None else f"{algorithm.name}|{algorithm.version}|{algorithm.sha256}"
    base = [str(source_series_uid), who, digest.hexdigest()]
    return generate_uid(entropy_srcs=base + ["series"]), generate_uid(entropy_srcs=base + ["instance"])


def algorithm_from_card(card: dict, algorithm_type: str = "AUTOMATIC") -> Algorithm:
    """The Algorithm of a model card (name, version, sha256)."""
    params = {"task": card["task"]} if card.get("task") else {}
    if card.get("training_data", {}).get("synthetic"):
        params["training_data"] = "SYNTHETIC"
    return Algorithm(name=str(card.get("name") or card.get("task") or "SlicerCAD model"),
                     version=str(card.get("version") or "1"), sha256=card.get("sha256"),
                     algorithm_type=algorithm_type, parameters=params)


def parse_parameters(text) -> dict:
    """'k1=v1,k2=v2' (SEG AlgorithmParameters) or ['k=v', ...] (SR) -> dict."""
    items = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    out = {}
    for item in items:
        if "=" in str(item):
            k, v = str(item).split("=", 1)
            out[k.strip()] = v.strip()
    return out
