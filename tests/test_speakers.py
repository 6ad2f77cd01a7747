"""Several speakers in one run and time ranges: each face moves only while its own voice speaks,
frames outside the ranges are the input's, the output audio is the mix (CPU, offline, small)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media_helpers import write_video
from test_pipeline_stages import _FakeGenerator

from wav2lip_uhq.cli import main
from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.errors import InputError
from wav2lip_uhq.pipeline import LipSyncPipeline, timeline
from wav2lip_uhq.speakers import RangeError, Speaker, TimeRange, parse_ranges, parse_speaker
from wav2lip_uhq.video import AudioTrack, EncodeSettings, iter_frames, read_audio_track

SR = 16000
BOX = (80, 200, 50, 150)  # top bottom left right: the astronaut's lower face in the 256 px crop


def _frames(path):
    return np.stack(list(iter_frames(path)))


def _noise(seconds: float, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-amp, amp, round(seconds * SR)).astype(np.float32)


def _wav(path, *parts):
    sf.write(path, np.concatenate(parts), SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """The astronaut's head twice, side by side, in one picture."""
    import cv2
    import skimage.data

    head = skimage.data.astronaut()[20:260, 120:330, ::-1]
    frame = np.full((260, 460, 3), 120, np.uint8)
    frame[10:250, 10:220], frame[10:250, 240:450] = head, head
    path = tmp_path_factory.mktemp("two") / "two.png"
    cv2.imwrite(str(path), frame)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """30 frames (1.2 s at 25 fps) of the astronaut, lossless, with a 440 Hz tone as its own audio."""
    import skimage.data

    frame = np.ascontiguousarray(skimage.data.astronaut()[0:256, 128:384, ::-1])
    t = np.arange(round(1.2 * SR)) / SR
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mkv", [frame] * 30, 25, AudioTrack(tone, SR))


def _pipe():
    return LipSyncPipeline("cpu", generator_factory=lambda config, device: _FakeGenerator())


def _changed(out, src, rows, cols):
    return np.array([np.any(o[rows, cols] != src[rows, cols]) for o in out])


def test_two_speakers_each_face_moves_with_its_own_voice(two_faces, tmp_path):
    a = _wav(tmp_path / "a.wav", _noise(1.0, seed=1), np.zeros(SR, np.float32))  # speaks first
    b = _wav(tmp_path / "b.wav", np.zeros(SR, np.float32), _noise(1.0, seed=2))  # then answers
    config = RunConfig(face=two_faces, audio=a, checkpoint=tmp_path / "none.pth", out=tmp_path / "o.mkv",
                       mode="fast", faces=FaceOptions(detector="dlib", face_index=0),
                       speakers=(Speaker(b, face_index=1),), composite=CompositeOptions(silence="keep"),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=8)
    result = _pipe().run(config)
    out, src = _frames(result.output), _frames(two_faces)[0]
    assert len(out) == 50 and result.frames_without_face == 0
    left, right = _changed(out, src, slice(None), slice(0, 230)), _changed(out, src, slice(None), slice(230, None))
    assert left[:22].all() and not left[28:].any()
    assert not right[:22].any() and right[28:].all()
    mix = read_audio_track(result.output).samples[0]
    want = sf.read(a, dtype="float32")[0] + sf.read(b, dtype="float32")[0]
    assert len(mix) == len(want) and np.abs(mix - want).max() < 1e-3  # the two voices, mixed
    assert any("speaker 2 (b.wav) moves face 1" in n for n in result.notes)
    assert not any("same face" in n for n in result.notes)


