"""MuseTalk 1.5 behind the generator interface: whisper prompts per frame, MuseTalk's face box
from 68 landmarks, the 256 px crop's latents (cached by content), one UNet step + decode.

What does not depend on the audio (the crop's masked and reference latents) is kept by the
crop's content, in memory (the generator lives in the model bank between runs) and on disk
(the cache folder), so a second run of the same video with new audio runs only whisper, the
UNet and the decode per frame: MuseTalk's "avatar preparation", automatic.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..compositing import Blended, Placement, eye_angle
from ..faces.stream import FaceGeometry
from ..models import musetalk as mt
from ..patches import Patch

log = logging.getLogger(__name__)

EXTRA_MARGIN = 10  # MuseTalk 1.5's default extension of the box below the chin, in pixels
LATENT_MEMORY_BYTES = 256 * 1024 * 1024  # latents kept in memory by crop content, at most


class WhisperPrompts:
    """The audio prompt of every output frame: 10 whisper steps x 5 hidden states each."""

    def __init__(self, padded: np.ndarray, fps: float, count: int,
                 silence: Callable[[], np.ndarray] | None = None, silent: np.ndarray | None = None) -> None:
        self.padded, self.fps, self.count = padded, fps, count
        self._silence, self._silent = silence, silent

    def __len__(self) -> int:
        return self.count

    def take(self, indices: Sequence[int]) -> np.ndarray:
        prompts = mt.frame_prompts(self.padded, list(indices), self.fps)
        if self._silent is not None:
            quiet = [k for k, i in enumerate(indices) if self._silent[i]]
            if quiet:
                prompts[quiet] = mt.frame_prompts(self._silence(), [indices[k] for k in quiet], self.fps)
        return prompts

    def silenced(self, silent: np.ndarray) -> WhisperPrompts:
        """Flagged frames get the prompts whisper gives for digital silence at the same time."""
        return WhisperPrompts(self.padded, self.fps, self.count, self._silence, np.asarray(silent, bool).copy())


def musetalk_box(landmarks: np.ndarray, fallback) -> tuple[int, int, int, int]:
    """MuseTalk 1.5's face box from 68 landmarks (integer pixels, as upstream truncates them):
    x from the landmarks' extent, the bottom at the lowest landmark, the top as far above the
    nose point (29) as the bottom is below it; ``fallback`` (the detector's box) when that box
    is empty or leaves the frame on the left. No bottom margin here."""
    pts = np.asarray(landmarks).astype(np.int32)
    x1, x2, y2 = int(pts[:, 0].min()), int(pts[:, 0].max()), int(pts[:, 1].max())
    nose_y = int(pts[29, 1])
    y1 = max(0, nose_y - (y2 - nose_y))
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return tuple(int(v) for v in fallback)
    return x1, y1, x2, y2


def fit_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box clipped to the frame (MuseTalk clips the extended bottom to the frame)."""
    x1, y1, x2, y2 = box
    return max(0, x1), max(0, y1), min(width, x2), min(height, y2)


@dataclass
class MuseTalkInput:
    """A prepared crop: its 256 px pixels and, once known, its latents (8, 32, 32)."""

    crop: np.ndarray
    digest: str
    latents: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.crop.nbytes + (self.latents.nbytes if self.latents is not None else 0)


class LatentStore:
    """Latents by crop content: an LRU in memory, then the on-disk cache (if a folder is given)."""

    def __init__(self, identity: dict, max_bytes: int = LATENT_MEMORY_BYTES) -> None:
        self.identity, self.max_bytes = identity, max_bytes
        self._mem: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, digest: str, disk) -> np.ndarray | None:
        with self._lock:
            hit = self._mem.get(digest)
            if hit is not None:
                self._mem.move_to_end(digest)
                self.hits += 1
                return hit
        if disk is not None:
            arrays = disk.load_arrays(disk.key(digest, self.identity))
            if arrays is not None and arrays.get("latents", np.empty(0)).shape == (8, 32, 32):
                self.put(digest, arrays["latents"], None)
                self.hits += 1
                return arrays["latents"]
        self.misses += 1
        return None

    def put(self, digest: str, latents: np.ndarray, disk) -> None:
        with self._lock:
            if digest not in self._mem:
                self._mem[digest] = latents
                self._bytes += latents.nbytes
            while self._bytes > self.max_bytes and self._mem:
                self._bytes -= self._mem.popitem(last=False)[1].nbytes
        if disk is not None:
            try:
                disk.save_arrays(disk.key(digest, self.identity), {"latents": latents})
            except OSError as exc:  # a full or read-only cache folder costs speed, not the run
                log.warning("could not cache MuseTalk latents: %s", exc)


