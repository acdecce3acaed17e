"""The PACS, in both directions: DIMSE (pynetdicom) and DICOMweb (dicomweb-client), without Qt.

:mod:`pacs.nodes` says where a PACS is, :mod:`pacs.records` what a query asks and answers,
:mod:`pacs.dimse` and :mod:`pacs.web` speak to it, :mod:`pacs.cache` keeps what was retrieved,
and :func:`pacs.client.open_client` picks the client a node needs. Every failure reaches the
caller as one :class:`pacs.errors.PacsError` line that names no patient.
"""
