"""PACS client failure paths that need no Orthanc (issue 15 review): a WADO-RS answer cut off mid-stream, a batch
pull that goes on past a failed study, a STOW answer that does not confirm the instance, DIMSE credentials sent
as User Identity, SERIES-level C-FIND keys, and a C-MOVE storage SCP that refuses another study's instances.
The DIMSE peers are in-process pynetdicom SCPs on free loopback ports."""
import json

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk

import orthanc_server
from slicercad.dicom.write import write_series
from slicercad.dicomio import pacs
from slicercad.dicomio.pacs import PacsError, parse_endpoint, pull


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Two one-series SYNTHETIC studies: {study UID: [datasets]}."""
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("studies")
    out = {}
    for n in (1, 2):
        image = sitk.GetImageFromArray(np.full((2, 4, 4), n, np.float32))
        files = write_series(image, folder / f"s{n}", modality="MR", study_uid=generate_uid(),
                             patient={"PatientID": f"SYN-{n}"})
        sets = [pydicom.dcmread(f) for f in files]
        out[str(sets[0].StudyInstanceUID)] = sets
    return out


def _web_client(studies, broken: str):
    """A real DicomWebPacs whose WADO-RS stream breaks (ChunkedEncodingError) after one instance of ``broken``."""
    from slicercad.dicomio.pacs_web import DicomWebPacs

    client = DicomWebPacs(parse_endpoint("http://127.0.0.1:9/dicom-web"))
    calls = []

    def iter_study(uid):
        calls.append(uid)
        for n, ds in enumerate(studies[uid]):
            if uid == broken and n == 1 and calls.count(uid) == 1:
                raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
            yield ds

    client.client.iter_study = iter_study
    client.check = lambda: None
    client.study_exists = lambda uid: uid in studies
    return client


def test_a_stream_cut_mid_study_fails_that_study_and_the_batch_goes_on(studies, tmp_path, monkeypatch):
    first, second = sorted(studies)
    client = _web_client(studies, broken=first)
    monkeypatch.setattr(pacs, "connect", lambda endpoint: client)
    log = tmp_path / "pull.jsonl"
    with pytest.raises(PacsError, match=rf"1 of 2 studies failed \({first}\).*broke off mid-answer"):
        pull(client.endpoint, tmp_path / "out", study_uids=[first, second], log=log, progress=None)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [second]          # no .partial-*, no half study
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["key"], r["status"]) for r in records] == [(first, "failed"), (second, "done")]
    folders = pull(client.endpoint, tmp_path / "out", study_uids=[first, second], log=log, progress=None)
    assert [f.name for f in folders] == [first, second]                             # the rerun fetched the rest
    assert len(list((tmp_path / "out" / first).rglob("*.dcm"))) == len(studies[first])


def test_stow_done_only_when_the_pacs_lists_the_instance(studies):
    from pydicom.dataset import Dataset

    from slicercad.dicomio.pacs_web import DicomWebPacs

    client = DicomWebPacs(parse_endpoint("http://127.0.0.1:9/dicom-web"))
    ds = next(iter(studies.values()))[0]
    answer = Dataset()
    answer.ReferencedSOPSequence = []
    client.client.store_instances = lambda datasets: answer
    with pytest.raises(PacsError, match="did not confirm instance"):
        client.store(ds)
    item = Dataset()
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    answer.ReferencedSOPSequence = [item]
    client.store(ds)                                                                # confirmed: no error
    with pytest.warns(UserWarning, match="plain http"):
        DicomWebPacs(parse_endpoint("http://pacs.example:8080/dicom-web", username="u", password="p"))


def _scp(handlers, contexts):
    from pynetdicom import AE

    ae = AE(ae_title="FAKEPACS")
    for c in contexts:
        ae.add_supported_context(c)
    port = orthanc_server.free_port()
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers), port


def test_dimse_sends_user_identity_and_series_queries_carry_series_keys_only(studies):
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

    seen = {}

    def on_user(event):
        seen["user"] = (event.primary_field, event.secondary_field, event.user_id_type)
        return True, None

    def on_find(event):
        seen["keys"] = sorted(e.keyword for e in event.identifier)
        yield 0x0000, None

    server, port = _scp([(evt.EVT_USER_ID, on_user), (evt.EVT_C_FIND, on_find)],
                        [Verification, StudyRootQueryRetrieveInformationModelFind])
    try:
        client = pacs.connect(parse_endpoint(f"dimse://FAKEPACS@127.0.0.1:{port}", username="reader",
                                             password="secret", timeout=10))
        client.check()
        assert seen["user"] == (b"reader", b"secret", 2)
        assert client.series_exists("1.2.3", "1.2.3.4") is False
        assert seen["keys"] == ["Modality", "QueryRetrieveLevel", "SeriesInstanceUID", "StudyInstanceUID"]
    finally:
        server.shutdown()
    with pytest.raises(PacsError, match="bearer token is for DICOMweb"):
        parse_endpoint(f"dimse://FAKEPACS@127.0.0.1:{port}", token="t")
    assert parse_endpoint(f"dimse://X@127.0.0.1:{port}", retrieve="move", move_port=port).listen_host == "127.0.0.1"


def test_c_move_storage_scp_refuses_another_studys_instances(studies, tmp_path):
    from pynetdicom import evt
    from pynetdicom.sop_class import MRImageStorage, StudyRootQueryRetrieveInformationModelMove

    wanted, other = sorted(studies)
    move_port = orthanc_server.free_port()

    def on_move(event):
        yield "127.0.0.1", move_port
        sent = studies[wanted][:1] + studies[other][:1]              # one of ours, one a stranger's
        yield len(sent)
        for ds in sent:
            yield 0xFF00, ds

    server, port = _scp([(evt.EVT_C_MOVE, on_move)], [StudyRootQueryRetrieveInformationModelMove])
    server.ae.add_requested_context(MRImageStorage)
    try:
        endpoint = parse_endpoint(f"dimse://FAKEPACS@127.0.0.1:{port}", retrieve="move", move_port=move_port,
                                  timeout=10)
        with pytest.raises(PacsError, match="1 instance"):
            pacs.connect(endpoint).retrieve_study(wanted, tmp_path / "in")
    finally:
        server.shutdown()
    assert [p.stem for p in (tmp_path / "in").rglob("*.dcm")] == [str(studies[wanted][0].SOPInstanceUID)]