class MuseTalkGenerator:
    """Loaded MuseTalk networks and one run's settings (``for_run`` makes a run's view)."""

    img_size = mt.FACE_SIZE
    reuse_prepared = False  # latents are kept by crop content here, across runs too

    def __init__(self, nets: mt.MuseTalkNetworks, *, fast: bool = False, fixed_box: bool = False,
                 extra_margin: int = EXTRA_MARGIN, cache_dir: str | Path | None = None) -> None:
        self.nets, self.device = nets, nets.device
        self.fast, self.fixed_box, self.extra_margin = fast, fixed_box, extra_margin
        stamp = nets.files.stamp() if nets.files is not None else ()
        self.store = LatentStore({"vae": [list(s) for s in stamp[1:2]], "dtype": str(nets.dtype),
                                  "device": nets.device.split(":")[0]})
        self._disk = _disk_cache(cache_dir)
        self._silence: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path, device: str, precision: str = "fp32", trust_torchscript: bool = False,
             **run) -> MuseTalkGenerator:
        """The user's MuseTalk folder (or its unet.pth), weights-only."""
        import torch

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        return cls(mt.load_networks(mt.find_files(path), device, dtype, trust_torchscript), **run)

    def for_run(self, *, fast: bool, fixed_box: bool, cache_dir: str | Path | None = None) -> MuseTalkGenerator:
        """The same networks and latent store with one run's settings."""
        view = copy.copy(self)
        view.fast, view.fixed_box, view._disk = fast, fixed_box, _disk_cache(cache_dir)
        return view

    def parameters(self):
        return self.nets.unet.parameters()

    # -- audio --------------------------------------------------------------------------------
    def audio_features(self, wav: np.ndarray, fps: float, cover: bool) -> WhisperPrompts:
        """``fast`` is MuseTalk's: int(fps), floor(seconds x fps) frames; otherwise the true
        rate and enough frames to cover the whole audio."""
        rate = float(int(fps)) if self.fast else float(fps)
        seconds = len(wav) / 16000.0
        steps = mt.whisper_steps(self.nets, wav)
        count = mt.frame_count(seconds, rate, cover and not self.fast)
        n_steps = len(steps)
        return WhisperPrompts(mt.pad_steps(steps, rate), rate, count, lambda: self._silent_padded(n_steps, rate))

    def _silent_padded(self, n_steps: int, fps: float) -> np.ndarray:
        """Whisper's steps for silence over the run's length (every 30 s segment of zeros gives
        the same 1500 steps), padded like the speech."""
        if self._silence is None:
            self._silence = mt.whisper_steps(self.nets, np.zeros(mt.SEGMENT_SECONDS * 16000, np.float32))
        reps = -(-n_steps // len(self._silence))
        return mt.pad_steps(np.concatenate([self._silence] * max(reps, 1))[:n_steps], fps)

    # -- the crop -----------------------------------------------------------------------------
    def placement(self, geometry: FaceGeometry, index: int, aligned: bool, frame_size: tuple[int, int]) -> Placement:
        """MuseTalk's box from the (smoothed) landmarks, extended below the chin and clipped to
        the frame as MuseTalk clips it; exactly the tracked box with ``--box`` or without
        landmarks. A rotated crop (``aligned``) is not clipped: its warp repeats the border."""
        lms = geometry.landmarks
        box = tuple(int(round(v)) for v in geometry.box)  # noqa: RUF046 - numpy floats
        if not self.fixed_box and lms is not None:
            x1, y1, x2, y2 = musetalk_box(lms, box)
            box = (x1, y1, x2, y2 + self.extra_margin)
        angle = eye_angle(lms) if aligned and lms is not None else 0.0
        placement = Placement.from_box(box, self.img_size, lms, index, angle)
        fitted = fit_box(box, *frame_size)
        if fitted != box and placement.axis_aligned:
            placement = Placement.from_box(fitted, self.img_size, lms, index)
        return placement

    def prepare(self, frame: np.ndarray, placement: Placement) -> MuseTalkInput:
        """The Lanczos-resized 256 px crop of the placement (which is only read)."""
        x1, y1, x2, y2 = placement.box
        size = (self.img_size, self.img_size)
        if placement.axis_aligned:
            crop = cv2.resize(frame[y1:y2, x1:x2], size, interpolation=cv2.INTER_LANCZOS4)
        else:
            crop = cv2.warpAffine(frame, placement.matrix, size, flags=cv2.INTER_LANCZOS4,
                                  borderMode=cv2.BORDER_REPLICATE)
        return MuseTalkInput(crop, hashlib.blake2b(crop.tobytes(), digest_size=16).hexdigest())

    def generate(self, prepared: Sequence[MuseTalkInput], features: np.ndarray) -> np.ndarray:
        """Latents of the crops not seen before (one batched encode), then one UNet step and
        the decode for the batch: (N, 256, 256, 3) uint8 BGR."""
        self._fill_latents(prepared)
        latents = np.stack([p.latents for p in prepared])
        return mt.generate_faces(self.nets, latents, features)

    def _fill_latents(self, prepared: Sequence[MuseTalkInput]) -> None:
        todo: dict[str, list[MuseTalkInput]] = {}
        for p in prepared:
            if p.latents is None and p.digest not in todo:
                p.latents = self.store.get(p.digest, self._disk)
            if p.latents is None:
                todo.setdefault(p.digest, []).append(p)
        if not todo:
            return
        encoded = mt.encode_faces(self.nets, np.stack([group[0].crop for group in todo.values()]))
        for (digest, group), lat in zip(todo.items(), encoded):
            self.store.put(digest, lat, self._disk)
            for p in group:
                p.latents = lat


def _disk_cache(cache_dir):
    if cache_dir is None:
        return None
    from ..cache import ArrayCache

    return ArrayCache(cache_dir, "musetalk_latents")


# -- MuseTalk's own blend (``--musetalk-blend parsing``) --------------------------------------------
PARSE_SIZE = 512  # the parser's input; the jaw mask is built at this size
SKIN, NOSE, MOUTH = 1, 10, (11, 12, 13)  # CelebAMask-HQ classes: skin, nose, mouth + lips


def jaw_kernel() -> np.ndarray:
    """MuseTalk's 33 x 33 dilation kernel: a downward cone 21 rows high, then a 12-row tail."""
    k = np.zeros((33, 33), np.uint8)
    for r in range(21):
        half = round(r * 16 / 20)
        k[r, 16 - half : 17 + half] = 1
    k[21:, 16] = 1
    return k


def jaw_mask(labels: np.ndarray) -> np.ndarray:
    """(512, 512) uint8 0/255 from parser labels at 512 px, MuseTalk 1.5's ``jaw`` mode: skin
    grown downwards, eroded twice outside the central 2 x 90 px band, nose out, mouth and lips in."""
    skin = (labels == SKIN).astype(np.uint8) * 255
    grown = cv2.dilate(skin, jaw_kernel())
    eroded = cv2.erode(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3)), iterations=2)
    c = labels.shape[1] // 2
    eroded[:, c - 90 : c + 90] = grown[:, c - 90 : c + 90]
    eroded[labels == NOSE] = 0
    eroded[np.isin(labels, MOUTH)] = 255
    return eroded


