"""The one error the PACS layer raises, so that callers show one line and carry on."""

from __future__ import annotations

import ssl


class PacsError(Exception):
    """A PACS that cannot be reached, refuses, stops answering or answers wrongly; one line, no patient data."""


def tls_failure(where: str, error: BaseException) -> str:
    """One line for a failed TLS handshake with ``where``, giving the certificate's own reason when it is one.

    The libraries bury the :class:`ssl.SSLError` under their own exceptions (requests, urllib3),
    whose text carries the request URL, and with it a search's patient name: only the reason is kept.
    """
    cause = _ssl_error(error)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"cannot verify the TLS certificate of {where}: {cause.verify_message} "
                "(is the PACS's CA in the node's ca_file?)")
    reason = getattr(cause, "reason", None) or type(cause or error).__name__
    return f"the TLS handshake with {where} failed: {reason}"


def _ssl_error(error: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` at the root of ``error``: searched in its arguments, ``reason`` and causes."""
    pending, seen = [error], set()
    while pending:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        linked = [*getattr(item, "args", ()), getattr(item, "reason", None), item.__cause__, item.__context__]
        pending += [link for link in linked if isinstance(link, BaseException)]
    return None
