"""DIMSE over TLS and DICOMweb over HTTPS against a TLS-configured private Orthanc, certificates verified.

The CA and the server certificate are made for the test (``openssl``). With our CA trusted, a
C-ECHO, a C-STORE and a C-GET over TLS work, and so do QIDO-RS and WADO-RS over HTTPS. With the
system's store (the default) or another CA, the certificate is refused in one line that says so.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from pacs.cache import Cache
from pacs.dimse import DimseClient
from pacs.errors import PacsError
from pacs.nodes import Node
from pacs.web import WebClient
from tests.dicom_factory import write_ct_series
from tests.pacs.conftest import dimse_node, require_orthanc
from tests.pacs.orthanc import Certificates, Orthanc, make_certificates, start_orthanc

STUDY = "1.2.826.0.1.3680043.8.498.3003"
SLICES = 4

# pynetdicom shuts the socket of a failed connection down but never closes it (transport.py); the
# collector then warns. The leak is theirs (see test_failures.py).
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command, which makes the test certificates, is not installed")
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls_orthanc(certificates: Certificates, tmp_path_factory) -> Orthanc:
    require_orthanc()
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), certificates)
    yield server
    server.stop()


def tls_node(orthanc: Orthanc, **options) -> Node:
    """Our DIMSE node for the TLS Orthanc, its CA trusted unless ``options`` say otherwise."""
    return dimse_node(orthanc, **{"tls": True, "ca_file": orthanc.ca_file, **options})


def https_node(orthanc: Orthanc, **options) -> Node:
    return Node(name="https", url=orthanc.dicomweb_https, **{"ca_file": orthanc.ca_file, "timeout": 10.0, **options})


@pytest.fixture(scope="module")
def ct_slices(tls_orthanc: Orthanc, tmp_path_factory) -> list[Path]:
    """A small CT series, stored into the TLS Orthanc by C-STORE over TLS."""
    paths = write_ct_series(tmp_path_factory.mktemp("tls-ct"), SLICES, rows=32, cols=32, study_uid=STUDY,
                            extra={"PatientID": "PACS-TLS"})
    results = DimseClient(tls_node(tls_orthanc)).send(paths)
    assert all(result.ok for result in results), [result.message for result in results]
    return paths


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> str:
    """A CA that did not sign the server's certificate."""
    return str(make_certificates(tmp_path_factory.mktemp("other-ca")).ca)


def assert_same_pixels(retrieved: list[Path], originals: list[Path]) -> None:
    """Every original arrived, with its pixels."""
    by_uid = {str(dcmread(path).SOPInstanceUID): path for path in retrieved}
    assert len(by_uid) == len(originals)
    for path in originals:
        original = dcmread(path)
        assert (dcmread(by_uid[str(original.SOPInstanceUID)]).pixel_array == original.pixel_array).all()


def test_c_echo_over_tls_with_our_ca_trusted(tls_orthanc):
    line = DimseClient(tls_node(tls_orthanc)).verify()
    assert line.startswith(f"{tls_orthanc.dimse}: C-ECHO ok in ") and "\n" not in line


def test_c_get_over_tls_retrieves_every_slice_with_its_pixels(tls_orthanc, ct_slices, tmp_path):
    cache = Cache(tmp_path / "cache", 1 << 30)
    result = DimseClient(tls_node(tls_orthanc)).retrieve(cache, STUDY)
    assert (result.kept, result.failed, result.method) == (SLICES, 0, "C-GET")
    assert_same_pixels(cache.instances(STUDY), ct_slices)


# Untrusted: the system's store (the default, when a node names no CA), or a CA that did not sign it.
@pytest.mark.parametrize("ca", ["system store", "another CA"])
def test_an_untrusted_dimse_certificate_is_one_clear_line(tls_orthanc, other_ca, ca):
    node = tls_node(tls_orthanc, ca_file=other_ca if ca == "another CA" else "")
    with pytest.raises(PacsError) as error:
        DimseClient(node).verify()
    text = str(error.value)
    assert text.startswith(f"cannot verify the TLS certificate of {tls_orthanc.dimse}: ") and "\n" not in text
    gc.collect()  # pynetdicom's unclosed TLS socket (see pytestmark), here rather than in a later test


def test_plain_dimse_to_a_tls_port_says_it_may_want_tls(tls_orthanc):
    with pytest.raises(PacsError) as error:
        DimseClient(tls_node(tls_orthanc, tls=False, timeout=3)).verify()
    assert "it wants TLS" in str(error.value)


def test_dicomweb_over_https_with_our_ca_trusted(tls_orthanc, ct_slices, tmp_path):
    client = WebClient(https_node(tls_orthanc))
    assert client.verify().startswith(f"{tls_orthanc.dicomweb_https}: QIDO-RS ok in ")
    cache = Cache(tmp_path / "cache", 1 << 30)
    result = client.retrieve(cache, STUDY)
    assert (result.kept, result.method) == (SLICES, "WADO-RS")
    assert_same_pixels(cache.instances(STUDY), ct_slices)


@pytest.mark.parametrize("ca", ["system store", "another CA"])
def test_an_untrusted_https_certificate_is_one_clear_line(tls_orthanc, other_ca, ca):
    node = https_node(tls_orthanc, ca_file=other_ca if ca == "another CA" else "")
    with pytest.raises(PacsError) as error:
        WebClient(node).verify()
    text = str(error.value)
    assert text.startswith(f"cannot verify the TLS certificate of {tls_orthanc.dicomweb_https}: ")
    assert "\n" not in text and "limit=" not in text  # the request's URL, which may carry a query, stays out


def test_the_node_ca_wins_over_requests_ca_bundle(tls_orthanc, monkeypatch):
    """requests lets $REQUESTS_CA_BUNDLE, set on many managed machines, override a session's CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    assert WebClient(https_node(tls_orthanc)).verify()
