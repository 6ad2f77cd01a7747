"""install.py: the WebUI runs it in a subprocess on every start, with the WebUI root (and so its
``launch`` module) on PYTHONPATH. Here a fake ``launch`` records every ``run_pip`` call and "installs"
packages into a folder on the path; this dev venv has every real requirement, so missing ones are
simulated by adding a made-up requirement to the table."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install.py"
FAKE_ROW = ("w2l-fake-pkg", "w2l_fake_pkg", "1.2", "2", "tests")
FAKE_SPEC = "w2l-fake-pkg>=1.2,<2"

FAKE_LAUNCH = """
import json, os, re, shlex, types

args = types.SimpleNamespace(skip_install={skip})
script_path = {script_path!r}


def run_pip(command, desc=None, live=False):
    argv = shlex.split(command)
    constraints = None
    if "-c" in argv:
        with open(argv[argv.index("-c") + 1], encoding="utf-8") as f:
            constraints = f.read()
    with open(os.environ["W2L_PIP_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({{"command": command, "argv": argv, "desc": desc, "constraints": constraints}}) + "\\n")
    site = os.environ["W2L_SITE"]
    for arg in argv[1:]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+).*", arg)
        if m is None:
            continue
        name, version = m.groups()
        module = name.replace("-", "_")
        os.makedirs(os.path.join(site, module), exist_ok=True)
        open(os.path.join(site, module, "__init__.py"), "w").close()
        info = os.path.join(site, f"{{module}}-{{version}}.dist-info")
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\\nName: {{name}}\\nVersion: {{version}}\\n")
"""

# Runs install.py's main() with one made-up requirement added to its table (the production file is
# run unchanged; only the table differs).
WRAPPER = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("wav2lip_uhq_install", {str(INSTALL)!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
mod.REQUIREMENTS.append({FAKE_ROW!r})
sys.exit(mod.main())
"""


def load_install():
    spec = importlib.util.spec_from_file_location("wav2lip_uhq_install_under_test", INSTALL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


inst = load_install()


class WebUI:
    """A fake WebUI root (launch.py, requirements_versions.txt) and a site folder for fake installs."""

    def __init__(self, tmp_path: Path, skip_install: bool = False, pins: str = "") -> None:
        self.root = tmp_path / "webui"
        self.site = tmp_path / "site"
        self.log = tmp_path / "pip_log.jsonl"
        self.root.mkdir()
        self.site.mkdir()
        (self.root / "launch.py").write_text(
            FAKE_LAUNCH.format(skip=skip_install, script_path=str(self.root)), encoding="utf-8"
        )
        if pins:
            (self.root / "requirements_versions.txt").write_text(pins, encoding="utf-8")
        self.wrapper = tmp_path / "run_install.py"
        self.wrapper.write_text(WRAPPER, encoding="utf-8")

    def run(self, script: Path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("REQS_FILE", "PYTHONPATH")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.root), str(self.site)]),
            W2L_PIP_LOG=str(self.log),
            W2L_SITE=str(self.site),
        )
        return subprocess.run(
            [sys.executable, str(script)],
            cwd=REPO,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


def protected_installed() -> dict[str, str]:
    out = {}
    for name in inst.PROTECTED:
        try:
            out[inst.normalize(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def test_everything_present_is_silent_and_installs_nothing(tmp_path):
    webui = WebUI(tmp_path)
    result = webui.run(INSTALL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    assert webui.calls() == []


def test_missing_requirement_is_installed_once_with_constraints(tmp_path):
    tqdm_version = importlib.metadata.version("tqdm")
    webui = WebUI(tmp_path, pins="# the WebUI's pins\ntqdm==0.0.1\nnot-installed-pkg==1.0\ntorch\n")
    first = webui.run(webui.wrapper)
    assert first.returncode == 0, first.stderr
    calls = webui.calls()
    assert len(calls) == 1
    argv = calls[0]["argv"]
    assert argv[:2] == ["install", "-c"]
    assert argv[3:] == [FAKE_SPEC]  # only the missing package, with its bounds
    assert "-U" not in argv and "--upgrade" not in argv and "--no-deps" not in argv
    assert "wav2lip-uhq" in calls[0]["desc"]

    lines = calls[0]["constraints"].splitlines()
    expected = {name: version for name, version in protected_installed().items()}
    assert expected["torch"] and expected["numpy"]  # the dev venv has them: they must be constrained
    # only the protected set: the WebUI file's other pins (tqdm here) are not constraints
    assert sorted(lines) == sorted(f"{n}=={v}" for n, v in expected.items())
    assert not any(line.startswith("tqdm==") for line in lines) and tqdm_version
    assert not Path(argv[2]).exists()  # the temporary constraints file is removed

    second = webui.run(webui.wrapper)  # the fake pip put w2l_fake_pkg 1.2 on the path
    assert second.returncode == 0, second.stderr
    assert (second.stdout, second.stderr) == ("", "")
    assert len(webui.calls()) == 1


def test_skip_install_does_nothing(tmp_path):
    webui = WebUI(tmp_path, skip_install=True)
    result = webui.run(webui.wrapper)
    assert result.returncode == 0
    assert (result.stdout, result.stderr) == ("", "")
    assert webui.calls() == []


def test_no_protected_package_is_ever_a_requirement():
    protected = {inst.normalize(n) for n in inst.PROTECTED}
    assert {
        "torch",
        "torchvision",
        "gradio",
        "numpy",
        "pydantic",
        "protobuf",
        "pillow",
        "transformers",
        "fastapi",
    } <= protected
    for row in inst.REQUIREMENTS:
        req = inst.Requirement.from_row(row)
        assert not {inst.normalize(d) for d in req.dists} & protected, row
        assert inst.normalize(req.module) not in protected, row
    assert "diffusers" not in {
        inst.normalize(inst.Requirement.from_row(r).dists[0]) for r in inst.REQUIREMENTS
    }


def test_requirement_table_matches_the_installed_dev_venv():
    reqs = [inst.Requirement.from_row(r) for r in inst.REQUIREMENTS]
    assert inst.missing() == []
    for req in reqs:
        assert inst.version_key(req.minimum) > (), req
        if req.maximum:
            assert inst.version_key(req.maximum) > inst.version_key(req.minimum), req


def write_dist(site: Path, name: str, version: str, module: str | None = None) -> None:
    module = module or name.replace("-", "_")
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text("")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_version_out_of_bounds_is_missing(tmp_path, monkeypatch):
    low, ok, high = (tmp_path / d for d in ("low", "ok", "high"))
    write_dist(low, "w2l-low", "1.0")
    write_dist(ok, "w2l-ok", "1.5.post1")
    write_dist(high, "w2l-high", "2.0")
    for d in (low, ok, high):
        monkeypatch.syspath_prepend(str(d))
    importlib.invalidate_caches()
    reqs = [
        inst.Requirement((name,), name.replace("-", "_"), "1.2", "2")
        for name in ("w2l-low", "w2l-ok", "w2l-high")
    ]
    assert [r.dists[0] for r in inst.missing(reqs)] == ["w2l-low", "w2l-high"]
    # a real package of this venv, with a minimum above its version
    tqdm_too_old = inst.Requirement(("tqdm",), "tqdm", "9999")
    assert inst.missing([tqdm_too_old]) == [tqdm_too_old]
    # installed metadata without an importable module
    assert inst.missing([inst.Requirement(("pytest",), "w2l_no_such_module", "1")]) != []


def test_version_key():
    assert inst.version_key("2.1.2+cu121") == (2, 1, 2)
    assert inst.version_key("0.4") == inst.version_key("0.4.0")
    assert inst.version_key("20.0.1.post1") > inst.version_key("19.24")
    assert inst.version_key("4.11.0.86") >= inst.version_key("4.8")


def test_present_flavour_is_upgraded_instead_of_adding_another():
    req = inst.Requirement(("w2l-not-installed", "tqdm"), "tqdm", "9999")
    assert inst.install_name(req) == "tqdm"
    assert inst.install_name(inst.Requirement(("w2l-a", "w2l-b"), "w2l_a", "1")) == "w2l-a"


def test_host_pins_parsing(tmp_path):
    path = tmp_path / "requirements_versions.txt"
    path.write_text(
        "GitPython==3.1.32\nPillow==9.5.0\nspandrel_extra_arches==0.1.1\n# comment==1\ntorch\n"
        "xformers ; sys_platform=='linux'\nopen-clip-torch == 2.20.0\n\n-e .\n",
        encoding="utf-8",
    )
    assert inst.host_pins(str(path)) == {"gitpython", "pillow", "spandrel-extra-arches", "open-clip-torch"}
    assert inst.host_pins(None) == set()
    assert inst.host_pins(str(tmp_path / "missing.txt")) == set()


def fake_launch(monkeypatch, run_pip=None, skip=False):
    mod = types.ModuleType("launch")
    mod.args = types.SimpleNamespace(skip_install=skip)
    if run_pip is not None:
        mod.run_pip = run_pip
    monkeypatch.setitem(sys.modules, "launch", mod)
    return mod


def test_without_launch_pip_runs_as_an_argument_list(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "launch", None)  # import launch -> ImportError
    monkeypatch.delenv("REQS_FILE", raising=False)
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append((cmd, kwargs, Path(cmd[cmd.index("-c") + 1]).read_text()))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(inst.subprocess, "run", fake_run)
    req = inst.Requirement(("w2l-fake-pkg",), "w2l_fake_pkg", "1.2", "2")
    assert inst.main([req]) == 1  # pip "succeeded" but nothing was installed: reported
    assert len(seen) == 1
    cmd, kwargs, constraints = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[4] == "-c" and cmd[6:] == [FAKE_SPEC, "--prefer-binary"]
    assert not kwargs.get("shell")
    assert f"numpy=={importlib.metadata.version('numpy')}" in constraints.splitlines()
    err = capsys.readouterr().err
    assert "still missing" in err and FAKE_SPEC in err


def test_pip_failure_is_reported_with_nonzero_exit(monkeypatch, capsys):
    def failing(command, desc=None, live=False):
        raise RuntimeError("Couldn't install requirements. Error code: 1")

    fake_launch(monkeypatch, failing)
    assert inst.main([inst.Requirement(("w2l-fake-pkg",), "w2l_fake_pkg", "1.2")]) == 1
    err = capsys.readouterr().err
    assert "could not install w2l-fake-pkg>=1.2" in err
    assert "Error code: 1" in err


def test_requirement_pinned_by_the_webui_is_left_alone(tmp_path, monkeypatch, capsys):
    calls = []
    fake_launch(monkeypatch, lambda command, desc=None, live=False: calls.append(command))
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("tqdm==4.0.0\n", encoding="utf-8")
    monkeypatch.setenv("REQS_FILE", str(reqs))
    too_new_for_the_webui = inst.Requirement(("tqdm",), "tqdm", "9999", "", "progress bars")
    assert inst.main([too_new_for_the_webui]) == 0
    assert calls == []
    out = capsys.readouterr().out
    assert "tqdm" in out and "pinned by the WebUI" in out and "progress bars" in out


def test_skip_install_in_process(monkeypatch, capsys):
    calls = []
    fake_launch(monkeypatch, lambda command, desc=None, live=False: calls.append(command), skip=True)
    assert inst.main([inst.Requirement(("w2l-fake-pkg",), "w2l_fake_pkg", "1.2")]) == 0
    assert calls == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.skipif(os.name == "nt", reason="POSIX shell quoting")
def test_run_pip_command_line_survives_the_shell(monkeypatch):
    commands = []
    fake_launch(monkeypatch, lambda command, desc=None, live=False: commands.append(command))
    ok, _ = inst.run_pip(
        ["install", "-c", "/tmp/a b/c's.txt", "av>=12", "x>=1,<2"], sys.modules["launch"], "d"
    )
    assert ok
    out = subprocess.run(
        ["sh", "-c", "printf '%s\\n' " + commands[0]], check=False, capture_output=True, text=True
    )
    assert out.stdout.splitlines() == ["install", "-c", "/tmp/a b/c's.txt", "av>=12", "x>=1,<2"]
    assert shlex.split(commands[0])[3] == "av>=12"


def test_file_has_no_wav2lip_uhq_import():
    text = INSTALL.read_text(encoding="utf-8")
    assert "import wav2lip_uhq" not in text and "from wav2lip_uhq" not in text
    assert "shell=True" not in text


# What Forge's pip printed when every pin of its requirements file was a constraint (torch 2.7 needs a
# newer setuptools than the file's pin).
RESOLUTION_IMPOSSIBLE = """Couldn't install requirements for wav2lip-uhq.
Command: "/forge/venv/bin/python" -m pip install -c /tmp/c.txt face-alignment>=1.4 --prefer-binary
Error code: 1
stderr: ERROR: Cannot install face-alignment==1.4.1 and torch==2.7.0 because these package versions have \
conflicting dependencies.

The conflict is caused by:
    The user requested torch==2.7.0
    face-alignment 1.4.1 depends on torch
    The user requested (constraint) setuptools==69.5.1
    torch 2.7.0 depends on setuptools>=77.0.3; python_version >= "3.12"

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict
"""


def test_webui_file_pins_are_not_constraints(tmp_path, monkeypatch):
    seen = []

    def record(command, desc=None, live=False):
        argv = shlex.split(command)
        seen.append(Path(argv[argv.index("-c") + 1]).read_text())

    fake_launch(monkeypatch, record)
    reqs = tmp_path / "requirements_versions.txt"
    reqs.write_text("setuptools==69.5.1\nscikit-image==0.21.0\ntorch\n", encoding="utf-8")
    monkeypatch.setenv("REQS_FILE", str(reqs))
    inst.main([inst.Requirement(("w2l-fake-pkg",), "w2l_fake_pkg", "1.2")])
    (constraints,) = seen
    names = {line.split("==")[0] for line in constraints.splitlines()}
    assert names == set(protected_installed())  # torch, numpy, ... but neither setuptools nor scikit-image
    assert "setuptools" not in names and "scikit-image" not in names


def test_unresolvable_constraint_is_named_with_what_to_run(monkeypatch, capsys):
    def failing(command, desc=None, live=False):
        raise RuntimeError(RESOLUTION_IMPOSSIBLE)

    fake_launch(monkeypatch, failing)
    assert inst.main([inst.Requirement(("w2l-fake-pkg",), "w2l_fake_pkg", "1.2")]) == 1
    err = capsys.readouterr().err
    assert "setuptools==69.5.1" in err and "torch 2.7.0 needs setuptools>=77.0.3" in err
    assert "torch==2.7.0 (held" not in err  # a plain request, not one of our constraints
    runs = [shlex.split(line) for line in err.splitlines() if line.startswith("  ") and " -m pip install " in line]
    assert runs == [[sys.executable, "-m", "pip", "install", "w2l-fake-pkg>=1.2"],
                    [sys.executable, "-m", "pip", "install", "--no-deps", "w2l-fake-pkg>=1.2"]]


def test_conflicting_constraints_parsing():
    assert inst.conflicting_constraints("") == []
    lines = inst.conflicting_constraints(RESOLUTION_IMPOSSIBLE)
    assert len(lines) == 1 and lines[0].startswith("setuptools==69.5.1")
