"""Output names: chosen and reserved before the run, never an existing file unless asked,
a folder gets a new name inside it, stale reservations and partial files cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wav2lip_uhq.config import EncodeSettings, RunConfig
from wav2lip_uhq.errors import OutputError
from wav2lip_uhq.outputs import clean_stale_partials, marker_for, reserve_output


@pytest.fixture
def inputs(tmp_path):
    face, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    face.write_bytes(b"x")
    audio.write_bytes(b"x")
    return face, audio


def config(inputs, **kw):
    return RunConfig(face=inputs[0], audio=inputs[1], **kw)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_two_runs_with_the_default_name_get_two_names(inputs, tmp_path):
    c = config(inputs, results_dir=tmp_path / "res")
    with reserve_output(c) as first, reserve_output(c) as second:
        assert first != second and first.parent == second.parent == tmp_path / "res"
        assert (first.name, second.name) == ("face_speech.mp4", "face_speech_1.mp4")
        assert not first.exists() and not second.exists()  # nothing under the names until written
        assert marker_for(first).is_file()
    assert not marker_for(first).exists() and not marker_for(second).exists()


def test_an_existing_file_is_refused_unless_overwrite(inputs, tmp_path):
    out = tmp_path / "done.mp4"
    out.write_bytes(b"the user's video")
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        with reserve_output(config(inputs, out=out)):
            pass
    with reserve_output(config(inputs, out=out, overwrite=True)) as path:
        assert path == out
    assert out.read_bytes() == b"the user's video"
    with pytest.raises(OutputError, match="input file"):
        with reserve_output(config(inputs, out=inputs[0], overwrite=True)):
            pass


def test_an_explicit_name_being_written_is_refused(inputs, tmp_path):
    c = config(inputs, out=tmp_path / "x.mp4")
    with reserve_output(c):
        with pytest.raises(OutputError, match="another run"):
            with reserve_output(c):
                pass


def test_a_folder_gets_a_new_name_inside(inputs, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "face_speech.mp4").write_bytes(b"old")
    with reserve_output(config(inputs, out=folder)) as path:
        assert path == folder / "face_speech_1.mp4"
    with reserve_output(config(inputs, out=folder, encode=EncodeSettings(lossless=True))) as path:
        assert path.suffix == ".mkv"


def test_containers_are_checked_from_the_name(inputs, tmp_path):
    with reserve_output(config(inputs, out=tmp_path / "web.webm")) as path:
        assert path.suffix == ".webm"
    with pytest.raises(OutputError, match=r"\.mp4"):
        with reserve_output(config(inputs, out=tmp_path / "old.flv")):
            pass


def test_stale_reservations_and_partials_are_cleaned(inputs, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    marker_for(res / "face_speech.mp4").write_text(str(dead_pid()))
    stale = res / ".face_speech.0123abcd.partial.mp4"
    stale.write_bytes(b"half a video")
    with reserve_output(config(inputs, results_dir=res)) as path:
        assert path == res / "face_speech.mp4"  # the dead run's reservation is reclaimed
        assert not stale.exists()
        live = res / ".face_speech.89abcdef.partial.mp4"  # this run's own partial stays
        live.write_bytes(b"being written")
        assert clean_stale_partials(res) == 0 and live.exists()
    assert clean_stale_partials(res) == 1 and not live.exists()


def test_a_failed_run_leaves_no_empty_results_folder(inputs, tmp_path):
    res = tmp_path / "new-results"
    with pytest.raises(RuntimeError):
        with reserve_output(config(inputs, results_dir=res)):
            raise RuntimeError("the run failed")
    assert not res.exists()


def test_cli_refuses_an_existing_out_before_torch_loads(inputs, tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    code = ("import sys; sys.modules['torch'] = None\n"  # importing torch now fails
            "from wav2lip_uhq.cli import main\n"
            f"sys.exit(main(['run', '--face', {str(inputs[0])!r}, '--audio', {str(inputs[1])!r}, "
            f"'--out', {str(out)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and str(out) in r.stderr and "--overwrite" in r.stderr
    assert out.read_bytes() == b"precious"


def test_cli_names_a_bad_device_in_one_line(inputs, capsys):
    from wav2lip_uhq.cli import main

    assert main(["run", "--face", str(inputs[0]), "--audio", str(inputs[1]), "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device 'gpu0': use auto, cpu, cuda, cuda:N or mps"


def test_cuda_without_a_gpu_is_one_line():
    torch = pytest.importorskip("torch")
    from wav2lip_uhq.devices import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(Exception, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_app_on_a_busy_port_says_so(capsys):
    pytest.importorskip("gradio")
    import socket

    from wav2lip_uhq.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port}" in err and "--port" in err and err.count("\n") == 1
