"""The generator interface: what the pipeline needs from a lip-sync model.

The pipeline (decoding, tracking, batching, compositing, restoration, refinement, preview,
caches, progress) is shared; everything model-specific sits behind :class:`Generator`:

- ``audio_features``: the decoded waveform + frame rate -> one feature item per output frame
  (its length *is* the output frame count), and what "silence" looks like to the model;
- ``placement``: where the model's square crop comes from in a frame, from the tracked face
  and the frame's size (``FaceGeometry`` -> ``Placement``, final: no later stage changes the
  box); ``img_size`` is that crop's side in pixels;
- ``prepare``: the crop input of one frame (pure: it reads the frame and the placement,
  writes neither, and depends on them only, not on the output index, so it may be cached per source frame when
  ``reuse_prepared`` says it is worth it);
- ``generate``: one batched call, prepared inputs + features -> faces, uint8 BGR, (N, S, S, 3),
  placed back through the same ``Placement``. Device and dtype are the generator's business.

``generate`` runs in the pipeline's worker thread, one batch ahead of compositing; ``prepare``
runs there too, so a model whose inputs are expensive to prepare (latents of the reference
face) does that work off the main thread as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..compositing import Placement
from ..faces.stream import FaceGeometry


@runtime_checkable
class AudioFeatures(Protocol):
    """Audio features for every output frame of a run."""

    def __len__(self) -> int:
        """The number of output frames the audio gives."""
        ...

    def take(self, indices: Sequence[int]) -> np.ndarray:
        """The features of these output frames, stacked for one ``generate`` call."""
        ...

    def silenced(self, silent: np.ndarray) -> AudioFeatures:
        """A copy where the frames flagged in ``silent`` (bool per output frame) get the
        features of digital silence (``--silence close``: the mouth closes)."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A lip-sync model: Wav2Lip (``generators.wav2lip``) is the first implementation."""

    img_size: int  # side of the square crop ``generate`` takes and returns (before any upscaler)
    reuse_prepared: bool  # prepared inputs are costly: the pipeline keeps them per source frame

    def audio_features(self, wav: np.ndarray, fps: float, cover: bool) -> AudioFeatures:
        """Features per output frame from 16 kHz mono ``wav``; ``cover``: the video must cover
        the whole audio (every mode but ``fast``, which keeps upstream's frame count)."""
        ...

    def placement(self, geometry: FaceGeometry, index: int, aligned: bool, frame_size: tuple[int, int]) -> Placement:
        """The crop of output frame ``index`` for a valid tracked face in a frame of
        ``frame_size`` (width, height); ``aligned``: rotate a tilted head upright (by its landmarks)."""
        ...

    def prepare(self, frame: np.ndarray, placement: Placement) -> Any:
        """The model input of one frame (writes into neither ``frame`` nor ``placement``)."""
        ...

    def generate(self, prepared: Sequence[Any], features: np.ndarray) -> np.ndarray:
        """One batched call: (N, img_size, img_size, 3) uint8 BGR faces."""
        ...
