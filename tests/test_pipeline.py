"""End-to-end runs of the pipeline on real media (CPU, offline)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from media_helpers import digest, moving_face_frames
from wav2lip_uhq.config import FaceOptions, FrameOptions, RunConfig
from wav2lip_uhq.pipeline import LipSyncPipeline, loop_index, run
from wav2lip_uhq.video import EncodeSettings, iter_frames, probe, read_audio_track


def _frames(path):
    return np.stack(list(iter_frames(path)))


@pytest.mark.parametrize("batch_size", [32, 3])
def test_fast_mode_reproduces_upstream_frames(reference, w2l_checkpoint, tmp_path, batch_size):
    """Batch 3: ten batches with the generator running one batch ahead; frames stay in order."""
    case = reference / "pipeline"
    out = tmp_path / "case1.mkv"
    result = run(
        RunConfig(
            face=case / "case1_face.avi",
            audio=case / "case1_audio.wav",
            checkpoint=w2l_checkpoint,
            out=out,
            mode="fast",
            faces=FaceOptions(box=(40, 140, 30, 130)),
            encode=EncodeSettings(lossless=True),
            cache_dir=tmp_path / "cache",
            batch_size=batch_size,
        )
    )
    golden = np.load(case / "case1_frames.npz")["frames"]
    ours = _frames(result.output)
    assert ours.shape == golden.shape  # 29 frames: the 20-frame video looped forward
    diff = np.abs(ours.astype(int) - golden.astype(int))
    assert (diff <= 1).mean() >= 0.999
    assert diff.max() <= 3


def test_real_photo_end_to_end(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    src_digest = digest(astronaut_png)
    progress = []
    result = run(
        RunConfig(
            face=astronaut_png,
            audio=speech_short,
            checkpoint=w2l_checkpoint,
            out=tmp_path / "talk.mkv",
            faces=FaceOptions(detector="dlib"),
            encode=EncodeSettings(lossless=True),
            cache_dir=tmp_path / "cache",
        ),
        progress=lambda stage, done, total: progress.append((stage, done, total)),
    )
    info = probe(result.output)
    assert (info.width, info.height) == (512, 512)
    audio_in = read_audio_track(speech_short).duration
    frames = _frames(result.output)
    assert abs(len(frames) / info.fps - audio_in) <= 1 / info.fps + 1e-6
    assert abs(read_audio_track(result.output).duration - audio_in) < 0.03
    assert result.frames_without_face == 0
    # Pixels outside the (padded) face box never change; inside, the mouth does.
    src = _frames(astronaut_png)[0]
    changed = np.any(frames != src[None], axis=(0, 3))
    ys, xs = np.nonzero(changed)
    assert changed.any()
    assert 150 <= xs.min() and xs.max() <= 300 and 60 <= ys.min() and ys.max() <= 200, (xs.min(), xs.max(), ys.min(), ys.max())
    assert ys.min() > 100, "the eyes/forehead were modified (feathered mode keeps the upper face)"
    assert digest(astronaut_png) == src_digest
    assert progress[-1][0] in ("encoding", "lip-sync") and progress[-1][1] == progress[-1][2]
    assert any(stage == "lip-sync" for stage, _, _ in progress)


def test_moving_face_is_tracked_and_detection_is_cached(moving_face_video, speech_short, w2l_checkpoint, tmp_path, monkeypatch):
    pipe = LipSyncPipeline("cpu")
    config = RunConfig(
        face=moving_face_video,
        audio=speech_short,
        checkpoint=w2l_checkpoint,
        out=tmp_path / "moving.mkv",
        faces=FaceOptions(detector="dlib"),
        encode=EncodeSettings(lossless=True),
        cache_dir=tmp_path / "cache",
    )
    first = pipe.run(config)
    assert not first.detection_cached
    src = _frames(moving_face_video)
    out = _frames(first.output)
    _, offsets = moving_face_frames()
    n = min(len(src), len(out))
    for i in (0, n // 2, n - 1):
        changed = np.any(out[i] != src[i], axis=2)
        ys, xs = np.nonzero(changed)
        oy, ox = offsets[i]
        # the astronaut's mouth sits near (oy + 150, ox + 105) in head coordinates
        cy, cx = ys.mean(), xs.mean()
        assert abs(cx - (ox + 105)) < 25 and abs(cy - (oy + 140)) < 35, (i, cx, cy, ox, oy)

    # Same video, new audio: no detection at all.
    calls = []
    det = pipe.models.detector(config, "cpu")
    monkeypatch.setattr(det, "detect", lambda frames: calls.append(len(frames)) or [])
    config.out = tmp_path / "moving2.mkv"
    second = pipe.run(config)
    assert second.detection_cached and calls == []
    np.testing.assert_array_equal(_frames(second.output), out)


def test_damaged_cache_is_rebuilt(moving_face_video, speech_short, w2l_checkpoint, tmp_path):
    config = RunConfig(
        face=moving_face_video, audio=speech_short, checkpoint=w2l_checkpoint, out=tmp_path / "a.mkv",
        faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "cache",
    )
    run(config)
    for entry in (tmp_path / "cache" / "detections").glob("*.npz"):
        entry.write_bytes(b"garbage")
    config.out = tmp_path / "b.mkv"
    result = run(config)
    assert not result.detection_cached
    np.testing.assert_array_equal(_frames(tmp_path / "a.mkv"), _frames(result.output))


def test_video_shorter_than_audio_loops_pingpong(moving_face_video, reference, w2l_checkpoint, tmp_path):
    result = run(
        RunConfig(
            face=moving_face_video, audio=reference / "speech_16k.wav", checkpoint=w2l_checkpoint,
            out=tmp_path / "pp.mkv", mode="fast", faces=FaceOptions(box=(60, 240, 100, 260)),
            frames=FrameOptions(loop="pingpong"), encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c",
        )
    )
    out = _frames(result.output)
    src = _frames(moving_face_video)
    assert len(out) == result.frames > len(src)
    for i in (5, 31, 45, 70):
        j = loop_index(i, len(src), "pingpong")
        outside = np.ones(src.shape[1:3], bool)
        outside[60:240, 100:260] = False
        np.testing.assert_array_equal(out[i][outside], src[j][outside])


def test_loop_index():
    assert [loop_index(i, 4, "forward") for i in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert [loop_index(i, 4, "pingpong") for i in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_frames_without_a_face_pass_through(speech_short, w2l_checkpoint, tmp_path):
    from media_helpers import write_video

    frames, _ = moving_face_frames(n=20)
    blank = [f if i % 4 else np.full_like(f, 90) for i, f in enumerate(frames)]  # every 4th frame: no face
    video = write_video(tmp_path / "gaps.mkv", blank)
    result = run(
        RunConfig(
            face=video, audio=speech_short, checkpoint=w2l_checkpoint, out=tmp_path / "o.mkv",
            faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c",
        )
    )
    out = _frames(result.output)
    src = _frames(video)
    faceless = [i for i in range(len(out)) if i % len(src) % 4 == 0]
    assert result.frames_without_face == len(faceless)
    for i in faceless:
        np.testing.assert_array_equal(out[i], src[i % len(src)])


def test_cancel_leaves_no_output(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    from wav2lip_uhq.errors import Cancelled

    out = tmp_path / "never.mp4"
    with pytest.raises(Cancelled):
        run(
            RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint, out=out,
                      faces=FaceOptions(box=(80, 200, 170, 280)), batch_size=4, cache_dir=tmp_path / "c"),
            cancel=lambda: True,
        )
    assert list(tmp_path.iterdir()) == [] or not any(p.suffix in (".mp4",) for p in tmp_path.iterdir())


def test_cancel_between_batches_stops_the_generator_worker(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    import threading

    from wav2lip_uhq.errors import Cancelled

    calls = []

    def cancel():  # cancel once a few batches have been handed to the generator
        calls.append(1)
        return len(calls) > 3

    out = tmp_path / "never.mp4"
    with pytest.raises(Cancelled):
        run(RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint, out=out,
                      faces=FaceOptions(box=(80, 200, 170, 280)), batch_size=2, cache_dir=tmp_path / "c"),
            cancel=cancel)
    assert not out.exists() and not any(".partial" in p.name for p in tmp_path.iterdir())
    deadline = time.monotonic() + 30  # an abandoned batch ends on its own: no worker is left behind
    while [t for t in threading.enumerate() if t.name.startswith("wav2lip-uhq-generator")]:
        assert time.monotonic() < deadline, "the generator worker did not end"
        time.sleep(0.01)


def test_h264_output_defaults(astronaut_png, speech_short, w2l_checkpoint, tmp_path, monkeypatch):
    import av

    monkeypatch.chdir(tmp_path)
    result = run(RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint,
                           faces=FaceOptions(box=(80, 200, 170, 280)), cache_dir=tmp_path / "c"))
    assert result.output.parent.name == "results" and result.output.suffix == ".mp4"
    with av.open(str(result.output)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac"
    again = run(RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint,
                          faces=FaceOptions(box=(80, 200, 170, 280)), cache_dir=tmp_path / "c"))
    assert again.output != result.output and result.output.exists()


def test_rotation_metadata_is_applied(tmp_path):
    """Phone videos store portrait frames as rotated landscape: frames come out upright, like FFmpeg shows them."""
    import subprocess

    import imageio_ffmpeg

    from media_helpers import write_video

    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:16, :32] = 255
    land = write_video(tmp_path / "land.mp4", [frame] * 3, lossless=False)
    rot = tmp_path / "rot.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-display_rotation:v:0", "90",
                    "-i", str(land), "-c", "copy", str(rot)], check=True)
    ours = next(iter_frames(rot))
    assert ours.shape[:2] == (96, 64)
    bright = np.argwhere(ours[:, :, 0] > 200).mean(0)
    assert bright[0] > 64 and bright[1] < 16  # the top-left block ends bottom-left after a 90 degree CCW turn
