"""The one error the PACS layer raises, so that callers show one line and carry on."""

from __future__ import annotations


class PacsError(Exception):
    """A PACS that cannot be reached, refuses, stops answering or answers wrongly; one line, no patient data."""
