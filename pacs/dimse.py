"""DIMSE (classic DICOM networking) through pynetdicom: C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE.

A retrieve asks for C-GET first, which needs no inbound port. Where the PACS refuses it (the
presentation context is not accepted, the C-GET is answered with a refusal status, or the
association is aborted before any instance came, as Orthanc and DCMTK do), it falls back to
C-MOVE with our own AE title as the destination, received by a Storage SCP of ours that
listens on ``move_port`` for as long as the retrieve lasts. Every instance goes through
:class:`pacs.cache.Cache` as it arrives and is then handed to ``on_instance``.

pynetdicom logs identifiers at its debug level, so its logger is held at warnings: no patient
data reaches a log through us.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ParametricMapStorage
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

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

logging.getLogger("pynetdicom").setLevel(logging.WARNING)

#: What we can receive: the common storage classes and our own Parametric Maps, within the 128 contexts allowed.
RECEIVED_CLASSES = [context.abstract_syntax for context in StoragePresentationContexts] + [ParametricMapStorage]
PENDING = (0xFF00, 0xFF01)
#: C-GET answers that mean "not here": the SOP class is not supported, or we are not allowed.
GET_REFUSED = (0x0122, 0x0124, 0xA701, 0xA702, 0xC000)
Handler = Callable[[Path], None]


class DimseClient:
    """One DIMSE node; every call opens its own association and closes it."""

    def __init__(self, node: Node, move_port: int = 11113) -> None:
        self.node = node
        self.move_port = move_port

    def _ae(self) -> AE:
        ae = AE(ae_title=self.node.calling_ae)
        timeout = self.node.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
        return ae

    @contextmanager
    def _association(self, ae: AE, **options) -> Iterator[Association]:
        """An established association; PacsError saying why in one line when there is none."""
        opened = threading.Event()

        def on_open(event: evt.Event) -> None:
            # pynetdicom reads a PDU's body with no time-out once connected, so a peer that stalls
            # halfway through one would hang the association for good; a socket time-out ends it.
            connection = event.assoc.dul.socket.socket
            connection.settimeout(self.node.timeout)
            # A C-STORE is written as a command, then a data set: with Nagle's algorithm on, the second
            # write waits for the peer's delayed acknowledgement: 40 ms more per instance sent.
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            opened.set()

        handlers = [(evt.EVT_CONN_OPEN, on_open), *options.pop("evt_handlers", [])]
        context = self._tls_context()
        where = self.node.address()
        assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.ae_title, evt_handlers=handlers,
                             tls_args=(context, self.node.host) if context else None, **options)
        if not assoc.is_established:
            if not opened.is_set():
                if context and (problem := self._tls_problem(context)):
                    raise PacsError(problem)
                raise PacsError(f"cannot connect to {where}: nothing answers there (is the PACS running, "
                                "the host and port right?)")
            if assoc.is_rejected:
                raise PacsError(f"{where} rejected the association: check its AE title ({self.node.ae_title}) "
                                f"and that it knows ours ({self.node.calling_ae})")
            if assoc.is_aborted:
                raise PacsError(f"{where} aborted the association (it accepts none of what we asked, or "
                                f"{'TLS failed' if self.node.tls else 'it wants TLS'})")
            raise PacsError(f"{where} did not answer the association request within {self.node.timeout:g} s")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of a TLS node: the peer's certificate and host name verified, against ``ca_file`` if set."""
        if not self.node.tls:
            return None
        try:
            return ssl.create_default_context(cafile=self.node.ca_file or None)
        except OSError as error:  # ssl.SSLError included: not a certificate file
            raise PacsError(f"cannot read the CA certificates {self.node.ca_file}: {error.strerror or error}") from None

    def _tls_problem(self, context: ssl.SSLContext) -> str | None:
        """Why a TLS handshake with the node fails; None when it succeeds or nothing answers at all.

        pynetdicom reports a refused handshake as it does a closed port, so a handshake of our own tells
        an untrusted certificate from a PACS that is down.
        """
        try:
            address = (self.node.host, self.node.port)
            with (socket.create_connection(address, timeout=self.node.timeout) as raw,
                  context.wrap_socket(raw, server_hostname=self.node.host)):
                return None
        except ssl.SSLError as error:
            return tls_failure(self.node.address(), error)
        except OSError:
            return None

    def verify(self) -> str:
        """C-ECHO; a one-line success, PacsError otherwise."""
        ae = self._ae()
        ae.add_requested_context(Verification)
        start = time.perf_counter()
        with self._association(ae) as assoc:
            status = assoc.send_c_echo()
        self._check(status, "C-ECHO")
        return f"{self.node.address()}: C-ECHO ok in {1000 * (time.perf_counter() - start):.0f} ms"

    def find_studies(self, query: StudyQuery) -> list[Study]:
        """C-FIND at study level, Study Root."""
        return records(self._find("STUDY", query.filters(), STUDY_RETURN_KEYS), study_of)

    def find_series(self, study_uid: str) -> list[Series]:
        """C-FIND at series level: the series of one study, with their counts."""
        return records(self._find("SERIES", {"StudyInstanceUID": study_uid}, SERIES_RETURN_KEYS), series_of)

    def _find(self, level: str, filters: dict[str, str], keys: tuple[str, ...]) -> list[Dataset]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = level
        for keyword in keys:
            setattr(identifier, keyword, "")
        for keyword, value in filters.items():
            setattr(identifier, keyword, value)
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        answers = []
        with self._association(ae) as assoc:
            for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                code = self._check(status, "C-FIND")
                if code in PENDING and answer is not None:
                    answers.append(answer)
        return answers

    def retrieve(self, cache: Cache, study_uid: str, series_uid: str = "", on_instance: Handler | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> Retrieved:
        """Retrieve a study (or one series of it) into the cache: C-GET, or C-MOVE where C-GET is refused."""
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
        identifier.StudyInstanceUID = study_uid
        if series_uid:
            identifier.SeriesInstanceUID = series_uid
        receiver = Receiver(cache, on_instance, cancelled)
        result = self._get(identifier, receiver)
        if result is None:
            result = self._move(identifier, receiver)
        cache.prune(keep={study_uid})
        return result

    def _get(self, identifier: Dataset, receiver: Receiver) -> Retrieved | None:
        """C-GET; None when the PACS refuses C-GET itself."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for uid in RECEIVED_CLASSES:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in RECEIVED_CLASSES]
        with self._association(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, receiver.handle)]) as assoc:
            if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
                       for cx in assoc.accepted_contexts):
                return None
            responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            return receiver.follow(assoc, responses, "C-GET", refused=GET_REFUSED)

    def _move(self, identifier: Dataset, receiver: Receiver) -> Retrieved:
        """C-MOVE to our own Storage SCP, listening on ``move_port`` while it lasts."""
        ae = self._ae()
        for uid in RECEIVED_CLASSES:
            ae.add_supported_context(uid)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        try:
            server = ae.start_server(("", self.move_port), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, receiver.handle)])
        except OSError as error:
            raise PacsError(f"cannot receive C-MOVE on port {self.move_port}: {error.strerror or error}") from None
        try:
            with self._association(ae) as assoc:
                responses = assoc.send_c_move(identifier, self.node.calling_ae,
                                              StudyRootQueryRetrieveInformationModelMove)
                result = receiver.follow(assoc, responses, "C-MOVE")
        finally:
            server.shutdown()
        return result

    def send(self, paths: list[Path]) -> list[Sent]:
        """C-STORE each file in one association; one result per file."""
        datasets: list[tuple[Path, Dataset | None, str]] = []
        for path in paths:
            try:
                datasets.append((path, dcmread(path), ""))
            except Exception as error:
                datasets.append((path, None, f"cannot read it: {type(error).__name__}"))
        ae = self._ae()
        for pair in {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for _path, ds, _error in datasets if ds}:
            ae.add_requested_context(*pair)
        results = [Sent(str(path), False, error) for path, ds, error in datasets if ds is None]
        readable = [(path, ds) for path, ds, _error in datasets if ds is not None]
        if not readable:
            return results
        with self._association(ae) as assoc:
            for path, dataset in readable:
                status = assoc.send_c_store(dataset)
                code = status.get("Status") if status else None
                if code is None:
                    results.append(Sent(str(path), False, f"{self.node.address()} did not answer the C-STORE"))
                elif code == 0 or 0xB000 <= code <= 0xBFFF:
                    results.append(Sent(str(path), True, f"stored on {self.node.address()}"))
                else:
                    results.append(Sent(str(path), False, f"{self.node.address()} refused it: status 0x{code:04X}"))
        return results

    def _check(self, status: Dataset, what: str) -> int:
        """The status code of an answer; PacsError when there is none (time-out, abort) or it is a failure."""
        code = status.get("Status") if status else None
        if code is None:
            raise PacsError(f"{self.node.address()} stopped answering the {what} (no answer within "
                            f"{self.node.timeout:g} s, or the association was aborted)")
        if code not in PENDING and code != 0 and not 0xB000 <= code <= 0xBFFF:
            raise PacsError(f"{self.node.address()} failed the {what}: status 0x{code:04X}")
        return code


class Receiver:
    """Takes the instances a C-GET or C-MOVE brings, into the cache, and follows its answers."""

    def __init__(self, cache: Cache, on_instance: Handler | None, cancelled: Callable[[], bool]) -> None:
        self.cache = cache
        self.on_instance = on_instance
        self.cancelled = cancelled
        self.kept = 0
        self.error = ""

    def handle(self, event: evt.Event) -> int:
        """EVT_C_STORE: keep one instance; a failure status when it cannot be kept or we are cancelled."""
        if self.cancelled():
            return 0xA700
        try:
            dataset = event.dataset
            path = self.cache.store(str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                    str(event.request.AffectedSOPInstanceUID), event.encoded_dataset())
        except PacsError as error:
            self.error = str(error)
            return 0xA700
        except Exception as error:  # an instance we cannot read must not end the retrieve
            self.error = f"an instance could not be read: {type(error).__name__}"
            return 0xC210
        self.kept += 1
        if self.on_instance is not None:
            self.on_instance(path)
        return 0x0000

    def follow(self, assoc: Association, responses, what: str, refused: tuple[int, ...] = ()) -> Retrieved | None:
        """Follow a retrieve's answers to the end; None when ``refused`` and the PACS refused it before any instance.

        A PACS refuses with a status in ``refused`` or by aborting the association at once.
        """
        failed = 0
        where = assoc.acceptor.address if assoc.acceptor else "the PACS"
        for status, _identifier in responses:
            if self.cancelled():
                assoc.abort()
                return Retrieved(self.kept, failed, what, cancelled=True)
            code = status.get("Status") if status else None
            if refused and self.kept == 0 and (code is None or code in refused):
                return None  # refused outright: an abort (Orthanc, DCMTK) or a refusal status before anything came
            if code is None:
                raise PacsError(f"the PACS at {where} stopped answering the {what} after {self.kept} instances "
                                "(time-out or abort); what arrived is kept, retrieve again to complete it")
            failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
            if code == 0xFE00:
                return Retrieved(self.kept, failed, what, cancelled=True)
            if code not in PENDING and code != 0 and not 0xB000 <= code <= 0xBFFF:
                reason = f" ({self.error})" if self.error else ""
                raise PacsError(f"the {what} failed with status 0x{code:04X} after {self.kept} instances{reason}")
        return Retrieved(self.kept, failed, what)