def test_a_speaker_whose_audio_ended_passes_through(two_faces, tmp_path):
    a = _wav(tmp_path / "a.wav", _noise(2.0, seed=1))
    b = _wav(tmp_path / "b.wav", _noise(1.0, seed=2))  # half as long: the output follows the longest
    config = RunConfig(face=two_faces, audio=a, checkpoint=tmp_path / "none.pth", out=tmp_path / "o.mkv",
                       mode="fast", faces=FaceOptions(detector="dlib", face_index=0),
                       speakers=(Speaker(b, face_index=1),), encode=EncodeSettings(lossless=True),
                       cache_dir=tmp_path / "c", batch_size=8)
    out, src = _frames(_pipe().run(config).output), _frames(two_faces)[0]
    right = _changed(out, src, slice(None), slice(230, None))
    assert len(out) == 50 and right[:24].all() and not right[26:].any()
    assert _changed(out, src, slice(None), slice(0, 230)).all()
    # "the largest" face is one of the two faces: both speakers on it is said, not silently done
    same = dataclasses.replace(config, faces=FaceOptions(detector="dlib"), speakers=(Speaker(b),),
                               out=tmp_path / "same.mkv")
    notes = _pipe().run(same).notes
    assert "speakers 1 and 2 follow the same face in most frames: give each its own face index" in notes


def test_a_mix_that_would_clip_is_scaled_down_and_said(tmp_path):
    loud = AudioTrack(np.full((1, SR), 0.8, np.float32), SR)
    voices = [timeline.Voice(n, n - 1, tmp_path / f"{n}.wav", loud, loud.samples[0]) for n in (1, 2)]
    shape = timeline.Plan(False, 0.0, 0.0, SR)
    track, notes = timeline.output_track(RunConfig(face=tmp_path / "f.png", audio=tmp_path / "1.wav"), None,
                                         voices, shape)
    assert np.abs(track.samples).max() <= 1.0 and np.allclose(track.samples, 1.0)
    assert notes and "scaled down by 4.1 dB" in notes[0]


def _ranged(clip, tmp_path, speech, ranges, **kw):
    config = RunConfig(face=clip, audio=speech, checkpoint=tmp_path / "none.pth", out=tmp_path / "r.mkv",
                       mode="fast", faces=FaceOptions(box=BOX), ranges=parse_ranges(ranges),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=8, **kw)
    result = _pipe().run(config)
    out, src = _frames(result.output), _frames(clip)
    return out, src, np.array([not np.array_equal(o, s) for o, s in zip(out, src)]), result


def test_a_range_lip_syncs_only_its_frames_and_keeps_the_video_audio_outside(clip, tmp_path):
    speech = _wav(tmp_path / "s.wav", _noise(2.0, seed=3))
    out, src, changed, _ = _ranged(clip, tmp_path, speech, "0.4-0.8@1")
    assert len(out) == len(src) == 30  # the video's own length, no loop
    assert changed[10:20].all() and not changed[:10].any() and not changed[20:].any()  # outside: bit-identical
    audio = read_audio_track(tmp_path / "r.mkv").samples[0]
    tone = read_audio_track(clip).samples[0]
    words = sf.read(speech, dtype="float32")[0]
    a, b = round(0.4 * SR), round(0.8 * SR)
    assert len(audio) == len(tone)
    assert np.abs(audio[:a] - tone[:a]).max() < 1e-3 and np.abs(audio[b:] - tone[b:]).max() < 1e-3
    assert np.abs(audio[a:b] - words[SR : SR + b - a]).max() < 1e-3  # the speech from its 1 s offset on


def test_the_delay_shifts_the_first_changed_frame(clip, tmp_path):
    speech = _wav(tmp_path / "s.wav", _noise(2.0, seed=3))
    _, _, changed, _ = _ranged(clip, tmp_path, speech, "0.4-", delay=0.2)
    assert np.flatnonzero(changed)[0] == 15 and changed[15:].all()


def test_speech_shorter_than_its_range_keeps_the_frames_after_it(clip, tmp_path):
    speech = _wav(tmp_path / "s.wav", _noise(0.2, seed=4))
    _, _, changed, _ = _ranged(clip, tmp_path, speech, "0.4-1.2", composite=CompositeOptions(silence="keep"))
    assert changed[10:15].all() and not changed[16:].any() and not changed[:10].any()