class ParsingBlend:
    """MuseTalk's blend: the generated face pasted into a square crop 1.5x the box, through the
    parser's jaw mask restricted to the box's lower half and blurred (kernel 5 % of the box)."""

    def __init__(self, parser, upper_ratio: float = 0.5, blur: float = 0.05) -> None:
        self.parser, self.upper_ratio, self.blur = parser, upper_ratio, blur

    def blend(self, frame, generated, placement, visible=None) -> Blended:
        x1, y1, x2, y2 = placement.box
        w, h = x2 - x1, y2 - y1
        s = int(max(w, h) // 2 * 1.5)
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        roi = (max(0, cx - s), max(0, cy - s), min(frame.shape[1], cx + s), min(frame.shape[0], cy + s))
        rx1, ry1, rx2, ry2 = roi
        crop = frame[ry1:ry2, rx1:rx2]
        big = cv2.resize(crop, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR)
        labels = self.parser.parse([big])[0]
        mask = cv2.resize(jaw_mask(labels), (rx2 - rx1, ry2 - ry1), interpolation=cv2.INTER_LINEAR)
        keep = np.zeros_like(mask)
        top = y1 - ry1 + int(h * self.upper_ratio)
        keep[top : y2 - ry1, x1 - rx1 : x2 - rx1] = mask[top : y2 - ry1, x1 - rx1 : x2 - rx1]
        k = int(self.blur * w // 2 * 2) + 1
        alpha = cv2.GaussianBlur(keep, (k, k), 0).astype(np.float32) / 255.0
        pasted = crop.copy()
        pasted[y1 - ry1 : y2 - ry1, x1 - rx1 : x2 - rx1] = cv2.resize(generated, (w, h))
        a = alpha[..., None]
        out = (pasted.astype(np.float32) * a + crop.astype(np.float32) * (1 - a) + 0.5).astype(np.uint8)
        return Blended(roi, alpha, Patch(roi, out))

