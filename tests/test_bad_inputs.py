"""Bad input: a clear message naming the file, a non-zero exit, no partial output, inputs untouched."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from media_helpers import digest, write_video
from wav2lip_uhq.cli import main


@pytest.fixture()
def workdir(tmp_path, astronaut_png, speech_short, w2l_checkpoint):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(astronaut_png, d / "face.png")
    shutil.copy(speech_short, d / "speech.wav")
    return d


def _run_cli(capsys, face, audio, checkpoint, out_dir, *extra):
    out = out_dir / "result.mp4"
    inputs = [p for p in (face, audio, checkpoint) if p is not None and os.path.exists(p)]
    before = {p: digest(p) for p in inputs}
    code = main(["run", "--face", str(face), "--audio", str(audio), "--checkpoint", str(checkpoint),
                 "--out", str(out), "-q", "--cache-dir", str(out_dir / ".cache"), *extra])
    err = capsys.readouterr().err
    assert code != 0
    assert not out.exists()
    assert not [p for p in out_dir.iterdir() if p.suffix in (".mp4", ".mkv")], "partial output left behind"
    assert all(digest(p) == h for p, h in before.items()), "an input was modified"
    return err


BOX = ("--box", "80", "200", "170", "280")


def test_missing_face_file(capsys, workdir, w2l_checkpoint, tmp_path):
    err = _run_cli(capsys, workdir / "nope.mp4", workdir / "speech.wav", w2l_checkpoint, tmp_path)
    assert "nope.mp4" in err and "not found" in err


def test_text_file_renamed_mp4(capsys, workdir, w2l_checkpoint, tmp_path):
    fake = workdir / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    err = _run_cli(capsys, fake, workdir / "speech.wav", w2l_checkpoint, tmp_path, *BOX)
    assert "notes.mp4" in err and "cannot be read" in err


def test_truncated_video(capsys, workdir, w2l_checkpoint, tmp_path, moving_face_video):
    from wav2lip_uhq.video import read_audio_track

    full = write_video(workdir / "full.mp4", [np.full((96, 96, 3), 100, np.uint8)] * 10,
                       audio=read_audio_track(workdir / "speech.wav"), lossless=False)
    cut = workdir / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    err = _run_cli(capsys, cut, workdir / "speech.wav", w2l_checkpoint, tmp_path, *BOX)
    assert "cut.mp4" in err


def test_silent_audio(capsys, workdir, w2l_checkpoint, tmp_path):
    import soundfile as sf

    silent = workdir / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    err = _run_cli(capsys, workdir / "face.png", silent, w2l_checkpoint, tmp_path, *BOX)
    assert "silent.wav" in err and "silent" in err


def test_empty_audio(capsys, workdir, w2l_checkpoint, tmp_path):
    import soundfile as sf

    empty = workdir / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    err = _run_cli(capsys, workdir / "face.png", empty, w2l_checkpoint, tmp_path, *BOX)
    assert "empty.wav" in err


def test_video_without_audio_as_audio(capsys, workdir, w2l_checkpoint, tmp_path, moving_face_video):
    err = _run_cli(capsys, workdir / "face.png", moving_face_video, w2l_checkpoint, tmp_path, *BOX)
    assert moving_face_video.name in err and "no audio stream" in err


def test_no_face_anywhere(capsys, workdir, w2l_checkpoint, tmp_path):
    import cv2

    wall = workdir / "wall.png"
    cv2.imwrite(str(wall), np.full((200, 200, 3), 128, np.uint8))
    err = _run_cli(capsys, wall, workdir / "speech.wav", w2l_checkpoint, tmp_path, "--detector", "dlib")
    assert "wall.png" in err and "no face" in err


def test_checkpoint_of_the_wrong_kind(capsys, workdir, tmp_path):
    from wav2lip_uhq.models import SyncNet

    expert = workdir / "lipsync_expert.pth"
    torch.save({"state_dict": SyncNet(96).state_dict()}, expert)
    err = _run_cli(capsys, workdir / "face.png", workdir / "speech.wav", expert, tmp_path, *BOX)
    assert "lipsync_expert.pth" in err and "syncnet" in err


def test_random_pickle_checkpoint(capsys, workdir, tmp_path):
    evil = workdir / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": {"a": object()}}, fh)
    err = _run_cli(capsys, workdir / "face.png", workdir / "speech.wav", evil, tmp_path, *BOX)
    assert "evil.pth" in err and "refusing to unpickle" in err


def test_output_folder_without_write_permission(capsys, workdir, w2l_checkpoint, tmp_path):
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    else:  # root writes through file modes; /proc/self is a folder no one can create files in
        locked = Path("/proc/self")
    try:
        err = _run_cli(capsys, workdir / "face.png", workdir / "speech.wav", w2l_checkpoint, locked, *BOX)
        assert str(locked) in err and "not writable" in err
    finally:
        if os.geteuid() != 0:
            locked.chmod(0o700)


def test_unwritable_output_folder(capsys, workdir, w2l_checkpoint, tmp_path):
    # A path under a regular file can never be created, even by root.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--face", str(workdir / "face.png"), "--audio", str(workdir / "speech.wav"),
                 "--checkpoint", str(w2l_checkpoint), "--out", str(blocker / "out.mp4"), "-q", *BOX])
    err = capsys.readouterr().err
    assert code != 0 and str(blocker) in err and "does not exist" in err


def test_output_never_overwrites_input(capsys, workdir, w2l_checkpoint):
    audio = workdir / "speech.wav"
    before = digest(audio)
    code = main(["run", "--face", str(workdir / "face.png"), "--audio", str(audio), "--checkpoint",
                 str(w2l_checkpoint), "--out", str(audio.with_suffix(".wav")), "-q", *BOX])
    assert code != 0 and "overwrite an input" in capsys.readouterr().err
    assert digest(audio) == before


def test_missing_default_checkpoint_offline(capsys, workdir, tmp_path):
    code = main(["run", "--face", str(workdir / "face.png"), "--audio", str(workdir / "speech.wav"),
                 "--models-dir", str(tmp_path / "models"), "--no-download", "-q", *BOX])
    err = capsys.readouterr().err
    assert code != 0 and "wav2lip_gan.pth" in err and str(tmp_path / "models") in err
