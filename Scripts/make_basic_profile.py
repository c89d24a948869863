"""Regenerate ``slicercad/engine/basic_profile.json``: PS3.15 Annex E Table E.1-1 from published transcriptions.

Basic Profile column, names and edition: dicom-anonymizer's ``dicomfields_2026c.py`` (``pip install
dicom-anonymizer==2.1.0``). Option columns: idiscore's ``_public_dicom.py``, read as text, never
imported (``pip install idiscore==1.6.0``; it needs Python 3.12, so on 3.11 add ``--no-deps
--ignore-requires-python``). Keywords and VRs from pydicom's data dictionary. Only needed to regenerate::

    python Scripts/make_basic_profile.py [--out slicercad/engine/basic_profile.json]
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
from importlib.metadata import version
from pathlib import Path

EDITION = "2026c"
BASIC_MODULE = f"dicomanonymizer.dicom_anonymization_databases.dicomfields_{EDITION}"
ACTION_LISTS = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
                "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
IDISCORE_CODES = {"DUMMY": "D", "EMPTY": "Z", "REMOVE": "X", "KEEP": "K", "CLEAN": "C", "UID": "U",
                  "EMPTY_OR_DUMMY": "Z/D", "REMOVE_OR_EMPTY": "X/Z", "REMOVE_OR_DUMMY": "X/D",
                  "REMOVE_OR_EMPTY_OR_DUMMY": "X/Z/D", "REMOVE_OR_EMPTY_OR_UID": "X/Z/U*"}
PRIVATE = "(gggg,eeee)"  # private attributes: odd group numbers
OUT = Path(__file__).resolve().parents[1] / "slicercad" / "engine" / "basic_profile.json"
_ENTRY = re.compile(r"\(\s*0x([0-9A-F]{4}),\s*0x([0-9A-F]{4}),?\s*(?:0x([0-9A-F]{4}),\s*0x([0-9A-F]{4}),?\s*)?\),?"
                    r"\s*#\s*(.+)", re.I)


def _tag(group: str, element: str, group_mask: str | None = None, element_mask: str | None = None) -> str:
    """'(gggg,eeee)' upper case; masked-out digits as 'x' (repeating groups such as (60xx,4000))."""
    def digits(value, mask):
        return "".join(v if mask is None or m != "0" else "x" for v, m in zip(value.upper(), (mask or "FFFF").upper()))
    return f"({digits(group, group_mask)},{digits(element, element_mask)})"


def _dictionary(tag: str) -> tuple[str | None, str | None]:
    from pydicom.datadict import dictionary_VR, keyword_for_tag
    if "x" in tag:
        return None, None
    number = int(tag[1:5] + tag[6:10], 16)
    keyword = keyword_for_tag(number) or None
    return keyword, dictionary_VR(number) if keyword else None


def basic_rows() -> list[dict]:
    """Rows (tag, keyword, name, VR, Basic Profile action) of dicom-anonymizer's EDITION transcription."""
    module = importlib.import_module(BASIC_MODULE)
    names = {_tag(*m.groups()[:4]): m.group(5).strip()
             for m in _ENTRY.finditer(Path(module.__file__).read_text(encoding="utf-8"))}
    rows = {}
    for attr, action in ACTION_LISTS.items():
        for entry in getattr(module, attr):
            hexes = [f"{v:04X}" for v in entry]
            tag = _tag(*hexes)
            if tag in rows:
                raise SystemExit(f"{tag} is listed twice in {BASIC_MODULE}")
            keyword, vr = _dictionary(tag)
            rows[tag] = {"tag": tag, "keyword": keyword, "name": names[tag], "vr": vr, "basic": action}
    return sorted(rows.values(), key=lambda r: r["tag"])


def _idiscore_source() -> Path:
    spec = importlib.util.find_spec("idiscore")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("idiscore")
    return Path(next(iter(spec.submodule_search_locations))) / "_public_dicom.py"


def option_columns() -> tuple[dict, dict]:
    """({option key: {name, code}}, {tag: {option key: action}}) from idiscore's transcription, basic profile aside."""
    options, columns = {}, {}
    for node in ast.parse(_idiscore_source().read_text(encoding="utf-8")).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        key = node.targets[0].id
        fields = {k.arg: k.value for k in node.value.keywords}
        if key == "basic_profile":
            continue
        options[key] = {"name": ast.literal_eval(fields["name"]), "code": ast.literal_eval(fields["code"])}
        for rule in fields["rules"].elts:
            identifier, code = rule.elts
            kind = identifier.func.id
            if kind == "PrivateTags":
                tag = PRIVATE
            else:
                raw = ast.literal_eval(identifier.args[0]).upper()
                tag = f"({raw[:4]},{raw[4:]})".replace("X", "x")
            columns.setdefault(tag, {})[key] = IDISCORE_CODES[code.attr]
    return options, columns


def build() -> dict:
    """The table file's content."""
    rows = basic_rows() + [{"tag": PRIVATE, "keyword": None, "name": "Private Attributes", "vr": None, "basic": "X"}]
    options, columns = option_columns()
    for row in rows:
        row["options"] = dict(sorted(columns.get(row["tag"], {}).items()))
    return {
        "title": "DICOM PS3.15 Annex E Table E.1-1 Application Level Confidentiality Profile Attributes",
        "edition": EDITION,
        "sources": {
            "basic": f"dicom-anonymizer {version('dicom-anonymizer')} ({BASIC_MODULE}); "
                     "private attributes: the table's last row",
            "options": f"idiscore {version('idiscore')} (idiscore/_public_dicom.py, scraped 2025-06-24 from the "
                       "then current edition); option entries for tags absent from the basic source are dropped",
            "keywords": "pydicom data dictionary",
        },
        "generator": "Scripts/make_basic_profile.py",
        "options": options,
        "attributes": rows,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    table = build()
    rows = ",\n".join("  " + json.dumps(row) for row in table.pop("attributes"))  # one attribute a line
    args.out.write_text(json.dumps(table, indent=1)[:-2] + f',\n "attributes": [\n{rows}\n ]\n}}\n', encoding="utf-8")
    print(f"{rows.count(chr(10)) + 1} attributes, edition {EDITION} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
