"""Packaging: one OpenCV distribution in every install, and NumPy/OpenCV/torch bounds that cannot
resolve to a NumPy-1 build running on NumPy 2.

The requirement closure is walked through the installed distributions' real metadata
(``Requires-Dist`` of face-alignment, diffusers, gradio... in this venv), so a dependency that starts
pulling another OpenCV flavour fails here. Checked with real pip as well (README, Packaging).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}
SELF = "wav2lip-uhq"


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def direct_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """Our requirements with ``extras``, self-references (``wav2lip-uhq[faces,...]``) expanded."""
    p = project()
    todo, seen, out = list(extras), set(), [Requirement(r) for r in p["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in p["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == SELF:
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def _applies(req: Requirement, extra: str = "") -> bool:
    return req.marker is None or req.marker.evaluate({**default_environment(), "extra": extra})


def closure(reqs: list[Requirement]) -> dict[str, str]:
    """Every distribution the requirements pull in, as this venv's metadata says: {name: via}."""
    found: dict[str, str] = {}
    todo = [(r, SELF) for r in reqs if _applies(r)]
    while todo:
        req, via = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found[name] = via
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (an optional platform extra): nothing below it to walk
        todo += [(r, name) for r in map(Requirement, requires) if any(_applies(r, e) for e in ("", *req.extras))]
    return found


def test_core_and_every_extra_ask_for_the_same_opencv():
    p = project()
    named = {canonicalize_name(Requirement(r).name) for r in p["dependencies"]}
    for extra in p["optional-dependencies"].values():
        named |= {canonicalize_name(Requirement(r).name) for r in extra}
    assert named & OPENCV == {"opencv-python"}


@pytest.mark.parametrize("extras", [(), ("faces",), ("refine",), ("restore",), ("ui",), ("train",), ("dev",)],
                         ids=lambda e: ",".join(e) or "core")
def test_one_opencv_distribution_in_the_whole_dependency_tree(extras):
    found = closure(direct_requirements(extras))
    flavours = {name: via for name, via in found.items() if name in OPENCV}
    assert set(flavours) == {"opencv-python"}, f"two OpenCV distributions would write cv2/: {flavours}"


def _bound(name: str) -> Requirement:
    (req,) = [r for r in direct_requirements(()) if canonicalize_name(r.name) == name]
    return req


def test_bounds_exclude_numpy1_builds():
    """torch < 2.3 and OpenCV < 4.10.0.84 are NumPy-1 builds: with NumPy 2 (which the numpy bound
    allows) they fail to import or crash; the floors keep pip from choosing them."""
    torch, cv2, numpy = _bound("torch"), _bound("opencv-python"), _bound("numpy")
    assert not torch.specifier.contains("2.2.2") and torch.specifier.contains("2.3.1")
    assert not cv2.specifier.contains("4.9.0.80") and cv2.specifier.contains("4.10.0.84")
    assert numpy.specifier.contains("1.26.4") and numpy.specifier.contains("2.1.0")  # both ABIs: any NumPy


def test_webui_installer_takes_any_opencv_flavour_already_there():
    """In a WebUI, whatever cv2 the WebUI has is kept (install.py); opencv-python is installed only
    where none is, the same distribution as here."""
    text = (REPO / "install.py").read_text(encoding="utf-8")
    row = re.search(r'"(opencv-python\|[^"]+)"', text)
    assert row is not None and row.group(1).split("|")[0] == "opencv-python"
    assert set(row.group(1).split("|")) == OPENCV
