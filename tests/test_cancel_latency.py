"""Interrupt stops within one generator batch: the batch being generated is abandoned, not drained."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from test_pipeline_stages import _FakeGenerator

from wav2lip_uhq.config import EncodeSettings, FaceOptions, RunConfig
from wav2lip_uhq.errors import Cancelled
from wav2lip_uhq.pipeline import LipSyncPipeline


class _SlowGenerator(_FakeGenerator):
    """A generator whose second batch takes as long as the test wants (until ``release``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.second_started, self.release = threading.Event(), threading.Event()

    def generate(self, prepared, features):
        self.calls += 1
        if self.calls == 2:
            self.second_started.set()
            self.release.wait(60)
        return super().generate(prepared, features)


def test_cancel_stops_while_a_batch_is_being_generated(astronaut_png, speech_short, tmp_path):
    slow = _SlowGenerator()
    pipe = LipSyncPipeline("cpu", generator_factory=lambda config, device: slow)
    out = tmp_path / "never.mkv"
    config = RunConfig(face=astronaut_png, audio=speech_short, checkpoint=tmp_path / "none.pth", out=out,
                       mode="fast", faces=FaceOptions(box=(80, 200, 170, 280)), encode=EncodeSettings(lossless=True),
                       cache_dir=tmp_path / "c", batch_size=4)
    pressed: list[float] = []

    def cancel() -> bool:
        if slow.second_started.is_set() and not pressed:
            pressed.append(time.monotonic())  # Interrupt pressed while batch 2 is in the generator
        return bool(pressed)

    try:
        with pytest.raises(Cancelled):
            pipe.run(config, cancel=cancel)
        latency = time.monotonic() - pressed[0]
        assert not slow.release.is_set()  # the run ended while the generator was still busy
        assert latency < 1.0, f"{latency:.2f} s from Interrupt to stop"
        assert not out.exists() and not any(".partial" in p.name for p in tmp_path.iterdir())
    finally:
        slow.release.set()


def test_the_status_leaves_loading_when_the_loop_starts_and_counts_refined_crops(astronaut_png, speech_short,
                                                                                 tmp_path):
    from wav2lip_uhq.pipeline.stages import Refine

    log: list[tuple[str, int, int]] = []
    pipe = LipSyncPipeline("cpu", generator_factory=lambda config, device: _FakeGenerator())
    config = RunConfig(face=astronaut_png, audio=speech_short, checkpoint=tmp_path / "none.pth",
                       out=tmp_path / "o.mkv", mode="fast", faces=FaceOptions(box=(80, 200, 170, 280)),
                       encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=4)
    pipe.run(config, progress=lambda *a: log.append(a))
    stages = [s for s, _, _ in log]
    first = stages.index("loading models")
    assert log[first + 1][0] == "lip-sync" and log[first + 1][1] == 0  # before any batch is done

    class Session:  # two diffusion calls of two crops each
        def refine_patches(self, jobs, boxes, progress, cancel):
            for d in (2, 4):
                progress(d, 4)
            return [None] * len(jobs)

    class Item:
        alpha, roi, frame, index = np.zeros((2, 2)), (0, 0, 2, 2), np.zeros((2, 2, 3), np.uint8), 0
        placement = type("P", (), {"landmarks": None, "box": (0, 0, 2, 2)})()

        def apply(self, patch):
            assert patch is None

    seen = []
    Refine(Session(), lambda: False).process([Item()] * 4, lambda f, detail=None: seen.append((f, detail)))
    assert seen == [(0.0, "first crops"), (0.5, "crop 2/4"), (1.0, "crop 4/4")]
