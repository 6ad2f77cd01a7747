"""Mistakes a user makes get one line that says what is wrong (not a traceback, not a wrong cause)."""

from __future__ import annotations

import pytest

from wav2lip_uhq.cli import main


def _run(tmp_path, face, audio, ckpt, *extra):
    return main(["run", "--face", str(face), "--audio", str(audio), "--checkpoint", str(ckpt), "--no-download",
                 "-q", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o.mp4"), *extra])


@pytest.mark.parametrize("mode", ["fast", "improved"])
def test_a_box_outside_the_frame_says_so(tmp_path, astronaut_png, speech_short, w2l_checkpoint, capsys, mode):
    code = _run(tmp_path, astronaut_png, speech_short, w2l_checkpoint, "--mode", mode, "--detector", "dlib",
                "--box", "80", "900", "170", "280")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--box 80 900 170 280" in err and "outside the 512x512 frame" in err
    assert not (tmp_path / "o.mp4").exists()


def test_a_face_index_beyond_the_faces_found_says_so(tmp_path, astronaut_png, speech_short, w2l_checkpoint, capsys):
    code = _run(tmp_path, astronaut_png, speech_short, w2l_checkpoint, "--mode", "fast", "--detector", "dlib",
                "--face-index", "3")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--face-index 3" in err and "no frame has more than 1" in err and "no face found" not in err


def test_missing_models_are_named_together_with_the_offline_way(tmp_path, astronaut_png, speech_short, capsys):
    models = tmp_path / "models"
    models.mkdir()
    code = main(["run", "--face", str(astronaut_png), "--audio", str(speech_short), "--models-dir", str(models),
                 "--no-download", "-q", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for name in ("wav2lip_gan.pth", "s3fd.pth", "2DFAN4"):
        assert name in err
    assert "models download wav2lip_gan s3fd fan" in err and "--detector dlib" in err


def test_an_offline_download_names_everything_still_missing(tmp_path, astronaut_png, speech_short, capsys,
                                                            monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = main(["run", "--face", str(astronaut_png), "--audio", str(speech_short), "--models-dir",
                 str(tmp_path / "m"), "--mode", "enhanced", "-q", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "could not download wav2lip_gan" in err and "GFPGANv1.4.pth" in err and "--detector dlib" in err
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, astronaut_png, speech_short,
                                                                w2l_checkpoint, capsys, monkeypatch):
    import errno

    from wav2lip_uhq import video

    real_write = video.VideoWriter.write
    calls = []

    def full(self, frame):  # the disk fills up after a few frames
        calls.append(1)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))
        return real_write(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", full)
    code = _run(tmp_path, astronaut_png, speech_short, w2l_checkpoint, "--mode", "fast",
                "--box", "80", "200", "170", "280")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err, err
    assert "o" in err and not (tmp_path / "o.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name or p.name.endswith(".reserved")]


def test_the_models_a_run_needs_follow_the_model_banks_rule(tmp_path):
    from wav2lip_uhq.config import RunConfig
    from wav2lip_uhq.model_needs import needed_checkpoints

    def needs(**kw):
        return needed_checkpoints(RunConfig(face=tmp_path / "f.png", audio=tmp_path / "a.wav", **kw))

    assert needs(mode="fast") == ["wav2lip_gan", "s3fd"]  # no landmarks in fast mode
    assert needs(mode="improved") == ["wav2lip_gan", "s3fd", "fan"]
    assert "fan" in needs(mode="fast", checkpoint="musetalk")  # MuseTalk's box comes from landmarks
