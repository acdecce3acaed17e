"""The one error every export raises, in a module light enough for the command line's PNG writer."""

from __future__ import annotations


class ExportError(Exception):
    """Anything that stops an export; its text is one line for the status bar or stderr."""
