"""The pipeline's parts: the model bank, the per-frame stages (which never write into their
inputs), preview == run, and the generator interface (a fake generator run end to end)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from wav2lip_uhq.compositing import MaskBlend, Placement
from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.faces.stream import FaceGeometry
from wav2lip_uhq.pipeline import LipSyncPipeline, ModelBank, loop_index
from wav2lip_uhq.pipeline.stages import Composite, FrameWork, Parse, Refine, Restore, Upscale
from wav2lip_uhq.video import EncodeSettings, iter_frames


def _frames(path):
    return np.stack(list(iter_frames(path)))


# -- the model bank ------------------------------------------------------------------------------
class _SignallingLock:
    """The bank's lock, reporting when a given thread has released it (it has then decided
    whether to build or to wait for the build in progress)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.watch: threading.Thread | None = None
        self.released = threading.Event()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
        if threading.current_thread() is self.watch:
            self.released.set()


def test_model_bank_builds_once_when_two_threads_ask_at_once():
    bank = ModelBank()
    lock = bank._lock = _SignallingLock()
    building, release = threading.Event(), threading.Event()
    builds, results = [], {}

    def build():
        builds.append(threading.current_thread().name)
        building.set()
        assert release.wait(10)
        return object()

    first = threading.Thread(target=lambda: results.setdefault("first", bank.get(("generator", "a"), build)))
    second = threading.Thread(target=lambda: results.setdefault("second", bank.get(("generator", "a"), build)))
    first.start()
    assert building.wait(10)  # the first build is under way
    lock.watch = second
    second.start()
    assert lock.released.wait(10)  # the second thread has looked the key up while it builds
    release.set()
    first.join(10)
    second.join(10)
    assert len(builds) == 1
    assert results["first"] is results["second"]
    assert bank.get(("generator", "a"), build) is results["first"] and len(builds) == 1


def test_model_bank_drops_failed_builds_and_replaces_a_kind():
    bank = ModelBank()

    def broken():
        raise OSError("disk on fire")

    with pytest.raises(OSError):
        bank.get(("parser", "p"), broken)
    assert bank.keys() == []
    model = bank.get(("parser", "p"), object)  # a later ask builds again
    other = bank.get(("parser", "q"), object)  # another file of the same kind replaces it
    assert bank.keys() == [("parser", "q")] and other is not model


# -- the stages never write into their inputs ---------------------------------------------------------
class _Upscaler:
    def upscale(self, images):
        return [cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for im in images]


