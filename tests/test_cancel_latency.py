"""Interrupt stops within one generator batch: the batch being generated is abandoned, not drained."""

from __future__ import annotations

import threading
import time

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
