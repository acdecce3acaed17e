"""The Debian package and the .tar.gz that ``scripts/build_deb`` makes, checked without installing them as root.

Skipped when the package has not been built: building the app and the package takes many
minutes, so CI leaves them to ``scripts/build_app --deb``, which builds both and then runs this
file. ``LIGHTBOX_DEB`` names another package (the CUDA flavour's). The package is unpacked with
``dpkg -x`` into a private root and the app started from there, as a user's double-click would
start it, with no network where ``unshare`` can take it away.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.packaging.running import anatomy_pixels, heat_pixels, run_program

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
DEB = Path(os.environ.get("LIGHTBOX_DEB", ROOT / "dist" / f"lightbox_{VERSION}_amd64.deb")).resolve()
PACKAGE = DEB.name.split("_")[0]
TARBALL = DEB.with_name(f"{PACKAGE}-{VERSION}-linux-x86_64.tar.gz")
MIME_NAMESPACE = "{http://www.freedesktop.org/standards/shared-mime-info}"

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb on this machine"),
    pytest.mark.skipif(not DEB.exists(), reason=f"{DEB.name} not built; run scripts/build_app --deb"),
]


def control_field(name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(DEB), name], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package unpacked into a private root, as dpkg would lay it out under /."""
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(DEB), str(root)], check=True)
    return root


def test_the_package_is_named_for_its_flavour_and_has_no_maintainer_scripts():
    assert control_field("Package") == PACKAGE and PACKAGE in ("lightbox", "lightbox-cuda")
    assert control_field("Version") == VERSION and control_field("Architecture") == "amd64"
    assert "libc6" in control_field("Depends")
    other = "lightbox" if PACKAGE == "lightbox-cuda" else "lightbox-cuda"
    assert control_field("Conflicts") == other, "both flavours install /usr/bin/lightbox"
    members = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(DEB)], capture_output=True, check=True).stdout
    names = subprocess.run(["tar", "-t"], input=members, capture_output=True, check=True).stdout.decode().split()
    # No preinst, postinst, prerm or postrm: nothing is written outside the package's own files, so
    # removing it leaves nothing behind; dpkg's triggers refresh the MIME, desktop and icon caches.
    assert sorted(name.removeprefix("./") for name in names if name not in ("./", ".")) == ["control", "md5sums"]


def test_layout_launcher_desktop_entry_mime_type_and_icons(installed):
    launcher = installed / "usr/bin/lightbox"
    assert launcher.is_file() and os.access(launcher, os.X_OK)
    assert (installed / "usr/lib/lightbox/Lightbox").is_file()
    entry = (installed / "usr/share/applications/lightbox.desktop").read_text()
    fields = dict(line.split("=", 1) for line in entry.splitlines() if "=" in line)
    assert fields["Exec"] == "lightbox %F" and fields["Icon"] == "lightbox" and fields["Type"] == "Application"
    assert "application/dicom" in fields["MimeType"].split(";")
    mime = ElementTree.parse(installed / "usr/share/mime/packages/lightbox.xml").getroot()
    dicom = mime.find(f"{MIME_NAMESPACE}mime-type[@type='application/dicom']")
    assert dicom is not None and [glob.get("pattern") for glob in dicom.iter(f"{MIME_NAMESPACE}glob")] == ["*.dcm"]
    with Image.open(installed / "usr/share/icons/hicolor/256x256/apps/lightbox.png") as png:
        assert png.size == (256, 256)
    svg = ElementTree.parse(installed / "usr/share/icons/hicolor/scalable/apps/lightbox.svg").getroot()
    assert svg.tag.endswith("svg")
    assert (installed / f"usr/share/doc/{PACKAGE}/copyright").is_file()
    assert (installed / "usr/share/man/man1/lightbox.1.gz").is_file()


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="no desktop-file-validate (desktop-file-utils)")
def test_the_desktop_entry_is_valid(installed):
    result = subprocess.run(["desktop-file-validate", str(installed / "usr/share/applications/lightbox.desktop")],
                            capture_output=True, text=True)
    # Errors and warnings fail; a hint is advice on menu placement, not a fault of the entry.
    assert result.returncode == 0 and not [line for line in result.stdout.splitlines() if ": hint: " not in line], \
        result.stdout


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="no update-mime-database (shared-mime-info)")
def test_the_mime_database_maps_dcm_files_to_dicom(installed, tmp_path):
    database = tmp_path / "mime"
    shutil.copytree(installed / "usr/share/mime", database)
    subprocess.run(["update-mime-database", str(database)], check=True, capture_output=True)
    assert "application/dicom:*.dcm" in (database / "globs2").read_text()
    assert "application/dicom" in (database / "types").read_text().split()


def test_the_installed_launcher_renders_the_demo_with_an_occlusion_map_offline(installed, tmp_path):
    launcher = installed / "usr/bin/lightbox"
    plain, explained = tmp_path / "plain.png", tmp_path / "explained.png"
    result = run_program(launcher, "--screenshot", str(plain), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_program(launcher, "--screenshot", str(explained), "--explain", "occlusion", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    before, after = np.asarray(Image.open(plain).convert("RGB")), np.asarray(Image.open(explained).convert("RGB"))
    anatomy = anatomy_pixels(before)
    assert anatomy.mean() > 0.2, "the demo radiograph fills much of the window"
    assert (anatomy & heat_pixels(after)).mean() > 0.02, "the occlusion map colours part of the radiograph"
    assert (anatomy & heat_pixels(before)).sum() == 0, "before explaining, the radiograph is grey"


def test_dpkg_installs_into_a_private_root_and_purge_leaves_nothing(tmp_path):
    """A real dpkg install and purge, into a root of the test's own (no root rights needed)."""
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    for folder in ("updates", "info", "triggers"):
        (admin / folder).mkdir(parents=True)
    (admin / "status").touch()
    dpkg = ["dpkg", f"--root={root}", f"--admindir={admin}", "--force-not-root", "--force-depends",
            "--force-script-chrootless", "--log=/dev/null"]
    installing = subprocess.run([*dpkg, "--install", str(DEB)], capture_output=True, text=True)
    assert installing.returncode == 0, installing.stderr
    assert (root / "usr/bin/lightbox").is_file() and (root / "usr/lib/lightbox/Lightbox").is_file()
    purging = subprocess.run([*dpkg, "--purge", PACKAGE], capture_output=True, text=True)
    assert purging.returncode == 0, purging.stderr
    left = {str(path.relative_to(root)) for path in root.rglob("*") if path != admin and admin not in path.parents}
    assert left <= {"var", "var/lib"}, f"left behind: {sorted(left - {'var', 'var/lib'})[:10]}"


@pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL.name} not built; run scripts/build_deb")
def test_the_tarball_holds_the_same_folder_as_the_package(installed):
    with tarfile.open(TARBALL) as archive:
        names = {name.removeprefix("Lightbox/") for name in archive.getnames() if name.startswith("Lightbox/")}
    folder = installed / "usr/lib/lightbox"
    assert names == {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.skipif(shutil.which("lintian") is None, reason="no lintian (apt-get install lintian)")
def test_lintian_is_clean_but_for_the_explained_overrides():
    result = subprocess.run(["lintian", "--fail-on", "error,warning", str(DEB)], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith(("E:", "W:"))]
    assert problems == []
    explained = False  # every override sits under a comment that gives its reason, with no blank line between
    for line in (ROOT / "packaging/debian/lintian-overrides").read_text().splitlines():
        if line.startswith("#"):
            explained = True
        elif not line.strip():
            explained = False
        else:
            assert explained, f"override without its reason: {line}"
