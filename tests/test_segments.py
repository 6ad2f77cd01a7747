"""One long run split across workers: ``--segment`` gives the single run's frames, the join copies
packets (no re-encode) with the audio muxed once, and ``run --workers 2`` equals ``run`` (lossless)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest
from media_helpers import moving_face_frames, write_video

from wav2lip_uhq.batch import SerialBackend
from wav2lip_uhq.batch.segments import plan_segments, run_split
from wav2lip_uhq.cli import main
from wav2lip_uhq.config import FaceOptions, RunConfig
from wav2lip_uhq.errors import InputError
from wav2lip_uhq.options import OptionError, coerce, registry
from wav2lip_uhq.pipeline import LipSyncPipeline
from wav2lip_uhq.video import AudioTrack, EncodeSettings, VideoWriter, iter_frames, join_videos


def frames_of(path):
    return list(iter_frames(path))


def audio_of(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


def assert_same_frames(a, b):
    fa, fb = frames_of(a), frames_of(b)
    assert len(fa) == len(fb)
    different = [i for i, (x, y) in enumerate(zip(fa, fb)) if not np.array_equal(x, y)]
    assert not different, f"frames {different} differ"


@pytest.fixture(scope="module")
def long_face(tmp_path_factory):
    """40 frames of a moving face: longer than the 35 output frames of ``speech_short``."""
    frames, _ = moving_face_frames(40)
    return write_video(tmp_path_factory.mktemp("long") / "face.mkv", frames)


def base_config(face, audio, ckpt, tmp_path, **kw) -> RunConfig:
    return RunConfig(face=face, audio=audio, checkpoint=ckpt, faces=FaceOptions(detector="dlib"),
                     encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "cache", batch_size=8,
                     device="cpu", **kw)


def test_segment_range_is_validated_everywhere():
    opt = registry()["segment"]
    assert coerce(opt, "10:20") == (10, 20) and coerce(opt, [0, 5]) == (0, 5) and coerce(opt, None) is None
    for bad in ("20:10", "5:5", "-1:4", "abc", "1:2:3", [1]):
        with pytest.raises(OptionError, match="segment"):
            coerce(opt, bad)
    assert plan_segments(35, 2) == [(0, 18), (18, 35)]
    assert plan_segments(10, 4, min_frames=4) == [(0, 5), (5, 10)]  # no segment shorter than min_frames


def test_segments_of_a_looping_run_are_the_single_runs_frames(moving_face_video, speech_short, w2l_checkpoint,
                                                              tmp_path):
    """30 video frames for 35 output frames (the end loops), three segments whose edges are not on
    the generator's batches of 8: each frame as the single run writes it."""
    config = base_config(moving_face_video, speech_short, w2l_checkpoint, tmp_path, mode="feather")
    pipeline = LipSyncPipeline("cpu")
    whole = pipeline.run(dataclasses.replace(config, out=tmp_path / "whole.mkv"))
    split = run_split(dataclasses.replace(config, out=tmp_path / "split.mkv"),
                      SerialBackend(lambda c, progress: pipeline.run(c, progress)), 3)
    assert split.segments == [(0, 12), (12, 23), (23, 35)] and split.frames == whole.frames == 35
    assert_same_frames(tmp_path / "whole.mkv", tmp_path / "split.mkv")
    assert np.array_equal(audio_of(tmp_path / "whole.mkv"), audio_of(tmp_path / "split.mkv"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mkv") == ["split.mkv", "whole.mkv"]


def test_a_segment_is_video_only_and_refuses_what_cannot_be_split(moving_face_video, speech_short, w2l_checkpoint,
                                                                   tmp_path):
    config = base_config(moving_face_video, speech_short, w2l_checkpoint, tmp_path, mode="feather")
    pipeline = LipSyncPipeline("cpu")
    seg = dataclasses.replace(config, out=tmp_path / "seg.mkv",
                              frames=dataclasses.replace(config.frames, segment=(30, 1000)))
    result = pipeline.run(seg)
    assert result.frames == 5  # clipped to the run's 35 frames
    with av.open(str(tmp_path / "seg.mkv")) as c:
        assert not c.streams.audio and c.streams.video[0].frames in (0, 5)
    late = dataclasses.replace(seg, out=tmp_path / "late.mkv", frames=dataclasses.replace(config.frames,
                                                                                          segment=(35, 40)))
    with pytest.raises(InputError, match="outside the run's 35 output frames"):
        pipeline.run(late)
    with pytest.raises(InputError, match="--debug-video"):
        run_split(dataclasses.replace(config, out=tmp_path / "x.mkv", composite=dataclasses.replace(
            config.composite, debug_video=tmp_path / "dbg.mkv")), SerialBackend(), 2)
    assert not (tmp_path / "late.mkv").exists() and not (tmp_path / "x.mkv").exists()


@pytest.mark.parametrize("name,lossless", [("intra.mkv", True), ("h264.mp4", False)])
def test_decoding_from_a_frame_gives_the_frames_of_a_decode_from_the_start(tmp_path, name, lossless):
    """``iter_frames(start=k)`` (a segment's decode: a seek to the key frame before k where the
    timestamps say which frame k is) is frame k on of the whole decode."""
    frames, _ = moving_face_frames(40, step=1)
    video = write_video(tmp_path / name, frames, lossless=lossless)
    whole = frames_of(video)
    for k in (1, 17, 39):
        part = list(iter_frames(video, start=k))
        assert len(part) == 40 - k and all(np.array_equal(a, b) for a, b in zip(part, whole[k:]))
    assert len(list(iter_frames(video, start=17, limit=5))) == 5


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_h264_join_copies_packets_with_no_gap_or_duplicate_at_the_seam(tmp_path, suffix):
    """Two H.264 parts (B-frames, each from a key frame) joined: every frame once at a steady rate,
    the parts' packets byte for byte (no re-encode), the whole audio."""
    import skimage.data

    img = skimage.data.astronaut()[:, :, ::-1]
    frames = [np.ascontiguousarray(img[i * 2 : i * 2 + 128, i * 3 : i * 3 + 160]) for i in range(50)]
    parts = []
    for k, (a, b) in enumerate(((0, 23), (23, 50))):
        parts.append(tmp_path / f"part{k}.mp4")
        with VideoWriter(parts[-1], 160, 128, Fraction(25), None, EncodeSettings()) as w:
            for f in frames[a:b]:
                w.write(f)
    audio = AudioTrack(np.random.default_rng(0).standard_normal((1, 32000)).astype(np.float32) * 0.1, 16000)
    out = tmp_path / f"joined{suffix}"
    assert join_videos(parts, out, audio, EncodeSettings()) == 50
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        times = [f.time for f in c.decode(v)]
    assert len(times) == 50 and np.allclose(np.diff(times), 0.04, atol=1e-3) and abs(times[0]) < 1e-3
    packets = lambda p: [bytes(k) for k in av.open(str(p)).demux(video=0) if k.size]
    assert packets(out) == packets(parts[0]) + packets(parts[1])
    assert audio_of(out).shape[1] >= 32000
    decoded = frames_of(out)
    assert len(decoded) == 50 and np.abs(decoded[23].astype(int) - frames[23]).mean() < 8  # the seam's frame


@pytest.mark.slow
def test_run_on_two_workers_equals_one_run_lossless(long_face, speech_short, w2l_checkpoint, tmp_path, capsys):
    """``run --workers 2``: two processes, two segments; the joined lossless file is the single
    run's, frame for frame, with the same audio."""
    common = ["--face", str(long_face), "--audio", str(speech_short), "--checkpoint", str(w2l_checkpoint),
              "--mode", "improved", "--detector", "dlib", "--face-det-batch-size", "4", "--lossless", "--batch-size", "8",
              "--device", "cpu", "-q"]
    # each with its own cache: the segments detect and find landmarks themselves
    assert main(["run", *common, "--out", str(tmp_path / "one.mkv"), "--cache-dir", str(tmp_path / "c1")]) == 0
    assert main(["run", *common, "--out", str(tmp_path / "two.mkv"), "--cache-dir", str(tmp_path / "c2"),
                 "--workers", "2"]) == 0
    assert "35 frames at 25 fps in 2 segments" in capsys.readouterr().out
    assert_same_frames(tmp_path / "one.mkv", tmp_path / "two.mkv")
    assert np.array_equal(audio_of(tmp_path / "one.mkv"), audio_of(tmp_path / "two.mkv"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no segments or partials left
    assert not list((tmp_path / "c2").rglob("*.npz"))  # a segment's partial track is not cached as the video's