class _Parser:
    """Everything is skin except the crop's right quarter (hair): the mask must drop it."""

    def parse(self, crops):
        out = []
        for c in crops:
            labels = np.ones(c.shape[:2], np.uint8)
            labels[:, 3 * c.shape[1] // 4 :] = 17
            out.append(labels)
        return out


class _Restorer:
    def restore(self, faces):
        return [np.ascontiguousarray(255 - f) for f in faces]


class _Backend:
    def __init__(self) -> None:
        from wav2lip_uhq.refine import RefineOptions

        self.options = RefineOptions(size=64, batch_size=4, sync_tolerance=None)

    def refine(self, batch):
        return [np.ascontiguousarray(255 - im) for im in batch.images]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def test_no_stage_writes_into_its_inputs():
    import skimage.data

    from wav2lip_uhq.refine import RefineSession

    rng = np.random.default_rng(0)
    source = _readonly(skimage.data.astronaut()[:, :, ::-1])
    box = (170, 90, 280, 210)
    items = []
    for i in range(3):
        geo = FaceGeometry(np.array(box, np.float32), None)
        item = FrameWork(i, source, 0, geo, placement=Placement.from_box(box, 96, None, i))
        item.generated = _readonly(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        items.append(item)
    given = [it.generated for it in items]
    compositor = MaskBlend()
    stages = [Upscale(_Upscaler()), Parse(_Parser(), compositor), Composite(compositor),
              Restore(_Restorer(), 0.5), Refine(RefineSession(_Backend()), lambda: False)]
    after = {}
    for stage in stages:
        before = [it.frame for it in items]
        stage.process(items, lambda fraction, detail=None: None)
        after[stage.name] = [it.frame.copy() for it in items]
        for it, frame in zip(items, before):
            if it.frame is not frame:  # a stage that changed pixels left the frame it read alone
                assert not np.shares_memory(it.frame, frame)
    original = skimage.data.astronaut()[:, :, ::-1]
    np.testing.assert_array_equal(source, original)
    assert not source.flags.writeable
    for it, g in zip(items, given):
        assert it.source is source and it.generated.shape == (192, 192, 3) and g.shape == (96, 96, 3)
        assert it.visible is not None and not it.visible[:, -3:].any()  # the "hair" is excluded
    # each pixel-changing stage changed the frame, inside the compositing region only
    x1, y1, x2, y2 = items[0].roi
    outside = np.ones(source.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    previous = source
    for name in ("compositing", "restoring", "refining"):
        frame = after[name][0]
        assert not np.array_equal(frame, previous), name
        np.testing.assert_array_equal(frame[outside], source[outside])
        previous = frame


def test_a_frame_record_copies_shared_frames_and_takes_over_handed_ones():
    from wav2lip_uhq.patches import Patch

    geo = FaceGeometry(np.array((0, 0, 4, 4), np.float32), None)
    patch = Patch((1, 1, 3, 3), np.full((2, 2, 3), 200, np.uint8))
    shared = _readonly(np.zeros((6, 6, 3), np.uint8))  # e.g. kept for the loops
    a = FrameWork(0, shared, 0, geo, keep_source=False)
    a.apply(patch)
    assert a.frame is not shared and not shared.any() and a.frame[1:3, 1:3].min() == 200
    handed = np.zeros((6, 6, 3), np.uint8)  # decoded for this output frame alone
    b = FrameWork(1, handed, 1, geo, keep_source=False)
    b.apply(patch)
    assert b.frame is handed and b.source is None  # no copy
    overlay = np.zeros((6, 6, 3), np.uint8)  # the debug overlay reads the original later
    c = FrameWork(2, overlay, 2, geo, keep_source=True)
    c.apply(patch)
    assert c.source is overlay and not overlay.any() and c.frame[1, 1, 0] == 200


# -- preview == run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gap_audio(tmp_path_factory, reference):
    """1 s of speech, 1 s of digital silence, 1 s of speech (75 frames at 25 fps)."""
    import soundfile as sf

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    path = tmp_path_factory.mktemp("gap") / "gap.wav"
    sf.write(path, np.concatenate([wav[:sr], np.zeros(sr, np.float32), wav[sr : 2 * sr]]), sr)
    return path


@pytest.mark.parametrize("silence", ["close", "off"])
def test_preview_frame_is_the_run_frame_on_a_looping_video(moving_face_video, gap_audio, w2l_checkpoint,
                                                            tmp_path, silence):
    """A 30-frame video under 75 frames of audio: output frames 35 and 60 come from looped
    source frames 5 and 0; 35 lies in the silent second (with close: the silent mel)."""
    pipe = LipSyncPipeline("cpu")
    config = RunConfig(face=moving_face_video, audio=gap_audio, checkpoint=w2l_checkpoint, out=tmp_path / "o.mkv",
                       mode="feather", faces=FaceOptions(box=(60, 240, 100, 260)),
                       composite=CompositeOptions(silence=silence), encode=EncodeSettings(lossless=True),
                       cache_dir=tmp_path / "c")
    result = pipe.run(config)
    out = _frames(result.output)
    assert len(out) == result.frames == 75 and loop_index(35, 30, "forward") == 5
    assert (result.silent_frames >= 20) == (silence == "close")
    for n in (10, 35, 60):
        frame, overlay = pipe.preview(config, frame_index=n)
        np.testing.assert_array_equal(frame, out[n])
        assert overlay.shape == frame.shape


def test_preview_frame_is_the_run_frame_with_landmarks_and_silence(astronaut_png, gap_audio, w2l_checkpoint,
                                                                   tmp_path):
    pipe = LipSyncPipeline("cpu")
    config = RunConfig(face=astronaut_png, audio=gap_audio, checkpoint=w2l_checkpoint, out=tmp_path / "o.mkv",
                       faces=FaceOptions(detector="dlib"), composite=CompositeOptions(silence="close"),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c")
    out = _frames(pipe.run(config).output)
    speaking, silent = pipe.preview(config, 12)[0], pipe.preview(config, 40)[0]
    np.testing.assert_array_equal(speaking, out[12])
    np.testing.assert_array_equal(silent, out[40])
    assert not np.array_equal(speaking, silent)


# -- the generator interface -----------------------------------------------------------------------
class _Energy:
    """One loudness value per output frame."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def take(self, indices: Sequence[int]) -> np.ndarray:
        return self.values[list(indices)]

    def silenced(self, silent: np.ndarray) -> _Energy:
        values = self.values.copy()
        values[silent] = 0.25  # a "closed mouth" level that no real frame of this clip has
        return _Energy(values)


class _FakeGenerator:
    """Paints a 32 px face whose brightness is the audio's loudness: a generator with its own
    frame count (floor(seconds * fps)), crop size and cached inputs."""

    img_size = 32
    reuse_prepared = True

    def __init__(self) -> None:
        self.prepared: list[int] = []
        self.threads: set[str] = set()

    def audio_features(self, wav, fps, cover):
        n = int(len(wav) / 16000 * fps)
        edges = (np.arange(n + 1) * 16000 / fps).astype(int)
        rms = np.array([np.sqrt(np.mean(wav[a:b] ** 2)) for a, b in itertools.pairwise(edges)])
        return _Energy(rms / rms.max())

    def placement(self, geometry, index, aligned, frame_size):
        return Placement.from_box(geometry.box, self.img_size, geometry.landmarks, index)

    def prepare(self, frame, placement):
        self.prepared.append(placement.index)
        return cv2.resize(frame[placement.box[1] : placement.box[3], placement.box[0] : placement.box[2]], (32, 32))

    def generate(self, prepared, features):
        self.threads.add(threading.current_thread().name)
        return np.stack([np.full_like(p, round(255 * float(f))) for p, f in zip(prepared, features)])


def test_a_generator_plugs_into_the_pipeline(astronaut_png, gap_audio, tmp_path):
    fake = _FakeGenerator()
    pipe = LipSyncPipeline("cpu", generator_factory=lambda config, device: fake)
    box = (80, 200, 170, 280)  # top, bottom, left, right
    config = RunConfig(face=astronaut_png, audio=gap_audio, checkpoint=tmp_path / "none.pth", out=tmp_path / "o.mkv",
                       mode="fast", faces=FaceOptions(box=box), composite=CompositeOptions(silence="close"),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=8)
    result = pipe.run(config)
    out = _frames(result.output)
    assert result.frames == len(out) == 75  # the generator's own frame count
    assert fake.prepared == [0]  # one still image: its input prepared once, reused for every frame
    assert fake.threads and all(t.startswith("wav2lip-uhq-generator") for t in fake.threads)
    src = _frames(astronaut_png)[0]
    inside = out[:, box[0] : box[1], box[2] : box[3]]
    outside = np.ones(src.shape[:2], bool)
    outside[box[0] : box[1], box[2] : box[3]] = False
    np.testing.assert_array_equal(out[:, outside], np.broadcast_to(src[outside], out[:, outside].shape))
    levels = inside.reshape(75, -1).mean(1)
    assert np.ptp(inside.reshape(75, -1), axis=1).max() == 0  # a flat face pasted over the whole box
    assert (levels[30:45] == 64).all()  # silent frames got the silenced features (0.25)
    assert levels[:20].max() > 100 and levels[55:].max() > 100
    frame, _ = pipe.preview(config, 12)
    np.testing.assert_array_equal(frame, out[12])
