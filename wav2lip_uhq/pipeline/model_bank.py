"""The model bank: models loaded once and kept between runs (the UI reuses one pipeline).

One instance per kind of model (generator, detector, landmarks, parser, restorer, upscaler,
refiner); a new file or setting replaces the old one. Two threads asking for the same key at
once (the generator's background load and the main path, or two UI jobs) get one build: the
second waits for the first's result instead of loading the model again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..checkpoints import resolve_checkpoint
from ..config import RunConfig
from ..devices import resolve_precision
from ..faces import create_detector
from ..faces.landmarks import create_landmark_detector
from ..generators import Generator, Wav2LipGenerator
from ..model_needs import LANDMARK_MODES, landmark_backend

T = TypeVar("T")


def for_run(generator: Generator, config: RunConfig) -> Generator:
    """A generator with one run's settings, where it has any (MuseTalk: ``fast`` is its own
    reference behaviour, ``--box`` is the crop, latents cached in the cache folder)."""
    view = getattr(generator, "for_run", None)
    if view is None:
        return generator
    from ..cache import default_cache_dir

    return view(fast=config.mode == "fast", fixed_box=config.faces.box is not None,
                cache_dir=config.cache_dir or default_cache_dir())


class ModelBank:
    """Keyed store of loaded models; ``key[0]`` is the kind."""

    def __init__(self) -> None:
        self._entries: dict[tuple, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], T]) -> T:
        """The model for ``key``, built by ``build`` on first use (once, whoever asks)."""
        with self._lock:
            for k in [k for k in self._entries if k[0] == key[0] and k != key]:
                del self._entries[k]
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = Future()
        if not owner:
            return entry.result()
        try:
            model = build()
        except BaseException as exc:  # a failed build is not kept: the next ask tries again
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            entry.set_exception(exc)
            raise
        entry.set_result(model)
        return model

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)


class PipelineModels:
    """Which model a run's settings ask for, loaded through the bank."""

    def __init__(self, refiner_factory: Callable[[Any, str], Any] | None = None) -> None:
        self.bank = ModelBank()
        self.refiner_factory = refiner_factory

    # -- the generator ----------------------------------------------------------------------
    def load_generator(self, path: Path, device: str, precision: str = "fp32",
                       trust_torchscript: bool = False) -> Generator:
        """Wav2Lip or MuseTalk, by the checkpoint's keys (a folder is MuseTalk's)."""
        from ..models.loading import generator_kind

        if generator_kind(path) == "musetalk":
            from ..generators.musetalk import MuseTalkGenerator
            from ..musetalk_layout import find_files

            key = ("generator", "musetalk", find_files(path).stamp(), device, precision)
            return self.bank.get(key, lambda: MuseTalkGenerator.load(path, device, precision, trust_torchscript))
        key = ("generator", str(Path(path).resolve()), Path(path).stat().st_mtime, device, precision)
        return self.bank.get(key, lambda: Wav2LipGenerator.load(path, device, precision, trust_torchscript))

    def generator(self, config: RunConfig, device: str) -> Generator:
        """The generator ``config`` asks for (downloaded first if allowed and missing)."""
        ckpt = resolve_checkpoint(config.checkpoint, config.models_dir, config.allow_download)
        precision = resolve_precision(config.precision, device, config.mode)
        return for_run(self.load_generator(ckpt, device, precision, config.trust_torchscript), config)

    def preload_generator(self, config: RunConfig, device: str) -> Future | None:
        """Start loading a local generator checkpoint in the background (it overlaps audio decoding
        and the other models' loading); None when it must be downloaded first or is bad: then
        the normal path loads it and reports any problem in order."""
        try:
            path = resolve_checkpoint(config.checkpoint, config.models_dir, allow_download=False)
        except Exception:  # noqa: BLE001 - missing or not yet downloaded: the main path says why
            return None
        loader = ThreadPoolExecutor(1, thread_name_prefix="wav2lip-uhq-load")
        precision = resolve_precision(config.precision, device, config.mode)
        future = loader.submit(
            lambda: for_run(self.load_generator(path, device, precision, config.trust_torchscript), config)
        )
        loader.shutdown(wait=False)  # the thread ends when the load does
        return future

    # -- faces ------------------------------------------------------------------------------
    def detector(self, config: RunConfig, device: str):
        f = config.faces
        if f.box is not None:
            return create_detector("box", box=f.box)
        max_size = f.detect_max_size or None
        if f.detector == "s3fd":
            # S3FD weights live in the models folder like every other model (fetched once).
            path = f.s3fd_path or resolve_checkpoint("s3fd", config.models_dir, config.allow_download)
            key = ("detector", "s3fd", str(path), max_size, device, f.batch_size)
            return self.bank.get(
                key,
                lambda: create_detector(
                    "s3fd", device=device, model_path=path, batch_size=f.batch_size, max_size=max_size
                ),
            )
        return self.bank.get(
            ("detector", f.detector, max_size), lambda: create_detector(f.detector, max_size=max_size)
        )

    def landmarks(self, config: RunConfig, device: str):
        name = landmark_backend(config)
        if name is None:
            return None
        path = None
        if name == "fan":
            path = config.composite.fan_path or resolve_checkpoint("fan", config.models_dir, config.allow_download)
        return self.bank.get(
            ("landmarks", name, str(path), device),
            lambda: create_landmark_detector(name, device=device, model_path=path),
        )

    # -- after the generator ----------------------------------------------------------------
    def parser(self, config: RunConfig, device: str):
        path = config.composite.parser
        if path is None or config.mode not in LANDMARK_MODES:
            return None
        from ..parsing import FaceParser

        return self.bank.get(("parser", str(path), device), lambda: FaceParser.from_file(path, device=device))

    def restorer(self, config: RunConfig, device: str):
        if config.mode != "enhanced":
            return None
        from ..restoration import FaceRestorer

        c = config.composite
        path = c.restorer or resolve_checkpoint("gfpgan", config.models_dir, config.allow_download)
        return self.bank.get(
            ("restorer", str(path), device, c.fidelity),
            lambda: FaceRestorer.from_file(path, device=device, fidelity=c.fidelity),
        )

    def upscaler(self, config: RunConfig, device: str):
        c = config.composite
        if config.mode != "enhanced" or c.upscaler is None:
            return None
        from ..restoration import Upscaler

        return self.bank.get(("upscaler", str(c.upscaler), device), lambda: Upscaler.from_file(c.upscaler, device=device))

    def refiner(self, config: RunConfig, device: str):
        """Mode "uhq": the diffusers refiner (SD checkpoint + ControlNets), kept between runs."""
        if config.mode != "uhq":
            return None
        r = config.refine
        if self.refiner_factory is not None:  # the host's model: nothing to load or cache here
            return self.refiner_factory(r, device)
        from ..refine import create_refiner

        files = [r.checkpoint] + [c.model for c in r.controlnets] + [p for p, _ in r.loras] + list(r.embeddings)
        stamp = tuple(Path(f).stat().st_mtime if f is not None and Path(f).exists() else None for f in files)
        return self.bank.get(("refiner", repr(r), stamp, device), lambda: create_refiner(r, device))
