"""MuseTalk through the pipeline on tiny networks: ``fast`` is MuseTalk's reference behaviour
(its box, crop, frame count and forward-then-backward cycle, a rectangle pasted back), a frame
without a face passes through without shifting the audio, and a second run with new audio
reuses every source frame's latents (CPU, offline)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media_helpers import moving_face_frames, write_video
from musetalk_helpers import write_folder

from wav2lip_uhq.config import FaceOptions, RunConfig
from wav2lip_uhq.generators.musetalk import EXTRA_MARGIN, MuseTalkGenerator, musetalk_box
from wav2lip_uhq.models import musetalk as mt
from wav2lip_uhq.pipeline import LipSyncPipeline, loop_index
from wav2lip_uhq.pipeline.audio_prep import read_speech
from wav2lip_uhq.video import EncodeSettings, iter_frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("mtp") / "models")


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    frames, _ = moving_face_frames(n=6, size=280, step=4)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mkv", frames), frames


@pytest.fixture(scope="module")
def speech_short(tmp_path_factory, reference):
    """0.6 s of the real speech (15 frames at 25 fps: a 6-frame clip's whole mirror cycle and more)."""
    import soundfile as sf

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "speech_06.wav"
    sf.write(path, wav[sr : int(1.6 * sr)], sr)
    return path


def _config(face, audio, ckpt, tmp_path, **kw):
    return RunConfig(face=face, audio=audio, checkpoint=ckpt, out=tmp_path / kw.pop("name", "out.mkv"),
                     encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "cache", **kw)


def test_mirror_cycle_is_musetalks():
    # MuseTalk cycles frames + frames[::-1]: both ends twice
    assert [loop_index(i, 3, "mirror") for i in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1]


def test_fast_mode_is_musetalks_reference_behaviour(folder, short_clip, speech_short, tmp_path):
    face, frames = short_clip
    top, bottom, left, right = 30, 200, 40, 220
    result = LipSyncPipeline("cpu").run(_config(face, speech_short, folder, tmp_path, mode="fast",
                                                faces=FaceOptions(box=(top, bottom, left, right))))
    _, wav = read_speech(speech_short)
    assert result.frames == int(len(wav) / 16000 * 25)  # MuseTalk's floor(seconds x fps)
    out = np.stack(list(iter_frames(result.output)))
    assert len(out) == result.frames

    gen = MuseTalkGenerator.load(folder, "cpu", fast=True, fixed_box=True)
    prompts = gen.audio_features(wav, 25.0, cover=False)
    check = [0, 5, 6, 11, 12, result.frames - 1]  # forward, the turn, backward, the next cycle
    srcs = [frames[loop_index(i, len(frames), "mirror")] for i in check]
    crops = np.stack([cv2.resize(s[top:bottom, left:right], (256, 256), interpolation=cv2.INTER_LANCZOS4)
                      for s in srcs])
    faces = mt.generate_faces(gen.nets, mt.encode_faces(gen.nets, crops), prompts.take(check))
    for i, src, face_i in zip(check, srcs, faces):
        want = src.copy()
        want[top:bottom, left:right] = cv2.resize(face_i, (right - left, bottom - top))
        assert np.abs(out[i].astype(int) - want.astype(int)).max() <= 2, i


class _Spy:
    """A MuseTalk generator that records what each generate call got."""

    def __init__(self, gen):
        self.gen, self.calls = gen, []
        self.img_size, self.reuse_prepared = gen.img_size, gen.reuse_prepared

    def audio_features(self, wav, fps, cover):
        self.features = self.gen.audio_features(wav, fps, cover)
        return self.features

    def placement(self, geometry, index, aligned, frame_size):
        p = self.gen.placement(geometry, index, aligned, frame_size)
        self.calls.append((index, geometry.landmarks, tuple(p.box)))
        return p

    def prepare(self, frame, placement):
        return self.gen.prepare(frame, placement)

    def generate(self, prepared, features):
        self.got = getattr(self, "got", []) + [features]
        return self.gen.generate(prepared, features)


def test_a_frame_without_a_face_passes_through_without_shifting_the_audio(folder, speech_short, tmp_path):
    import skimage.data

    face = cv2.resize(skimage.data.astronaut()[:, :, ::-1], (256, 256))
    frames = [np.roll(face, i, axis=1) for i in range(7)]
    frames[3] = np.full_like(face, 90)  # no face here
    clip = write_video(tmp_path / "gap.mkv", frames)
    spy = _Spy(MuseTalkGenerator.load(folder, "cpu", fast=True))
    config = _config(clip, speech_short, folder, tmp_path, mode="fast", faces=FaceOptions(detector="dlib"))
    result = LipSyncPipeline("cpu", generator_factory=lambda c, d: spy).run(config)
    out = np.stack(list(iter_frames(result.output)))
    assert result.frames_without_face >= 1
    np.testing.assert_array_equal(out[3], frames[3])  # passed through unchanged
    indices = [i for i, _, _ in spy.calls]
    assert 3 not in indices and indices == sorted(indices)
    # every frame's prompt is its own output index's, also after the gap
    np.testing.assert_array_equal(np.concatenate(spy.got), spy.features.take(indices))
    for i, lms, box in spy.calls:  # MuseTalk's box from the (smoothed) landmarks, extended below
        x1, y1, x2, y2 = musetalk_box(lms, box)
        assert box == (x1, y1, x2, min(y2 + EXTRA_MARGIN, 256))


def test_a_second_run_with_new_audio_reuses_the_latents(folder, short_clip, speech_short, tmp_path,
                                                        monkeypatch, reference):
    face, _ = short_clip
    encoded = []
    real = mt.encode_faces
    monkeypatch.setattr(mt, "encode_faces", lambda nets, crops: encoded.append(len(crops)) or real(nets, crops))
    box = FaceOptions(box=(30, 200, 40, 220))
    first = LipSyncPipeline("cpu").run(_config(face, speech_short, folder, tmp_path, mode="feather", faces=box))
    assert sum(encoded) == 6  # one encode per source frame, whatever the number of output frames
    _, wav = read_speech(speech_short)
    assert first.frames == int(np.ceil(len(wav) / 16000 * 25 - 1e-6))  # the whole audio is covered
    encoded.clear()
    # a fresh pipeline (nothing in memory), other audio: the latents come from the cache folder
    import soundfile as sf

    wav2, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    sf.write(tmp_path / "other.wav", wav2[3 * sr : int(3.5 * sr)], sr)
    LipSyncPipeline("cpu").run(_config(face, tmp_path / "other.wav", folder, tmp_path, mode="feather",
                                       faces=box, name="second.mkv"))
    assert encoded == []


class _Labels:
    """A parser that answers a fixed label map (at the size it is asked)."""

    def __init__(self, labels):
        self.labels = labels

    def parse(self, crops):
        return [cv2.resize(self.labels, crops[0].shape[1::-1], interpolation=cv2.INTER_NEAREST)]


def test_musetalks_parsing_blend_keeps_the_lower_face_without_the_nose():
    from wav2lip_uhq.compositing import Placement
    from wav2lip_uhq.generators.musetalk import ParsingBlend, jaw_mask

    labels = np.zeros((512, 512), np.uint8)
    labels[100:420, 120:392] = 1  # skin
    labels[200:300, 236:276] = 10  # nose
    labels[330:360, 200:312] = 12  # lips
    mask = jaw_mask(labels)
    assert mask[250, 256] == 0 and mask[345, 256] == 255  # nose out, lips in
    assert mask[430, 256] == 255  # the jaw grows downwards (centre band: not eroded)
    assert mask[60, 256] == 0  # but not upwards

    frame = np.full((400, 400, 3), 50, np.uint8)
    placement = Placement.from_box((100, 100, 300, 300), 256)
    done = ParsingBlend(_Labels(labels)).blend(frame, np.full((256, 256, 3), 200, np.uint8), placement)
    x1, y1, x2, y2 = done.roi
    assert (x1, y1, x2, y2) == (50, 50, 350, 350)  # the square crop 1.5x the box
    alpha = done.alpha
    assert alpha[: 200 - y1 - 5].max() == 0  # nothing above the box's lower half
    assert alpha[: , : 100 - x1 - 5].max() == 0  # nothing outside the box
    assert alpha.max() > 0.99
    out = frame.copy()
    done.patch.apply(out)
    assert out[0:50].max() == 50 and out[252, 200].tolist() == [200, 200, 200]  # the lips


def test_the_parsing_blend_option_replaces_our_masks(folder, tmp_path):
    import torch

    from wav2lip_uhq.config import CompositeOptions
    from wav2lip_uhq.generators.musetalk import ParsingBlend
    from wav2lip_uhq.parsing import BiSeNet

    parser = tmp_path / "79999_iter.pth"
    torch.save(BiSeNet().state_dict(), parser)
    config = _config(tmp_path / "f.png", tmp_path / "a.wav", folder, tmp_path, mode="improved",
                     composite=CompositeOptions(parser=parser, musetalk_blend="parsing"))
    stages = LipSyncPipeline("cpu")._stages(config, "cpu", lambda: False)
    assert [s.name for s in stages] == ["compositing"] and isinstance(stages[0].compositor, ParsingBlend)
    config.composite.musetalk_blend = "masks"
    assert [s.name for s in LipSyncPipeline("cpu")._stages(config, "cpu", lambda: False)] == ["parsing",
                                                                                               "compositing"]


def test_a_box_past_the_frame_is_clipped_as_musetalk_clips_it_and_prepare_only_reads(folder):
    import copy

    from wav2lip_uhq.faces.stream import FaceGeometry

    gen = MuseTalkGenerator.load(folder, "cpu")
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), np.uint8)
    lms = np.zeros((68, 2), np.float32)
    lms[:, 0], lms[:, 1] = np.linspace(20, 140, 68), np.linspace(40, 115, 68)
    lms[29] = (80, 70)
    geometry = FaceGeometry(np.array([20, 30, 140, 118], np.float32), lms)
    taller = gen.placement(geometry, 0, False, (160, 200))
    assert taller.box == (20, 25, 140, 115 + EXTRA_MARGIN)
    gen.prepare(frame, taller)  # even a placement made for another frame size is not refitted
    assert taller.box == (20, 25, 140, 115 + EXTRA_MARGIN)
    placement = gen.placement(geometry, 0, False, (160, 120))
    assert placement.box == (20, 25, 140, 120)  # y2 = 125 clipped to the frame (MuseTalk's min(y2, height))
    before, pixels = copy.deepcopy(placement), frame.copy()
    prepared = gen.prepare(frame, placement)
    # prepare reads the placement and the frame, writes neither (no stage changes another's input)
    assert placement.box == before.box
    np.testing.assert_array_equal(placement.matrix, before.matrix)
    np.testing.assert_array_equal(frame, pixels)
    want = cv2.resize(frame[25:120, 20:140], (256, 256), interpolation=cv2.INTER_LANCZOS4)
    np.testing.assert_array_equal(prepared.crop, want)
