"""``slicercad anomaly train``: a study on which ITK / SimpleITK fails (RuntimeError) is skipped with its reason
(progress line and the card's ``training_data.skipped``), as ``score`` names it in its CSV; training goes on."""
import json

import pytest

from slicercad.anomaly import cli
from slicercad.anomaly import task as T
from slicercad.errors import InputError
from slicercad.imageio import write_image
from slicercad.synth.anomaly_cxr import normal_cxr


@pytest.fixture
def normals(tmp_path, monkeypatch):
    """Four SYNTHETIC normal radiographs and ``bad.nrrd``, whose reading fails inside ITK."""
    folder = tmp_path / "normals"
    folder.mkdir()
    for seed in range(4):
        write_image(normal_cxr(seed).image, folder / f"n{seed}.nrrd")
    (folder / "bad.nrrd").write_bytes(b"")
    read = cli.read_case

    def read_case(path):
        if path.name == "bad.nrrd":
            raise RuntimeError("Exception thrown in SimpleITK ImageFileReader_Execute: itk::ERROR: bad header\n"
                               "more detail")
        return read(path)

    monkeypatch.setattr(cli, "read_case", read_case)
    return folder


def test_train_skips_a_study_itk_fails_on(normals, tmp_path, capsys, monkeypatch):
    calls = {}

    def fit(model, x_train, x_val, *args, **kw):        # training itself is tested elsewhere: count the studies
        calls["n"] = len(x_train) + len(x_val)
        return {"map_threshold": 1.0}

    monkeypatch.setattr(T, "fit_detector", fit)
    card_path = cli.train_folder(normals, tmp_path / "model", kind="cxr", val_fraction=0.5, epochs=1)
    assert calls["n"] == 4
    assert "skipped bad.nrrd: image processing failed: Exception thrown in SimpleITK" in capsys.readouterr().err
    data = json.loads(card_path.read_text())["training_data"]
    assert data["skipped"] == [{"study": "bad.nrrd", "reason": "image processing failed: Exception thrown in "
                                "SimpleITK ImageFileReader_Execute: itk::ERROR: bad header"}]
    assert "bad.nrrd" not in data["studies"] and len(data["studies"]) == 4


def test_too_few_usable_studies_after_skipping(normals, tmp_path):
    for f in list(normals.glob("n[1-3].nrrd")):
        f.unlink()
    with pytest.raises(InputError, match="1 usable normal studies"):
        cli.train_folder(normals, tmp_path / "model", kind="cxr")


def test_score_names_the_itk_failure_and_goes_on(normals, tmp_path, monkeypatch):
    for f in list(normals.glob("n[1-3].nrrd")):
        f.unlink()
    rows = cli.score_folder(normals, tmp_path / "out", kind="cxr")
    by_case = {r["case"]: r for r in rows}
    assert by_case["bad"]["error"].startswith("image processing failed: Exception thrown in SimpleITK")
    assert "score" in by_case["n0"]


def test_a_bug_is_not_taken_for_a_bad_study():
    """RuntimeError's subclasses (NotImplementedError, RecursionError) come from the code, not the study: raised."""
    assert cli.refusal(RuntimeError("itk::ERROR: x\nmore")) == "image processing failed: itk::ERROR: x"
    with pytest.raises(NotImplementedError):
        cli.refusal(NotImplementedError("not written yet"))
