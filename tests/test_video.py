"""Media I/O: output containers and codecs, exact colour, odd frame sizes, variable frame rates."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from wav2lip_uhq.errors import OutputError
from wav2lip_uhq.video import (
    AudioTrack,
    EncodeSettings,
    VideoWriter,
    check_output_path,
    iter_frames,
    probe,
)

SR = 16_000


def _tone(seconds: float, sr: int = SR) -> AudioTrack:
    t = np.arange(int(seconds * sr)) / sr
    return AudioTrack((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), sr)


def _write(path: Path, frames: list[np.ndarray], fps: int = 25, audio=None, **settings) -> VideoWriter:
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, Fraction(fps), audio, EncodeSettings(**settings)) as writer:
        for f in frames:
            writer.write(f.copy())
    return writer


def _streams(path: Path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], (c.streams.audio[0] if c.streams.audio else None)
        return (
            v.codec_context.name,
            a.codec_context.name if a is not None else None,
            v.codec_context.colorspace,
            v.codec_context.color_range,
            float(v.duration * v.time_base) if v.duration else None,
            float(a.duration * a.time_base) if a is not None and a.duration else None,
        )


# ---------------------------------------------------------------- output names, before any work


@pytest.mark.parametrize("name", ["out.avi", "out.gif", "out.flv", "out"])
def test_unsupported_outputs_are_refused_up_front_with_the_list(tmp_path, name):
    with pytest.raises(OutputError) as err:
        check_output_path(tmp_path / name)
    msg = str(err.value)
    assert str(tmp_path / name) in msg and ".mp4" in msg and ".webm" in msg and "\n" not in msg
    with pytest.raises(OutputError):  # the writer applies the same rule
        VideoWriter(tmp_path / name, 32, 32, Fraction(25), None)
    assert not list(tmp_path.iterdir()), "a refused output left a file behind"


def test_lossless_needs_mkv_and_known_names_map_to_their_codecs(tmp_path):
    with pytest.raises(OutputError, match=r"out\.mp4.*\.mkv"):
        check_output_path(tmp_path / "out.mp4", lossless=True)
    assert check_output_path(tmp_path / "o.mkv", lossless=True).video_codec == "ffv1"
    assert check_output_path(tmp_path / "o.MP4").video_codec == "libx264"
    assert (
        check_output_path(tmp_path / "o.webm").video_codec,
        check_output_path(tmp_path / "o.webm").audio_codec,
    ) == (
        "libvpx-vp9",
        "libopus",
    )


def test_webm_is_vp9_opus_with_the_exact_odd_size_and_audio_in_time(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (27, 33, 3), np.uint8) for _ in range(25)]
    out = _write(tmp_path / "o.webm", frames, audio=_tone(1.0)).path
    vcodec, acodec, *_ = _streams(out)
    assert (vcodec, acodec) == ("vp9", "opus")
    info = probe(out)
    assert (info.width, info.height) == (33, 27)
    assert len(list(iter_frames(out))) == 25
    with av.open(str(out)) as c:
        audio_end = max(
            float(p.pts + p.duration) * float(p.time_base) for p in c.demux(audio=0) if p.pts is not None
        )
    assert abs(audio_end - 1.0) < 0.03, f"audio ends at {audio_end:.3f} s for 1 s of video"


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_h264_audio_ends_with_the_video(tmp_path, suffix):
    frames = [np.full((32, 32, 3), 90, np.uint8)] * 25
    out = _write(tmp_path / f"o{suffix}", frames, audio=_tone(1.0)).path
    with av.open(str(out)) as c:
        audio_end = max(
            float(p.pts + p.duration) * float(p.time_base) for p in c.demux(audio=0) if p.pts is not None
        )
    assert abs(audio_end - 1.0) < 0.03


# ---------------------------------------------------------------- colour


@pytest.mark.parametrize("size", [(64, 48), (1280, 720)])
def test_flat_colours_survive_an_h264_encode(tmp_path, size):
    w, h = size
    colours = [(128, 128, 128), (30, 60, 200), (200, 180, 150), (16, 16, 16), (240, 240, 240), (77, 140, 33)]
    frames = [np.full((h, w, 3), c, np.uint8) for c in colours]
    out = _write(tmp_path / "flat.mp4", frames).path
    back = list(iter_frames(out))
    assert len(back) == len(frames)
    for f, b in zip(frames, back):
        assert np.abs(b.astype(int) - f).max() <= 1, f"{f[0, 0]} came back as {b[h // 2, w // 2]}"
    grey = np.abs(back[0].astype(int) - 128)
    assert grey.max() == 0, "flat grey 128 must come back exactly"
    _, _, colorspace, colour_range, *_ = _streams(out)
    assert colour_range == 1, "the range (limited) must be tagged"
    assert colorspace == (1 if h >= 720 else 6), "BT.709 for HD, BT.601 (SMPTE 170M) for SD, tagged"


def test_a_photo_has_no_colour_bias_after_an_h264_encode(tmp_path):
    import cv2
    import skimage.data

    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[:256, :256].copy()
    out = _write(tmp_path / "photo.mp4", [img] * 3).path
    back = next(iter(iter_frames(out))).astype(int)
    bias = (back - img).reshape(-1, 3).mean(axis=0)
    assert np.abs(bias).max() < 0.3, f"mean shift per channel (B, G, R): {bias.round(2)}"


# ---------------------------------------------------------------- frame sizes


def test_odd_size_h264_is_padded_by_the_edge_and_says_so(tmp_path, caplog):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (27, 33, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="wav2lip_uhq.video"):
        writer = _write(tmp_path / "odd.mp4", [frame] * 3, crf=0)
    assert writer.padded and (writer.width, writer.height) == (34, 28)
    assert any("33x27 is written as 34x28" in r.getMessage() for r in caplog.records)
    info = probe(writer.path)
    assert (info.width, info.height) == (34, 28)


def test_lossless_keeps_an_odd_size_bit_exact(tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (27, 33, 3), np.uint8) for _ in range(3)]
    writer = _write(tmp_path / "odd.mkv", frames, lossless=True)
    assert not writer.padded
    back = list(iter_frames(writer.path))
    assert all(np.array_equal(a, b) for a, b in zip(frames, back))


# ---------------------------------------------------------------- variable frame rate


def _write_timed(path: Path, times_ms: list[int], size=(32, 24)) -> Path:
    """A lossless Matroska clip whose frame k (blue channel = k) starts at ``times_ms[k]``."""
    w, h = size
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "bgr0"
        s.codec_context.time_base = Fraction(1, 1000)
        for k, t in enumerate(times_ms):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = k
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:  # the clip really has these timestamps
        got = sorted(p.pts for p in c.demux(video=0) if p.pts is not None)
    assert got == times_ms
    return path


def test_variable_frame_rate_is_read_on_a_constant_grid_by_timestamp(tmp_path):
    # 1 s at 30 fps, then 1 s at 10 fps (a phone slowing down in the dark)
    times = [round(1000 * k / 30) for k in range(30)] + [1000 + 100 * k for k in range(10)]
    clip = _write_timed(tmp_path / "vfr.mkv", times)
    info = probe(clip)
    assert info.is_vfr and info.frame_rate == 30 and info.fps == 30.0
    assert info.frame_count == 60 and abs(info.duration - 2.0) < 0.04
    got = [int(f[0, 0, 0]) for f in iter_frames(clip)]
    # output frame i shows the input frame on screen at (i + 0.5) / 30
    want = [max(k for k, t in enumerate(times) if t <= 1000 * (i + 0.5) / 30) for i in range(60)]
    assert got == want
    assert got[:30] == list(range(30)) and got[30:33] == [30, 30, 30], "the 10 fps part is held 3 frames"
    assert [int(f[0, 0, 0]) for f in iter_frames(clip, limit=35)] == want[:35]


def test_constant_rate_with_rounded_timestamps_is_not_resampled(tmp_path):
    times = [round(1000 * k / 30) for k in range(45)]  # Matroska's milliseconds: 33/34 ms steps
    clip = _write_timed(tmp_path / "cfr.mkv", times)
    info = probe(clip)
    assert not info.is_vfr and info.frame_rate == 30
    assert [int(f[0, 0, 0]) for f in iter_frames(clip)] == list(range(45))


def test_a_forced_rate_drops_frames_by_timestamp(tmp_path):
    clip = _write_timed(tmp_path / "60.mkv", [round(1000 * k / 60) for k in range(60)])
    got = [int(f[0, 0, 0]) for f in iter_frames(clip, rate=Fraction(30))]
    assert len(got) == 30
    assert all(abs(g - 2 * i) <= 1 for i, g in enumerate(got)), got


@pytest.mark.parametrize(
    "size,matrix,colour_range",
    [
        ((64, 48), "itu601", "MPEG"),
        ((64, 48), "itu709", "MPEG"),
        ((33, 27), "itu601", "MPEG"),
        ((64, 48), "itu709", "JPEG"),
    ],
)
def test_fast_yuv_decode_is_as_faithful_as_swscales_accurate_path(size, matrix, colour_range):
    import cv2
    import skimage.data
    from av.video.reformatter import Interpolation

    from wav2lip_uhq.video import _to_bgr

    w, h = size
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[100 : 100 + h, 180 : 180 + w].copy()
    yuv = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(
        format="yuv420p",
        dst_colorspace=matrix,
        dst_color_range=colour_range,
        interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND,
    )
    accurate = (
        yuv.to_ndarray(
            format="bgr24",
            interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT,
        ).astype(int)
        - img
    )
    ours = _to_bgr(yuv).astype(int) - img
    assert np.abs(ours).mean() < np.abs(accurate).mean() + 0.15, "less faithful than swscale's accurate path"
    bias, reference = ours.mean(axis=(0, 1)), accurate.mean(axis=(0, 1))
    assert np.abs(bias - reference).max() < 0.2, (
        f"colour bias {bias.round(2)} vs swscale's {reference.round(2)}"
    )
    if colour_range == "MPEG":  # what we write: no bias at all
        assert np.abs(bias).max() < 0.2, f"colour bias {bias.round(2)}"


def test_a_variable_rate_clip_keeps_its_timing_through_a_run(tmp_path, w2l_checkpoint, speech_short):
    """Output frame i (outside the face box, untouched) is the input frame on screen at (i + 0.5) / 30."""
    from wav2lip_uhq.config import FaceOptions, RunConfig
    from wav2lip_uhq.pipeline import run

    times = [round(1000 * k / 30) for k in range(30)] + [1000 + 100 * k for k in range(10)]
    clip = _write_timed(tmp_path / "vfr.mkv", times, size=(160, 160))
    result = run(
        RunConfig(
            face=clip,
            audio=speech_short,
            checkpoint=w2l_checkpoint,
            out=tmp_path / "out.mkv",
            mode="fast",
            faces=FaceOptions(box=(40, 140, 30, 130)),
            encode=EncodeSettings(lossless=True),
            cache_dir=tmp_path / "cache",
        )
    )
    assert result.fps == 30.0 and probe(result.output).frame_rate == 30
    got = [int(f[0, 0, 0]) for f in iter_frames(result.output)]  # the corner is outside the box
    want = [max(k for k, t in enumerate(times) if t <= 1000 * (i + 0.5) / 30) for i in range(len(got))]
    assert len(got) == result.frames and len(got) > 33, "1.4 s of speech at 30 fps reaches the 10 fps part"
    assert got == want
