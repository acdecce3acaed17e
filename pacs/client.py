"""The client a node needs, DIMSE or DICOMweb, behind one interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pacs.cache import Cache
from pacs.nodes import Node, password
from pacs.records import Retrieved, Sent, Series, Study, StudyQuery


class PacsClient(Protocol):
    """What the command line and the viewer ask of a PACS; every failure is a one-line PacsError."""

    node: Node

    def verify(self) -> str: ...

    def find_studies(self, query: StudyQuery) -> list[Study]: ...

    def find_series(self, study_uid: str) -> list[Series]: ...

    def retrieve(self, cache: Cache, study_uid: str, series_uid: str = "",
                 on_instance: Callable[[Path], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> Retrieved: ...

    def send(self, paths: list[Path]) -> list[Sent]: ...


def open_client(node: Node, move_port: int = 11113) -> PacsClient:
    """A DICOMweb client for a URL node (its password from the keyring), else a DIMSE one."""
    if node.is_web:
        from pacs.web import WebClient

        return WebClient(node, password(node))
    from pacs.dimse import DimseClient

    return DimseClient(node, move_port)
