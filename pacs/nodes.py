"""PACS nodes: where a PACS is, how ``NODE`` on the command line names one, and where they are kept.

Nodes live in a JSON settings file (``$LIGHTBOX_PACS_SETTINGS``, else ``lightbox/pacs.json`` in
the user's configuration folder). A DICOMweb password never goes there: it is kept by the system
keyring (:mod:`keyring`) under the node's name and user name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pacs.errors import PacsError

#: Our AE title when the user names none.
DEFAULT_CALLING_AE = "LIGHTBOX"
#: The keyring service our passwords are kept under.
KEYRING_SERVICE = "lightbox-pacs"
#: ``AET@HOST:PORT``; an IPv6 host goes in brackets.
DIMSE_ADDRESS = re.compile(r"(?P<aet>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@\[\]]+):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class Node:
    """One PACS: a DIMSE peer (AE title, host, port) or a DICOMweb base URL.

    ``ca_file`` is a certificate bundle to verify the peer against (the system's when empty);
    verification is always on, for DIMSE over TLS and for HTTPS alike.
    """

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 104
    calling_ae: str = DEFAULT_CALLING_AE
    tls: bool = False
    ca_file: str = ""
    url: str = ""
    username: str = ""
    timeout: float = 10.0

    @property
    def is_web(self) -> bool:
        return bool(self.url)

    def address(self) -> str:
        """Where the node is, for messages: ``AET@HOST:PORT`` or the URL."""
        return self.url if self.is_web else f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class PacsSettings:
    """The configured nodes, the retrieve cache and the port our C-MOVE Storage SCP listens on."""

    nodes: list[Node] = field(default_factory=list)
    cache_folder: str = ""
    cache_limit_mb: int = 20_000
    move_port: int = 11113

    def cache_path(self) -> Path:
        if self.cache_folder:
            return Path(self.cache_folder)
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "lightbox" / "pacs"

    def node(self, name: str) -> Node | None:
        return next((node for node in self.nodes if node.name == name), None)


def settings_path() -> Path:
    """The settings file: ``$LIGHTBOX_PACS_SETTINGS``, else in the user's configuration folder."""
    if os.environ.get("LIGHTBOX_PACS_SETTINGS"):
        return Path(os.environ["LIGHTBOX_PACS_SETTINGS"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "lightbox" / "pacs.json"


def load_settings(path: Path | None = None) -> PacsSettings:
    """The settings in ``path``; defaults when there is no file; PacsError when it cannot be read."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return PacsSettings()
    except (OSError, ValueError) as error:
        raise PacsError(f"cannot read the PACS settings {path}: {error}") from None
    known = {item.name for item in dataclasses.fields(Node)}
    try:
        nodes = [Node(**{key: value for key, value in item.items() if key in known}) for item in data.get("nodes", [])]
        return PacsSettings(nodes=nodes, cache_folder=str(data.get("cache_folder", "")),
                            cache_limit_mb=int(data.get("cache_limit_mb", 20_000)),
                            move_port=int(data.get("move_port", 11113)))
    except (TypeError, ValueError, AttributeError) as error:
        raise PacsError(f"the PACS settings {path} are malformed: {error}") from None


def save_settings(settings: PacsSettings, path: Path | None = None) -> None:
    """Write the settings (never a password) under a temporary name, then rename it into place."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(dataclasses.asdict(settings), indent=1))
    os.replace(temporary, path)


def parse_node(text: str, settings: PacsSettings | None = None, calling_ae: str | None = None) -> Node:
    """The node ``NODE`` names: ``AET@HOST:PORT``, an ``http(s)://`` base URL or a configured name.

    ``calling_ae`` (``--aet``) replaces our AE title. PacsError with one line when it names none.
    """
    settings = settings if settings is not None else load_settings()
    node = settings.node(text)
    if node is None:
        node = _address(text)
    if node is None:
        names = ", ".join(item.name for item in settings.nodes) or "none"
        raise PacsError(f"{text!r} is not a configured PACS node (configured: {names}), nor AET@HOST:PORT, "
                        "nor an http(s):// DICOMweb URL")
    return dataclasses.replace(node, calling_ae=calling_ae) if calling_ae else node


def _address(text: str) -> Node | None:
    """A node made from an address alone, or None."""
    if re.match(r"https?://", text, re.IGNORECASE):
        if "@" in text.split("/")[2]:
            raise PacsError("a URL must not carry credentials; configure a node, whose password the keyring keeps")
        return Node(name=text, url=text.rstrip("/"))
    match = DIMSE_ADDRESS.fullmatch(text)
    if match is None:
        return None
    port = int(match["port"])
    if not 0 < port < 65536:
        raise PacsError(f"port {port} is out of range in {text}")
    return Node(name=text, ae_title=match["aet"].strip(), host=match["host"].strip("[]"), port=port)


def password(node: Node) -> str | None:
    """The node's password from the system keyring; None when it has no user name or no password kept."""
    if not node.username:
        return None
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, f"{node.name}/{node.username}")
    except KeyringError as error:
        raise PacsError(f"cannot read the password of {node.name} from the keyring: {error}") from None


def keep_password(node: Node, secret: str) -> None:
    """Keep the node's password in the system keyring; PacsError when there is no keyring to keep it."""
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, f"{node.name}/{node.username}", secret)
    except KeyringError as error:
        raise PacsError(f"cannot keep the password of {node.name} in the keyring: {error}") from None
