"""``wav2lip-uhq batch``: manifests validated up front, failing rows reported, resume by content key,
the JSON summary, folder pairing, models kept loaded, ``--workers 2``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wav2lip_uhq.batch import ManifestError, pair_folders, read_manifest
from wav2lip_uhq.cli import main

FAST = ["--mode", "fast", "--box", "80", "200", "170", "280", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture
def media(tmp_path, astronaut_png, speech_short):
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(astronaut_png, folder / "face.png")
    shutil.copy(speech_short, folder / "speech.wav")
    (folder / "broken.png").write_bytes(b"this is not an image")
    return folder


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_batch(args: list[str], ckpt: Path, tmp_path: Path) -> int:
    return main(["batch", *args, "--checkpoint", str(ckpt), "--cache-dir", str(tmp_path / "cache"), "-q", *FAST])


def summary_of(out_dir: Path) -> dict:
    return json.loads((out_dir / "batch_summary.json").read_text())


def test_failing_row_is_reported_the_batch_goes_on_and_a_second_run_resumes(tmp_path, media, w2l_checkpoint,
                                                                           caplog):
    manifest = write_csv(media / "rows.csv", [
        "face,audio,out,crf",
        "face.png,speech.wav,first.mp4,",
        "broken.png,speech.wav,bad.mp4,",
        "face.png,speech.wav,second.mp4,30",
    ])
    out_dir = tmp_path / "out"
    assert run_batch([str(manifest), "--out-dir", str(out_dir)], w2l_checkpoint, tmp_path) == 1
    err = caplog.text
    summary = summary_of(out_dir)
    assert (summary["rows"], summary["done"], summary["failed"]) == (3, 2, 1)
    assert [r["status"] for r in summary["results"]] == ["done", "failed", "done"]
    assert summary["failures"] == [f"{manifest}: line 3: {summary['results'][1]['error']}"]
    assert "broken.png" in summary["failures"][0] and "broken.png" in err
    assert summary["frames"] == sum(r["frames"] for r in summary["results"]) > 60
    first, second = out_dir / "first.mp4", out_dir / "second.mp4"
    assert first.is_file() and second.is_file() and not (out_dir / "bad.mp4").exists()
    assert json.loads(Path(f"{second}.json").read_text())["encode"]["crf"] == 30
    stamps = {p: p.stat().st_mtime_ns for p in (first, second)}

    # a second invocation: the finished rows are skipped (same inputs and settings), the bad one fails again
    assert run_batch([str(manifest), "--out-dir", str(out_dir)], w2l_checkpoint, tmp_path) == 1
    again = summary_of(out_dir)
    assert [r["status"] for r in again["results"]] == ["skipped", "failed", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in (first, second)} == stamps

    # another setting for a finished output: refused without --overwrite, redone with it
    write_csv(manifest, ["face,audio,out,crf", "face.png,speech.wav,first.mp4,28"])
    assert run_batch([str(manifest), "--out-dir", str(out_dir)], w2l_checkpoint, tmp_path) == 1
    refused = summary_of(out_dir)["results"][0]
    assert refused["status"] == "failed" and "--overwrite" in refused["error"]
    assert first.stat().st_mtime_ns == stamps[first]
    assert run_batch([str(manifest), "--out-dir", str(out_dir), "--overwrite"], w2l_checkpoint, tmp_path) == 0
    assert summary_of(out_dir)["results"][0]["status"] == "done"
    assert json.loads(Path(f"{first}.json").read_text())["encode"]["crf"] == 28


def test_bad_manifest_is_refused_before_anything_runs(tmp_path, media, w2l_checkpoint, capsys):
    manifest = write_csv(media / "bad.csv", [
        "face,audio,mask-feather,colour_match,sharpness",
        "face.png,speech.wav,3,,",
        "face.png,missing.wav,,,",
        "face.png,speech.wav,,maybe,",
        "face.png,speech.wav,,,2",
    ])
    out_dir = tmp_path / "out"
    assert run_batch([str(manifest), "--out-dir", str(out_dir)], w2l_checkpoint, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"{manifest}: line 2: mask feather must be between 0 and 1 (got 3)" in err
    assert f"{manifest}: line 3: audio file not found" in err
    assert f"{manifest}: line 4: colour match: 'maybe' is not true or false" in err
    assert f"{manifest}: line 5: unknown column 'sharpness'" in err
    assert not out_dir.exists()  # nothing started: no folder, no summary


def test_manifest_rows_take_command_line_options_and_their_own_columns(tmp_path, media):
    manifest = media / "rows.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"face": "face.png", "audio": "speech.wav"}),
        "# a comment",
        json.dumps({"face": str(media / "face.png"), "audio": "speech.wav", "out": "sub/x.mkv", "lossless": True,
                    "mode": "feather", "pad_bottom": 20, "colour-match": False}),
    ]) + "\n")
    rows = read_manifest(manifest, {"mode": "fast", "crf": "20"}, tmp_path / "o")
    a, b = (r.config for r in rows)
    assert (a.mode, a.encode.crf, a.out) == ("fast", 20, tmp_path / "o" / "face_speech.mp4")
    assert (b.mode, b.encode.crf, b.encode.lossless, b.out) == ("feather", 20, True, tmp_path / "o" / "sub/x.mkv")
    assert b.faces.pads == (0, 20, 0, 0) and b.composite.colour_match is False
    assert a.face == media / "face.png"  # relative to the manifest's folder

    dup = write_csv(media / "dup.csv", ["face,audio,out", "face.png,speech.wav,same.mp4",
                                        "face.png,speech.wav,same.mp4", "face.png,speech.wav,clip.avi"])
    with pytest.raises(ManifestError) as exc:
        read_manifest(dup, {}, tmp_path / "o")
    assert "line 3: out" in str(exc.value) and "also the output of" in str(exc.value)
    assert "line 4:" in str(exc.value) and ".avi" in str(exc.value)


def test_text_rows_are_spoken_once_every_row_is_valid(tmp_path, media):
    base = {"cache_dir": str(tmp_path / "cache")}
    bad = write_csv(media / "bad.csv", ["face,text,audio,crf", "face.png,Hello there.,,", "face.png,,,",
                                        "face.png,Hi.,speech.wav,", "face.png,Fine.,,999"])
    with pytest.raises(ManifestError) as exc:
        read_manifest(bad, base, tmp_path / "o")
    lines = str(exc.value).splitlines()
    assert any("line 3: the 'audio' column is empty (or give text)" in x for x in lines)
    assert any("line 4: give audio or text, not both" in x for x in lines)
    assert any("line 5:" in x and "crf" in x.lower() for x in lines)
    assert not (tmp_path / "cache" / "speech").exists()  # nothing spoken for a manifest that cannot run
    good = write_csv(media / "tts.csv", ["face,text", "face.png,Hello there.", "face.png,Good morning."])
    rows = read_manifest(good, base, tmp_path / "o")
    audios = [r.config.audio for r in rows]
    assert all(a.is_file() and a.parent == tmp_path / "cache" / "speech" for a in audios) and audios[0] != audios[1]
    assert [r.config.out.name for r in rows] == [f"face_{a.stem[:10]}.mp4" for a in audios]
    assert rows[0].config.speech.text == "Hello there."
    assert [r.config.out for r in read_manifest(good, base, tmp_path / "o")] == [r.config.out for r in rows]
    mixed = write_csv(media / "mixed.csv", ["face,audio", "face.png,speech.wav", "face.png,"])
    with_audio, spoken = read_manifest(mixed, {**base, "text": "Said by every row without audio."}, tmp_path / "o")
    assert with_audio.config.audio == media / "speech.wav" and with_audio.config.speech.text == ""
    assert spoken.config.audio.parent == tmp_path / "cache" / "speech"


def test_folders_pair_by_name_then_by_number(tmp_path):
    faces, audios = tmp_path / "faces", tmp_path / "audios"
    faces.mkdir(), audios.mkdir()
    for name in ("intro.mp4", "clip_01.png", "clip_2.jpg", "lonely_7.png", "notes.txt"):
        (faces / name).write_bytes(b"x")
    for name in ("intro.wav", "line1.mp3", "take_02.wav", "line2.flac"):
        (audios / name).write_bytes(b"x")
    pairs, problems = pair_folders(faces, audios)
    assert {(f.name, a.name) for f, a in pairs} == {("intro.mp4", "intro.wav"), ("clip_01.png", "line1.mp3")}
    assert any("clip_2.jpg: 2 audios" in p for p in problems)
    assert any("lonely_7.png: no audio" in p for p in problems)
    one = audios / "intro.wav"
    pairs, problems = pair_folders(faces, one)
    assert not problems and {a for _, a in pairs} == {one} and len(pairs) == 4


def test_folder_batch_keeps_the_models_loaded(tmp_path, media, w2l_checkpoint, monkeypatch):
    from wav2lip_uhq.generators import Wav2LipGenerator

    faces, audios = tmp_path / "faces", tmp_path / "audios"
    faces.mkdir(), audios.mkdir()
    for n in (1, 2):
        shutil.copy(media / "face.png", faces / f"face{n}.png")
        shutil.copy(media / "speech.wav", audios / f"speech_{n}.wav")
    loads = []
    original = Wav2LipGenerator.load.__func__

    def counting(cls, *a, **k):
        loads.append(a[0])
        return original(cls, *a, **k)

    monkeypatch.setattr(Wav2LipGenerator, "load", classmethod(counting))
    from wav2lip_uhq.batch.progress import BatchProgress

    events, real = [], BatchProgress.__call__
    monkeypatch.setattr(BatchProgress, "__call__", lambda self, event: (events.append(event), real(self, event)))
    out_dir = tmp_path / "out"
    code = run_batch(["--faces", str(faces), "--audios", str(audios), "--out-dir", str(out_dir)], w2l_checkpoint,
                     tmp_path)
    assert code == 0
    assert sorted(p.name for p in out_dir.glob("*.mp4")) == ["face1_speech_1.mp4", "face2_speech_2.mp4"]
    assert len(loads) == 1, "the generator was loaded again for the second row"
    frames = [e for e in events if e[0] == "progress"]  # the frames bar follows each row in turn
    assert [e[1] for e in frames] == sorted(e[1] for e in frames) and {e[1] for e in frames} == {0, 1}
    assert [e[1].status for e in events if e[0] == "finished"] == ["done", "done"]
    assert summary_of(out_dir)["backend"] == "serial"


@pytest.mark.slow
def test_two_worker_processes_share_the_rows(tmp_path, media, w2l_checkpoint):
    manifest = write_csv(media / "rows.csv", ["face,audio,out"] + [f"face.png,speech.wav,r{i}.mp4" for i in range(3)])
    out_dir = tmp_path / "out"
    assert run_batch([str(manifest), "--out-dir", str(out_dir), "--workers", "2"], w2l_checkpoint, tmp_path) == 0
    summary = summary_of(out_dir)
    assert summary["backend"] == "workers:2" and summary["done"] == 3
    assert all((out_dir / f"r{i}.mp4").is_file() for i in range(3))
    assert all(r["worker_rss_mb"] > 50 and r["worker"].startswith("pid ") for r in summary["results"])


def test_batch_arguments_that_cannot_work_are_one_line(tmp_path, media, monkeypatch, capsys):
    import sys

    manifest = write_csv(media / "rows.csv", ["face,audio", "face.png,speech.wav"])
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["batch", str(manifest), "--ray", "auto", "--out-dir", str(tmp_path / "o")]) == 2
    assert 'pip install "wav2lip-uhq[ray]"' in capsys.readouterr().err
    assert main(["batch", str(manifest), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["batch", "--faces", str(media)]) == 2
    assert "--faces DIR and --audios DIR" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: manifest not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
