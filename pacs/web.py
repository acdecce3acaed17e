"""DICOMweb through dicomweb-client: QIDO-RS to search, WADO-RS to retrieve, STOW-RS to send.

HTTPS certificates are verified (against ``ca_file`` when the node names one). The password of a
node with a user name comes from the keyring. Every request has the node's time-out, and every
failure becomes one :class:`PacsError` line that names the URL, never the query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from pacs.cache import Cache
from pacs.errors import PacsError, tls_failure
from pacs.nodes import Node
from pacs.records import (
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    Retrieved,
    Sent,
    Series,
    Study,
    StudyQuery,
    records,
    series_of,
    study_of,
)

# Both log each request's URL at their debug level, and a QIDO-RS URL carries the patient's name
# or ID: they are held at INFO, so that no patient data reaches a log through us.
for _name in ("dicomweb_client", "urllib3.connectionpool"):
    logging.getLogger(_name).setLevel(logging.INFO)


class CaSession(requests.Session):
    """A session that verifies HTTPS against ``ca_file`` when given, else against the system's store.

    requests lets ``$REQUESTS_CA_BUNDLE`` (set on many managed machines) override a session's own
    ``verify``, which would silently drop the node's CA; here the node's CA wins.
    """

    def __init__(self, ca_file: str = "") -> None:
        super().__init__()
        self.ca_file = ca_file
        self.verify = ca_file or True

    def merge_environment_settings(self, url, proxies, stream, verify, cert) -> dict:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_file and verify in (None, True):
            settings["verify"] = self.ca_file
        return settings


class WebClient:
    """One DICOMweb node (its base URL, e.g. ``http://host:8042/dicom-web``)."""

    def __init__(self, node: Node, secret: str | None = None) -> None:
        self.node = node
        if node.ca_file and not Path(node.ca_file).is_file():
            raise PacsError(f"cannot read the CA certificates {node.ca_file}: no such file")
        session = CaSession(node.ca_file)
        if node.username:
            session.auth = (node.username, secret or "")
        self.client = DICOMwebClient(node.url, session=session, timeout=node.timeout)
        # Its default retries a refused request five times over half a minute; a PACS that is down
        # should say so at once, and the user decides when to try again.
        self.client.set_http_retry_params(retry=False)

    @contextmanager
    def _speaking(self, what: str) -> Iterator[None]:
        """Turn whatever the request raised into one PacsError line."""
        url = self.node.url
        try:
            yield
        except requests.exceptions.SSLError as error:
            raise PacsError(tls_failure(url, error)) from None
        except requests.exceptions.ConnectionError:
            raise PacsError(f"cannot connect to {url}: nothing answers there (is the PACS running?)") from None
        except requests.exceptions.Timeout:
            raise PacsError(f"{url} did not answer the {what} within {self.node.timeout:g} s") from None
        except requests.exceptions.HTTPError as error:
            code = error.response.status_code if error.response is not None else 0
            hint = {401: " (check the user name and password)", 403: " (not allowed)",
                    404: " (is this a DICOMweb base URL?)"}.get(code, "")
            raise PacsError(f"{url} refused the {what}: HTTP {code}{hint}") from None
        except requests.exceptions.RequestException as error:
            raise PacsError(f"{url}: the {what} failed: {type(error).__name__}") from None
        except ValueError as error:
            raise PacsError(f"{url} answered the {what} with something unreadable: {type(error).__name__}") from None

    def verify(self) -> str:
        """A QIDO-RS search for one study; a one-line success, PacsError otherwise."""
        start = time.perf_counter()
        with self._speaking("QIDO-RS ping"):
            self.client.search_for_studies(limit=1)
        return f"{self.node.url}: QIDO-RS ok in {1000 * (time.perf_counter() - start):.0f} ms"

    def find_studies(self, query: StudyQuery) -> list[Study]:
        with self._speaking("study search"):
            answers = self.client.search_for_studies(search_filters=query.filters(), fields=list(STUDY_RETURN_KEYS))
        return records([Dataset.from_json(answer) for answer in answers], study_of)

    def find_series(self, study_uid: str) -> list[Series]:
        with self._speaking("series search"):
            answers = self.client.search_for_series(study_uid, fields=list(SERIES_RETURN_KEYS))
        return records([Dataset.from_json(answer) for answer in answers], series_of)

    def retrieve(self, cache: Cache, study_uid: str, series_uid: str = "",
                 on_instance: Callable[[Path], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> Retrieved:
        """WADO-RS of a study or one series, each instance kept as it arrives."""
        kept = 0
        with self._speaking("WADO-RS retrieve"):
            if series_uid:
                instances = self.client.iter_series(study_uid, series_uid)
            else:
                instances = self.client.iter_study(study_uid)
            for dataset in instances:
                if cancelled():
                    return Retrieved(kept, 0, "WADO-RS", cancelled=True)
                buffer = BytesIO()
                dcmwrite(buffer, dataset, enforce_file_format=True)
                path = cache.store(str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                   str(dataset.SOPInstanceUID), buffer.getvalue())
                kept += 1
                if on_instance is not None:
                    on_instance(path)
        cache.prune(keep={study_uid})
        return Retrieved(kept, 0, "WADO-RS")

    def send(self, paths: list[Path]) -> list[Sent]:
        """STOW-RS of each file on its own, so that each gets its own result."""
        results = []
        for path in paths:
            try:
                dataset = dcmread(path)
            except Exception as error:
                results.append(Sent(str(path), False, f"cannot read it: {type(error).__name__}"))
                continue
            try:
                with self._speaking("STOW-RS"):
                    answer = self.client.store_instances([dataset], str(dataset.StudyInstanceUID))
            except PacsError as error:
                results.append(Sent(str(path), False, str(error)))
                continue
            if answer is not None and answer.get("FailedSOPSequence"):
                results.append(Sent(str(path), False, f"{self.node.url} refused it"))
            else:
                results.append(Sent(str(path), True, f"stored on {self.node.url}"))
        return results
