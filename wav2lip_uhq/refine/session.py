"""One refinement run: crops -> control images -> backend (batched) -> consistency -> paste.

The pipeline calls ``RefineSession.refine_patches`` once per generator batch with the frames it
has just composited (it only reads them and returns the new pixels as patches); the session
carries the track state (residuals, key frames) across calls. ``refine`` does the same in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ..errors import Cancelled
from ..patches import Patch
from .base import FrameJob, RefineBatch, Refiner, paste_square, prepare
from .consistency import LandmarkOpening, SyncGuard, TrackBlender, interpolate
from .control import ControlImages


class RefineSession:
    def __init__(self, refiner: Refiner, landmark_detector=None) -> None:
        self.refiner = refiner
        o = self.options = refiner.options
        self.controls = ControlImages([c.preprocessor for c in o.controlnets], o.annotators_dir)
        method = o.opening
        if method == "auto":
            method = "landmarks" if landmark_detector is not None else "cavity"
        if method == "landmarks" and landmark_detector is None:
            raise ValueError("opening='landmarks' needs a landmark detector")
        meter = LandmarkOpening(landmark_detector) if method == "landmarks" else None
        self.guard = SyncGuard(o.sync_tolerance, method, meter)
        self.blender = TrackBlender(o.temporal_blend)
        self._key: tuple[int, np.ndarray] | None = None  # (index, residual) of the last key frame
        self.diffused = 0  # crops sent to the backend
        self.pixels = [0, 0]  # diffused crop pixels (frame resolution), frame pixels

    def _linked(self, prev: FrameJob | None, job: FrameJob) -> bool:
        if prev is None:
            return self.blender.continues(job.index, job.box)
        probe = TrackBlender()
        probe.index, probe.box = prev.index, prev.box
        return probe.continues(job.index, job.box)

    def _diffuse(self, jobs: list[FrameJob], progress, cancel) -> list[np.ndarray]:
        o, out = self.options, []
        n_total = len(jobs)
        for start in range(0, n_total, o.batch_size):
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            chunk = jobs[start : start + o.batch_size]
            crops = [j.crop for j in chunk]

            def step(s: int, steps: int, start: int = start, n: int = len(chunk)):
                if progress is not None:
                    progress(start + int(n * s / max(1, steps)), n_total)

            batch = RefineBatch(crops, [j.mask for j in chunk], self.controls(crops), [o.seed] * len(chunk),
                                step, cancel)
            out.extend(self.refiner.refine(batch))
            self.diffused += len(chunk)
            for j in chunk:
                self.pixels[0] += j.box.side ** 2
                self.pixels[1] += j.frame.shape[0] * j.frame.shape[1]
            if progress is not None:
                progress(start + len(chunk), n_total)
        return out

    def refine(self, jobs: Sequence[FrameJob], face_boxes: Sequence | None = None,
               progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> list[bool]:
        """Refine ``jobs`` (consecutive output frames of a batch, in order) in place.
        Returns, per job, whether the refined mouth was pasted."""
        patches = self.refine_patches(jobs, face_boxes, progress, cancel)
        for job, patch in zip(jobs, patches):
            if patch is not None:
                patch.apply(job.frame)
        return [p is not None for p in patches]

    def refine_patches(self, jobs: Sequence[FrameJob], face_boxes: Sequence | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       cancel: Callable[[], bool] | None = None) -> list[Patch | None]:
        """Per job, the refined mouth as a patch over the job's roi, or None where nothing is
        pasted (no mask, or the sync guard kept the Wav2Lip mouth). The frames are only read."""
        o = self.options
        patches: list[Patch | None] = [None] * len(jobs)
        position = {id(j): k for k, j in enumerate(jobs)}
        ready = prepare(jobs, o)
        if not ready:
            return patches
        results = self._refined_crops(ready, progress, cancel)
        pasted = [_pasted(job, out) for job, out in zip(ready, results)]
        if self.guard.method == "landmarks":
            after = []
            for job, patch in zip(ready, pasted):
                f = job.frame.copy()
                patch.apply(f)
                after.append(f)
            boxes = [face_boxes[position[id(j)]] for j in ready] if face_boxes is not None else \
                [j.extras["face_box"] for j in ready]
            ok = self.guard.ok_landmarks([j.frame for j in ready], after, boxes)
        else:
            ok = [self.guard.ok_cavity(job.crop, out, job.box.to_crop(job.landmarks[48:60])
                                       if job.landmarks is not None else None)
                  for job, out in zip(ready, results)]
        for job, good, patch in zip(ready, ok, pasted):
            if good:
                patches[position[id(job)]] = patch
        return patches

    def _refined_crops(self, ready: list[FrameJob], progress, cancel) -> list[np.ndarray]:
        """Diffuse the key frames, interpolate the rest, blend along the track: RGB crops."""
        o = self.options
        links = [self._linked(ready[i - 1] if i else None, j) for i, j in enumerate(ready)]
        seg = np.cumsum([0 if linked else 1 for linked in links])
        keys = [i for i, j in enumerate(ready) if o.every == 1 or j.index % o.every == 0 or not links[i]]
        refined = dict(zip(keys, self._diffuse([ready[i] for i in keys], progress, cancel)))
        raw = {i: refined[i].astype(np.float32) - ready[i].crop for i in keys}

        results: list[np.ndarray] = []
        for i, job in enumerate(ready):
            if i in raw:
                res = raw[i]
            else:
                prev = max((k for k in keys if k < i and seg[k] == seg[i]), default=None)
                nxt = min((k for k in keys if k > i and seg[k] == seg[i]), default=None)
                if prev is not None:
                    p_idx, p_res = ready[prev].index, raw[prev]
                else:  # continuing the previous call's track
                    p_idx, p_res = self._key if self._key is not None else (job.index, None)
                t = 0.0 if nxt is None else (job.index - p_idx) / max(1, ready[nxt].index - p_idx)
                res = interpolate(p_res, raw[nxt] if nxt is not None else None, t)
                if res is None:
                    res = np.zeros_like(job.crop, np.float32)
            if i in raw:
                self._key = (job.index, raw[i])
            res = self.blender.step(job.index, job.box, res)
            results.append(np.clip(np.rint(job.crop + res), 0, 255).astype(np.uint8))
        return results

    def stats(self) -> dict:
        return {"diffused": self.diffused, "rejected": self.guard.rejected, "checked": self.guard.checked,
                "pixel_fraction": self.pixels[0] / self.pixels[1] if self.pixels[1] else 0.0}


def _pasted(job: FrameJob, refined_rgb: np.ndarray) -> Patch:
    """The job's roi with the refined crop blended in through the compositing alpha: the paste
    runs on a copy of the roi only (it never writes outside the roi), not of the frame."""
    x1, y1, x2, y2 = job.roi
    region = job.frame[y1:y2, x1:x2].copy()
    box = replace(job.box, x=job.box.x - x1, y=job.box.y - y1)
    paste_square(region, refined_rgb[:, :, ::-1], box, job.alpha, (0, 0, x2 - x1, y2 - y1))
    return Patch((x1, y1, x2, y2), region)