def test_time_and_speaker_syntax():
    assert parse_ranges("1:05-1:10.5@2, 0-3") == (TimeRange(0, 3), TimeRange(65, 70.5, 2))
    assert parse_ranges([{"start": 4, "end": None}]) == (TimeRange(4, None),)
    s = parse_speaker({"face_index": 1, "audio": "b.wav", "ranges": "0-2"})
    assert (s.face_index, s.ranges) == (1, (TimeRange(0, 2),))
    assert parse_speaker("-1:b.wav:1:00-1:02").ranges == (TimeRange(60, 62),)
    for bad, why in (("3-2", "ends before"), ("0-2,1-3", "overlap"), ("x-1", "not a time"), ("5", "START-END")):
        with pytest.raises(RangeError, match=why):
            parse_ranges(bad)


def _cli(tmp_path, face, *extra):
    audio = _wav(tmp_path / "s.wav", _noise(1.0))
    return main(["run", "--face", str(face), "--audio", str(audio), "--out", str(tmp_path / "o.mkv"), "--lossless",
                 "--no-download", *extra])


@pytest.mark.parametrize("args, message", [
    (["--range", "0.5-5"], "range 0.5-5 of speaker 1 is beyond the video's end (1.2 s)"),
    (["--range", "0-1,0.5-1.1"], "0-1 and 0.5-1.1 overlap"),
    (["--range", "0.2-0.4", "--delay", "0.5"], "no longer than the 0.5 s delay"),
    (["--speaker", "1:missing.wav"], "missing.wav: speaker 2's audio file not found"),
    (["--speaker", "x:missing.wav"], "face index 'x' is not a whole number"),
])
def test_bad_ranges_and_speakers_are_one_line_errors(clip, tmp_path, capsys, args, message):
    assert _cli(tmp_path, clip, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.mkv").exists()


def test_ranges_on_a_still_image_are_refused(astronaut_png, tmp_path, capsys):
    assert _cli(tmp_path, astronaut_png, "--range", "0-1") == 2
    assert "a still image has no time to choose ranges in" in capsys.readouterr().err


def test_the_cli_the_ui_and_the_api_read_speakers_and_ranges_alike(tmp_path):
    from wav2lip_uhq.api import ApiPolicy, parse_request
    from wav2lip_uhq.cli import build_parser
    from wav2lip_uhq.cli.arguments import config_from_args
    from wav2lip_uhq.ui import config_from_ui
    from wav2lip_uhq.ui_runner import UIRunner

    media = tmp_path / "media"
    media.mkdir()
    face, a, b = media / "face.png", media / "a.wav", media / "b.wav"
    for p in (face, a, b):
        p.write_bytes(b"x")
    cli = config_from_args(build_parser().parse_args(
        ["run", "--face", str(face), "--audio", str(a), "--range", "1-2", "--range", "3-@0:01.5", "--delay", "0.25",
         "--speaker", f"2:{b}:0-1"]))
    ui = config_from_ui({"face": str(face), "audio": str(a), "ranges": "1-2, 3-@1.5", "delay": 0.25,
                         "speaker2_audio": str(b), "speaker2_face": 2.0, "speaker2_ranges": "0-1"})
    policy = ApiPolicy(results_dir=tmp_path / "r", uploads_dir=tmp_path / "u", allowed_dirs=(media,))
    api = parse_request({"face": str(face), "audio": str(a), "settings": {
        "ranges": ["1-2", {"start": 3, "offset": 1.5}], "delay": 0.25,
        "speakers": [{"audio": str(b), "face_index": 2, "ranges": "0-1"}]}},
        policy, UIRunner(results_dir=tmp_path / "r"), "job", need_sd_checkpoint=False)
    for config in (cli, ui, api):
        assert config.ranges == (TimeRange(1, 2), TimeRange(3, None, 1.5)) and config.delay == 0.25
        assert config.speakers == (Speaker(b.resolve() if config is api else b, 2, (TimeRange(0, 1),)),)


def test_a_manifest_gives_speakers_and_ranges_relative_to_itself(tmp_path):
    from wav2lip_uhq.batch.manifest import read_manifest

    for name in ("face.png", "a.wav", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"x")
    manifest = tmp_path / "rows.csv"
    manifest.write_text('face,audio,ranges,delay,speakers\nface.png,a.wav,"0-1, 2-3@0.5",0.2,1:b.wav:0-1;2:c.wav\n')
    [row] = read_manifest(manifest, out_dir=tmp_path / "out")
    c = row.config
    assert c.ranges == (TimeRange(0, 1), TimeRange(2, 3, 0.5)) and c.delay == 0.2
    assert c.speakers == (Speaker(tmp_path / "b.wav", 1, (TimeRange(0, 1),)), Speaker(tmp_path / "c.wav", 2))
    manifest.write_text("face,audio,speakers\nface.png,a.wav,1:missing.wav\n")
    with pytest.raises(InputError, match="line 2: speaker 2's audio file not found"):
        read_manifest(manifest, out_dir=tmp_path / "out")


def test_library_values_are_normalised_and_a_fixed_box_is_one_face():
    c = RunConfig(face="f.mp4", audio="a.wav", ranges="1-2", speakers=[Speaker("b.wav", 1, "0-1")])
    assert c.ranges == (TimeRange(1, 2),) and c.speakers == (Speaker(Path("b.wav"), 1, (TimeRange(0, 1),)),)
    with pytest.raises(ValueError, match="a fixed face box is one face"):
        RunConfig(face="f.mp4", audio="a.wav", faces=FaceOptions(box=BOX), speakers=[Speaker("b.wav", 1)])
    with pytest.raises(ValueError, match="speaker 3 and speaker 2 both move face 1"):
        RunConfig(face="f.mp4", audio="a.wav", faces=FaceOptions(face_index=0),
                  speakers=[Speaker("b.wav", 1), Speaker("c.wav", 1)])


def test_voices_of_other_rates_and_channels_mix_at_the_first_voices_rate(tmp_path):
    first = AudioTrack(np.full((1, SR), 0.25, np.float32), SR)
    stereo = AudioTrack(np.stack([np.full(44100, 0.1), np.full(44100, -0.1)]).astype(np.float32), 44100)
    voices = [timeline.Voice(1, 0, tmp_path / "a.wav", first, first.samples[0]),
              timeline.Voice(2, 1, tmp_path / "b.wav", stereo, np.zeros(SR, np.float32))]
    track, notes = timeline.output_track(RunConfig(face="f.mp4", audio="a.wav"), None, voices,
                                         timeline.Plan(False, 0.0, 0.5, round(1.5 * SR)))
    assert track.sample_rate == SR and track.samples.shape == (2, round(1.5 * SR)) and notes == []
    d = SR // 2  # both voices start after the 0.5 s delay
    assert np.abs(track.samples[:, :d]).max() == 0
    middle = track.samples[:, d + 100 : d + SR - 100]  # away from the resampler's edges
    assert np.allclose(middle[0], 0.35, atol=2e-3) and np.allclose(middle[1], 0.15, atol=2e-3)


def test_a_click_picks_the_face_under_it_and_rows_become_speakers(tmp_path):
    from wav2lip_uhq.ui import UIInputError, config_from_ui
    from wav2lip_uhq.ui.values import face_at

    boxes = [(10, 10, 110, 130), (240, 10, 340, 130)]  # left to right
    assert face_at(boxes, 300, 60) == 1 and face_at(boxes, 20, 20) == 0
    assert face_at(boxes, 130, 60) == 0 and face_at(boxes, 220, 60) == 1  # beside a face: the nearest
    assert face_at(boxes, 600, 600) is None  # far from every face
    face, a, b = tmp_path / "f.png", tmp_path / "a.wav", tmp_path / "b.wav"
    for p in (face, a, b):
        p.write_bytes(b"x")
    values = {"face": str(face), "audio": str(a), "speaker3_audio": str(b), "speaker3_face": -1}
    assert config_from_ui(values).speakers == (Speaker(b, None),)  # an empty row 2 is skipped
    with pytest.raises(UIInputError, match="speaker 2's audio file not found"):
        config_from_ui({**values, "speaker2_audio": str(tmp_path / "gone.wav")})


def test_the_api_takes_speakers_audio_like_its_own_audio(tmp_path, speech_short, astronaut_png):
    import base64
    import shutil

    from wav2lip_uhq.api import ApiError, ApiPolicy, parse_request, probe_media
    from wav2lip_uhq.ui_runner import UIRunner

    media, outside = tmp_path / "media", tmp_path / "elsewhere"
    media.mkdir()
    outside.mkdir()
    face, speech = shutil.copy(astronaut_png, media / "face.png"), shutil.copy(speech_short, media / "a.wav")
    secret = _wav(outside / "secret.wav", _noise(0.5))
    policy = ApiPolicy(results_dir=tmp_path / "r", uploads_dir=tmp_path / "u", allowed_dirs=(media,))
    runner = UIRunner(results_dir=tmp_path / "r")

    def request(speakers, job="job"):
        return parse_request({"face": str(face), "audio": str(speech), "settings": {"speakers": speakers}},
                             policy, runner, job, need_sd_checkpoint=False)

    upload = {"base64": base64.b64encode(speech_short.read_bytes()).decode(), "name": "second.wav"}
    config = request([{"audio": upload, "face_index": 1, "ranges": "0-1"}])
    [s] = config.speakers
    assert s.audio.parent == tmp_path / "u" / "job" and s.audio.read_bytes() == speech_short.read_bytes()
    assert (s.face_index, s.ranges) == (1, (TimeRange(0, 1),))
    for speakers, status, why in (([{"audio": str(secret)}], 403, "outside the folders"),
                                  ([f"1:{speech}"], 422, "expected an object"),
                                  ([{"audio": str(speech), "face_index": "x"}], 422, "not a whole number"),
                                  ([{"audio": str(speech)}] * 5, 422, "at most 4")):
        with pytest.raises(ApiError, match=why) as err:
            request(speakers, "bad")
        assert err.value.status == status
        assert not (tmp_path / "u" / "bad").exists()  # a refused request leaves no upload behind
    with pytest.raises(ApiError, match="a still image has no time to choose ranges in") as err:
        probe_media(parse_request({"face": str(face), "audio": str(speech), "settings": {"ranges": "0-1"}},
                                  policy, runner, "j3", need_sd_checkpoint=False))
    assert err.value.status == 422
    (media / "b.wav").write_bytes(b"not audio")
    with pytest.raises(ApiError, match="speakers.0..audio: b.wav is not readable audio") as err:
        probe_media(request([{"audio": str(media / "b.wav")}], "j2"))
    assert err.value.status == 415


def test_two_speakers_with_the_real_generator_and_the_preview_agrees(two_faces, speech_short, w2l_checkpoint,
                                                                     tmp_path):
    """Two faces generated on two worker threads by one Wav2Lip model; the preview's frame is the run's."""
    b = _wav(tmp_path / "b.wav", sf.read(speech_short, dtype="float32")[0][SR // 2 :])
    pipe = LipSyncPipeline("cpu")
    config = RunConfig(face=two_faces, audio=speech_short, checkpoint=w2l_checkpoint, out=tmp_path / "o.mkv",
                       faces=FaceOptions(detector="dlib", face_index=0), speakers=(Speaker(b, face_index=1),),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=8)
    result = pipe.run(config)
    out, src = _frames(result.output), _frames(two_faces)[0]
    left, right = _changed(out, src, slice(None), slice(0, 230)), _changed(out, src, slice(None), slice(230, None))
    assert len(out) == 35 and left.all() and right[:20].all() and not right[26:].any()  # b is 0.9 s long
    frame, _ = pipe.preview(config, 5)
    np.testing.assert_array_equal(frame, out[5])


def test_a_stereo_video_keeps_its_stereo_sound_around_a_mono_voice(tmp_path):
    from wav2lip_uhq.video import probe

    frames = [np.full((64, 64, 3), 90, np.uint8)] * 25  # 1 s
    sound = np.stack([np.full(SR, 0.2), np.full(SR, -0.2)]).astype(np.float32)
    video = write_video(tmp_path / "v.mkv", frames, 25, AudioTrack(sound, SR))
    voice = AudioTrack(np.full((1, SR), 0.5, np.float32), SR)
    config = RunConfig(face=video, audio="a.wav", ranges="0.4-0.6")
    shape, voices = timeline.plan(config, probe(video), 25.0,
                                  [timeline.Voice(1, None, tmp_path / "a.wav", voice, voice.samples[0],
                                                  config.ranges)])
    track, _ = timeline.output_track(config, probe(video), voices, shape)
    a, b = round(0.4 * SR), round(0.6 * SR)
    assert track.samples.shape == (2, SR)
    assert np.allclose(track.samples[:, :a], [[0.2], [-0.2]], atol=1e-3)  # the video's own, both channels
    assert np.allclose(track.samples[:, a:b], 0.5, atol=1e-3)  # the voice on both
    assert np.allclose(track.samples[:, b:], [[0.2], [-0.2]], atol=1e-3)


def test_a_two_speaker_run_resumes_and_a_changed_second_voice_is_refused(two_faces, tmp_path):
    from wav2lip_uhq.errors import Cancelled

    a = _wav(tmp_path / "a.wav", _noise(1.0, seed=1), np.zeros(SR, np.float32))
    b = _wav(tmp_path / "b.wav", np.zeros(SR, np.float32), _noise(1.0, seed=2))
    config = RunConfig(face=two_faces, audio=a, checkpoint=tmp_path / "none.pth", out=tmp_path / "o.mkv",
                       mode="fast", faces=FaceOptions(detector="dlib", face_index=0),
                       speakers=(Speaker(b, face_index=1),), encode=EncodeSettings(lossless=True),
                       cache_dir=tmp_path / "c", batch_size=8, resume_every=0.4)  # parts of 10 frames
    whole = _pipe().run(dataclasses.replace(config, out=tmp_path / "whole.mkv", resume_every=0.0)).output
    stop = [False]

    def progress(stage, done, total):
        stop[0] = stop[0] or (stage == "lip-sync" and done >= 20)

    with pytest.raises(Cancelled):
        _pipe().run(config, progress, lambda: stop[0])
    resume = dataclasses.replace(config, resume=True)
    original = b.read_bytes()
    _wav(b, np.zeros(SR, np.float32), _noise(1.0, seed=3))  # the second voice's content changed
    with pytest.raises(InputError, match=r"b.wav: its content differs from the interrupted job's speaker 2 audio"):
        _pipe().run(resume)
    b.write_bytes(original)
    result = _pipe().run(resume)
    assert result.frames == 50
    assert all(np.array_equal(x, y) for x, y in zip(_frames(result.output), _frames(whole), strict=True))
    assert np.array_equal(read_audio_track(result.output).samples, read_audio_track(whole).samples)


def test_extra_outputs_of_a_two_speaker_run_show_the_last_speakers_stages(two_faces, tmp_path):
    a = _wav(tmp_path / "a.wav", _noise(1.0, seed=1), np.zeros(SR, np.float32))
    b = _wav(tmp_path / "b.wav", np.zeros(SR, np.float32), _noise(1.0, seed=2))
    config = RunConfig(face=two_faces, audio=a, checkpoint=tmp_path / "none.pth", out=tmp_path / "o.mkv",
                       mode="improved", faces=FaceOptions(detector="dlib", face_index=0),
                       speakers=(Speaker(b, face_index=1),), composite=CompositeOptions(silence="keep"),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=8,
                       extra_outputs=("raw", "mask_png"))
    result = _pipe().run(config)
    out, raw = _frames(result.output), _frames(result.extra_outputs["raw"])
    pngs = sorted(result.extra_outputs["mask_png"].glob("*.png"))
    assert len(out) == len(raw) == len(pngs) == 50
    import cv2

    alpha = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[..., 3] for p in pngs])
    assert not alpha[:22].any() and alpha[28:, :, 230:].any() and not alpha[:, :, :230].any()  # speaker 2's mask
    # raw: speaker 2's generated face hard-pasted on top of speaker 1's finished face
    assert all(np.array_equal(r[:, :230], o[:, :230]) for r, o in zip(raw, out))
    assert any(not np.array_equal(r[:, 230:], o[:, 230:]) for r, o in zip(raw[28:], out[28:]))
