"""``main.py pacs query|verify`` and ``main.py explain --pacs ... --send``, against the private Orthanc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pacs.dimse import DimseClient
from tests.dicom_factory import write_radiograph
from tests.model_factory import RegionDetector, card_for, export_model
from tests.pacs.conftest import PATIENT_ID, PATIENT_NAME, dimse_node
from tests.pacs.orthanc import free_port

ROOT = Path(__file__).resolve().parents[2]
OCCLUSION = ("--method", "occlusion", "--window", "8", "--stride", "8", "--no-trust")


def main(*args: str, settings: Path) -> subprocess.CompletedProcess[str]:
    environment = {"LIGHTBOX_PACS_SETTINGS": str(settings), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=120)


def test_query_json_lists_the_studies(orthanc, studies, tmp_path):
    result = main("pacs", "query", orthanc.dimse, "--patient-id", PATIENT_ID, "--date", "20240101-", "--json",
                  settings=tmp_path / "pacs.json")
    assert result.returncode == 0, result.stderr
    [study] = json.loads(result.stdout)["studies"]
    assert {key: study[key] for key in ("study_instance_uid", "patient_id", "patient_name", "study_date",
                                         "modalities", "description", "instances")} == {
        "study_instance_uid": studies["ct"], "patient_id": PATIENT_ID, "patient_name": PATIENT_NAME,
        "study_date": "20240115", "modalities": ["CT"], "description": "Chest CT with contrast", "instances": 12}
    web = main("pacs", "query", orthanc.dicomweb, "--patient-id", PATIENT_ID, "--json", settings=tmp_path / "pacs.json")
    assert json.loads(web.stdout) == json.loads(result.stdout)


def test_verify_and_its_failures_are_one_line(orthanc, tmp_path):
    settings = tmp_path / "pacs.json"
    settings.write_text(json.dumps({"nodes": [{"name": "archive", "ae_title": "ORTHANC", "host": "127.0.0.1",
                                               "port": orthanc.dicom_port}]}))
    ok = main("pacs", "verify", "archive", settings=settings)
    assert ok.returncode == 0 and "C-ECHO ok" in ok.stdout
    for node in (f"ORTHANC@127.0.0.1:{free_port()}", "nonsense", f"WRONG@127.0.0.1:{orthanc.dicom_port}"):
        failed = main("pacs", "verify", node, "--timeout", "3", settings=settings)
        assert failed.returncode == 2 and failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, node


def test_explain_from_the_pacs_and_send_the_results_back_into_the_study(orthanc, tmp_path):
    study_uid = "1.2.826.0.1.3680043.8.498.3003"
    source = write_radiograph(tmp_path / "chest.dcm", rows=64, cols=64, study_uid=study_uid,
                              extra={"PatientID": "PACS-SEND", "PatientName": "Sendback^Carol",
                                     "StudyDate": "20190301"})
    assert DimseClient(dimse_node(orthanc)).send([source])[0].ok
    model = export_model(RegionDetector((8, 24, 30, 50)), card_for(48, 64), tmp_path / "model")
    out = tmp_path / "maps"
    args = ("explain", "--pacs", orthanc.dimse, "--study", study_uid, "--model", str(model), *OCCLUSION,
            "--out", str(out), "--send", orthanc.dimse, "--cache", str(tmp_path / "cache"))
    result = main(*args, settings=tmp_path / "pacs.json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("sent: ") == 2
    held = orthanc.find_instances(StudyInstanceUID=study_uid)
    assert len(held) == 3  # the radiograph, its Parametric Map and its Secondary Capture
    tags = [orthanc.get(f"/instances/{instance['ID']}/simplified-tags") for instance in held]
    assert {tag["PatientID"] for tag in tags} == {"PACS-SEND"}  # identified, in the patient's own study
    assert {tag["SOPClassUID"] for tag in tags} >= {"1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.7"}
    again = main(*args, settings=tmp_path / "pacs.json")  # resumable: nothing explained twice
    assert again.returncode == 0 and "1 already done" in again.stderr

