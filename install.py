"""Installs what wav2lip-uhq needs inside a Stable Diffusion WebUI (AUTOMATIC1111 1.6+ or Forge).

The WebUI runs this file in a subprocess on every start, before it imports anything, with
``PYTHONPATH`` set to the WebUI root (so ``import launch`` works). It checks each requirement below by
import spec and installed version, and installs only the missing ones with a single pip command. It is
silent and quick when everything is there, does nothing under ``--skip-install``, and never changes
the packages the WebUI itself depends on (see ``PROTECTED`` and ``constraints``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import NamedTuple

# -- what the extension needs in a WebUI ----------------------------------------------------------------
# Only what a WebUI lacks: torch, numpy, Pillow and gradio come with the WebUI (never installed here);
# diffusers/transformers are not needed because the WebUI refines through its own pipeline and
# ControlNet. Columns: pip name(s) ("a|b": any of them provides the module; the first is installed
# when none is present, else the one present is upgraded), import name, minimum, maximum (exclusive,
# "" for none), what needs it.
# fmt: off
REQUIREMENTS: list[tuple[str, str, str, str, str]] = [
    ("av", "av", "12", "", "video decoding and encoding"),
    ("scipy", "scipy", "1.9", "", "audio resampling"),
    ("safetensors", "safetensors", "0.4", "", "checkpoint loading"),
    ("tqdm", "tqdm", "4.60", "", "progress"),
    # face-alignment depends on opencv-python: installing -headless too would give two copies of cv2
    (
        "opencv-python|opencv-python-headless|opencv-contrib-python|opencv-contrib-python-headless",
        "cv2", "4.8", "", "image processing",
    ),
    ("face-alignment", "face_alignment", "1.4", "", "S3FD face detector, FAN landmarks"),
    ("dlib-bin|dlib", "dlib", "19.24", "", "dlib face detector and landmarks"),
    ("face_recognition_models", "face_recognition_models", "0.3", "", "dlib model files"),
    # 0.3.4: A1111 1.10 and Forge pin it (a WebUI pinning a version out of these bounds keeps it: main())
    ("spandrel", "spandrel", "0.3.4", "0.5", "face restoration and super-resolution (enhanced mode)"),
    # a wheel of eSpeak NG's library and voice data, no dependencies: the offline text-to-speech voice
    # (the neural Piper voices need onnxruntime, which may clash with a WebUI's onnxruntime-gpu: by hand)
    ("espeakng-loader", "espeakng_loader", "0.2.4", "", "offline text to speech (eSpeak NG)"),
]

# Packages that must not move: never installed, upgraded or replaced by this script, even as a
# dependency of a requirement above (pinned to their installed versions through pip constraints).
# ``torch``/``xformers`` are CUDA builds from PyTorch's index (pip would fetch another build),
# gradio/fastapi/pydantic are the server the WebUI is written against (A1111: gradio 3.41.2 +
# pydantic 1; Forge: gradio 4.40.0 + pydantic 2.8.2), gradio 4.40 breaks with huggingface-hub >= 1.0,
# numpy/Pillow/protobuf/transformers are ABI or API the WebUI's own code relies on. Only these are
# constrained: constraining every ``==`` pin of the WebUI's requirements file made pip refuse the
# whole install in Forge (its torch needs setuptools>=77.0.3 while the file pins setuptools==69.5.1).
# The file's pins still keep our direct requirements where the WebUI wants them (see ``main``).
PROTECTED = (
    "torch", "torchvision", "torchaudio", "xformers",
    "gradio", "gradio-client", "fastapi", "starlette", "pydantic", "pydantic-core",
    "numpy", "pillow", "protobuf", "transformers", "huggingface-hub",
)
# fmt: on
# ---------------------------------------------------------------------------------------------------

NAME = "wav2lip-uhq"


class Requirement(NamedTuple):
    dists: tuple[str, ...]  # distributions that provide the module; dists[0] is installed by default
    module: str
    minimum: str
    maximum: str = ""  # exclusive; "" for none
    purpose: str = ""

    @classmethod
    def from_row(cls, row: tuple[str, str, str, str, str]) -> Requirement:
        dists, module, minimum, maximum, purpose = row
        return cls(tuple(dists.split("|")), module, minimum, maximum, purpose)

    @property
    def spec(self) -> str:
        return f">={self.minimum}" + (f",<{self.maximum}" if self.maximum else "")


def normalize(name: str) -> str:
    """PEP 503 name: ``Pillow`` -> ``pillow``, ``gradio_client`` -> ``gradio-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple[int, ...]:
    """The release numbers of a version ("2.1.2+cu121" -> (2, 1, 2)); enough for the bounds above."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if m is None:
        return ()
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - broken metadata counts as not installed
        return None


def _in_bounds(version: str, req: Requirement) -> bool:
    key = version_key(version)
    if key < version_key(req.minimum):
        return False
    return not (req.maximum and key >= version_key(req.maximum))


def install_name(req: Requirement) -> str:
    """The distribution to install for ``req``: the flavour already present (opencv-python stays
    opencv-python), else the default one."""
    for dist in req.dists:
        if installed_version(dist) is not None:
            return dist
    return req.dists[0]


def is_satisfied(req: Requirement) -> bool:
    """The module is importable and an installed distribution of it is within the bounds."""
    try:
        if importlib.util.find_spec(req.module) is None:
            return False
    except (ImportError, ValueError):
        return False
    versions = [v for v in (installed_version(d) for d in req.dists) if v is not None]
    if not versions:
        return True  # importable but installed without metadata (built in place): leave it alone
    return any(_in_bounds(v, req) for v in versions)


def missing(requirements: list[Requirement] | None = None) -> list[Requirement]:
    """The requirements that are not importable or whose installed version is out of bounds."""
    reqs = [Requirement.from_row(r) for r in REQUIREMENTS] if requirements is None else requirements
    return [r for r in reqs if not is_satisfied(r)]


# -- protecting the WebUI's packages ---------------------------------------------------------------------
def host_requirements_file(launch=None) -> str | None:
    """The WebUI's pinned requirements (``REQS_FILE``, default requirements_versions.txt), looked up
    like the WebUI does: relative to the working directory (the WebUI root), then to its script path."""
    name = os.environ.get("REQS_FILE") or "requirements_versions.txt"
    roots = [os.getcwd()]
    for obj in (launch, getattr(launch, "launch_utils", None)):
        root = getattr(obj, "script_path", None)
        if isinstance(root, str):
            roots.append(root)
    here = os.path.dirname(os.path.abspath(__file__))
    roots.append(os.path.dirname(os.path.dirname(here)))  # <webui>/extensions/<this extension>
    for root in roots:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def host_pins(path: str | None) -> set[str]:
    """Normalized names that the WebUI pins with ``name==version`` in its requirements file."""
    if not path:
        return set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    pins = set()
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*[^\s;#]", line)
        if m:
            pins.add(normalize(m.group(1)))
    return pins


def constraints(extra_protected: Iterable[str] = ()) -> dict[str, str]:
    """``{name: installed version}`` for every protected package that is installed.

    Passed to pip as a constraints file (``-c``), ``name==version`` tells pip's resolver that these
    packages may only ever be at the version they are now: pip keeps the installed copy, never
    upgrades, downgrades or reinstalls it, and fails with a conflict instead of changing it when a
    requirement would need another version. Unlike ``--no-deps``, every other dependency of the new
    packages is still resolved and installed. Packages that are not installed are not constrained.
    """
    pins = {}
    for name in sorted({normalize(n) for n in (*PROTECTED, *extra_protected)}):
        version = installed_version(name)
        if version and re.fullmatch(r"[A-Za-z0-9.+!_-]+", version):
            pins[name] = version
    return pins


# -- installing ------------------------------------------------------------------------------------------
def _quote(arg: str) -> str:
    # launch.run_pip runs one command line through the shell
    return f'"{arg}"' if os.name == "nt" else shlex.quote(arg)


def _import_launch():
    try:
        import launch  # the WebUI's launch.py: on PYTHONPATH when the WebUI runs this file
    except Exception:  # noqa: BLE001 - not in a WebUI (or a broken one): plain pip
        return None
    return launch


def run_pip(args: list[str], launch, desc: str) -> tuple[bool, str]:
    """``pip <args>`` through the WebUI's ``run_pip`` (honours --skip-install and INDEX_URL) when
    available, else ``python -m pip``. Returns (ok, error message)."""
    run = getattr(launch, "run_pip", None)
    if run is not None:
        try:
            run(" ".join(_quote(a) for a in args), desc)
        except Exception as exc:  # noqa: BLE001 - RuntimeError with pip's output
            return False, str(exc)
        return True, ""
    print(f"Installing {desc}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--prefer-binary"], check=False, capture_output=True, text=True
    )
    output = "\n".join(x for x in (result.stdout, result.stderr) if x)
    return result.returncode == 0, f"pip exited with code {result.returncode}\n{output}".rstrip()


_CONSTRAINT = re.compile(r"The user requested \(constraint\) ([A-Za-z0-9._-]+)\s*==\s*([^\s,;]+)")
_DEPENDS = re.compile(r"^\s*([A-Za-z0-9._-]+ \S+) depends on ([A-Za-z0-9._-]+)(.*)$", re.MULTILINE)


def conflicting_constraints(pip_output: str) -> list[str]:
    """From pip's ResolutionImpossible report ("The user requested (constraint) numpy==1.26.2" /
    "face-alignment 1.4.1 depends on numpy>=2"): one line per constraint of ours that pip named,
    with what asks for another version of it."""
    lines = []
    for name, version in dict(_CONSTRAINT.findall(pip_output)).items():
        needs = [f"{who} needs {dep}{spec.strip()}" for who, dep, spec in _DEPENDS.findall(pip_output)
                 if normalize(dep) == normalize(name)]
        lines.append(f"{name}=={version} (held at the WebUI's version)"
                     + (f" conflicts with: {'; '.join(needs)}" if needs else ""))
    return lines


def failure_message(specs: list[str], error: str) -> str:
    """What went wrong and what to run by hand."""
    python = _quote(sys.executable)
    wanted = " ".join(_quote(x) for x in specs)
    text = f"{NAME}: could not install {' '.join(specs)}; the extension may not work.\n"
    conflicts = conflicting_constraints(error)
    if conflicts:
        text += (
            "pip found no versions that keep the WebUI's packages as they are:\n"
            + "".join(f"  {c}\n" for c in conflicts)
            + "To install anyway, run by hand (pip may then change the package named above):\n"
            f"  {python} -m pip install {wanted}\n"
            "or, to leave every installed package as it is, install without dependencies and add any "
            "that are still missing yourself:\n"
            f"  {python} -m pip install --no-deps {wanted}\n"
        )
    else:
        text += f"Install them by hand into the WebUI's Python: {python} -m pip install {wanted}\n"
    return text + error


def main(requirements: list[Requirement] | None = None) -> int:
    launch = _import_launch()
    if getattr(getattr(launch, "args", None), "skip_install", False):
        return 0
    todo = missing(requirements)
    if not todo:
        return 0

    pins = constraints()
    host = host_pins(host_requirements_file(launch))
    held = [r for r in todo if normalize(install_name(r)) in host and installed_version(install_name(r))]
    for r in held:  # pinned by the WebUI at a version outside our bounds: leave the WebUI's choice
        name = install_name(r)
        print(
            f"{NAME}: {name} {installed_version(name)} is pinned by the WebUI; {r.purpose} needs "
            f"{name}{r.spec} and stays unavailable.",
            flush=True,
        )
    todo = [r for r in todo if r not in held]
    if not todo:
        return 0

    specs = [install_name(r) + r.spec for r in todo]
    fd, path = tempfile.mkstemp(prefix="wav2lip_uhq_constraints_", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}=={version}\n" for name, version in pins.items()))
        ok, error = run_pip(
            ["install", "-c", path, *specs], launch, f"requirements for {NAME}: {' '.join(specs)}"
        )
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if not ok:
        print(failure_message(specs, error), file=sys.stderr, flush=True)
        return 1

    importlib.invalidate_caches()
    still = [install_name(r) + r.spec for r in missing(todo)]
    if still:
        print(
            f"{NAME}: pip finished but these are still missing: {' '.join(still)}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
