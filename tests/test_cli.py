"""The command line: the README's example inputs, models listing, module entry point."""

from __future__ import annotations

import os
import subprocess
import sys


from wav2lip_uhq.cli import EXAMPLES, main
from wav2lip_uhq.video import iter_frames, probe, read_audio_track


def test_bundled_examples_run(tmp_path, w2l_checkpoint, capsys):
    face, speech = EXAMPLES / "face.jpg", EXAMPLES / "speech.m4a"
    assert face.is_file() and speech.is_file()
    out = tmp_path / "example.mp4"
    code = main(["run", "--face", str(face), "--audio", str(speech), "--checkpoint", str(w2l_checkpoint),
                 "--detector", "dlib", "--out", str(out), "-q", "--cache-dir", str(tmp_path / "c")])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    info = probe(out)
    assert (info.width, info.height) == (384, 384) and info.has_audio
    n = sum(1 for _ in iter_frames(out))
    assert abs(n / 25 - read_audio_track(speech).duration) < 0.1


def test_models_lists_known_checkpoints(tmp_path, capsys, w2l_checkpoint):
    (tmp_path / "wav2lip_gan.pth").write_bytes(w2l_checkpoint.read_bytes()[:10])
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "present" in lines["wav2lip_gan"] and "missing" in lines["wav2lip"]


def test_models_download_offline_says_where_to_put_the_file(tmp_path, capsys, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = main(["models", "download", "wav2lip", "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "could not download wav2lip.pth" in err and str(tmp_path / "wav2lip.pth") in err
    assert not list(tmp_path.iterdir()), "partial download left behind"


def test_download_rejects_truncated_files(tmp_path, monkeypatch):
    import io
    import urllib.request

    from wav2lip_uhq import checkpoints

    class Resp(io.BytesIO):
        headers = {"Content-Length": "5"}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Resp(b"12345"))
    try:
        checkpoints.download("wav2lip", tmp_path)
    except checkpoints.CheckpointError as exc:
        assert "only 5 bytes" in str(exc)
    else:
        raise AssertionError("a 5-byte download was accepted")
    assert not (tmp_path / "wav2lip.pth").exists()


def test_module_entry_point_and_light_import():
    res = subprocess.run([sys.executable, "-m", "wav2lip_uhq", "run", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--face" in res.stdout and "--lossless" in res.stdout
    code = "import sys, wav2lip_uhq, wav2lip_uhq.config, wav2lip_uhq.cli; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", "importing the package or the CLI must not import torch"


def test_cli_process_lets_openmp_wait_passively_unless_the_user_chose():
    code = ("import os, sys; from wav2lip_uhq.cli import configure_process; configure_process(); "
            "import torch; print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "PASSIVE"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert res.stdout.strip() == "ACTIVE"
    # inside a host that already loaded torch (the WebUI), nothing is changed
    late = "import os, torch; from wav2lip_uhq.cli import configure_process; configure_process(); print(os.environ.get('OMP_WAIT_POLICY'))"
    res = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "None"
