"""Run configuration: small grouped dataclasses shared by the CLI, the UI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .refine.base import RefineOptions
from .video import EncodeSettings

MODES = ("fast", "feather", "improved", "enhanced", "uhq")
SILENCE_MODES = ("off", "close", "keep")
LOOP_MODES = ("forward", "pingpong")


@dataclass
class FaceOptions:
    """How the face is found in each frame."""

    detector: str = "s3fd"  # "s3fd" or "dlib"
    box: tuple[int, int, int, int] | None = None  # fixed box: top, bottom, left, right (skips detection)
    pads: tuple[int, int, int, int] = (0, 10, 0, 0)  # top, bottom, left, right (upstream default)
    smoothing: str = "centered"  # "centered" (no lag), "upstream" (5-frame forward mean), "none"
    face_index: int | None = None  # None: largest face; else the N-th face from the left
    detect_max_size: int | None = 720  # downscale frames to this long side for detection (0/None: full)
    batch_size: int = 16
    s3fd_path: Path | None = None


@dataclass
class FrameOptions:
    """Preprocessing of the face frames (upstream's options) and timing."""

    resize_factor: int = 1
    crop: tuple[int, int, int, int] = (0, -1, 0, -1)  # top, bottom, left, right after resize/rotate
    rotate: bool = False  # rotate 90 degrees clockwise
    fps: float = 25.0  # for still images only
    loop: str = "forward"  # a video shorter than the audio: "forward" (upstream) or "pingpong"


@dataclass
class CompositeOptions:
    """How the new mouth is put back (modes improved and enhanced)."""

    landmarks: str = "auto"  # "fan", "dlib", or "auto" (dlib with the dlib detector, else fan)
    landmark_smoothing: str = "savgol"  # zero-lag Savitzky-Golay, or "none"
    mask_region: str = "lower_face"  # "lower_face" (lips, chin, lower cheeks) or "mouth"
    mask_dilate: float = 0.0  # grow (+) / shrink (-) the mask, fraction of the face width
    mask_feather: float = 0.12  # soft edge width, fraction of the face width
    colour_match: bool = True
    sharpen: float = 0.0  # unsharp amount for the new mouth (0: off)
    regrain: bool = False  # add the original's grain to the new mouth
    blend: str = "alpha"  # "alpha", "laplacian", "poisson"
    aligned: bool = False  # rotate tilted heads upright for the generator, then back
    silence: str = "off"  # on silent audio: "off", "close" (closed mouth), "keep" (original frame)
    silence_db: float = -35.0  # silent: this far below the clip's speech level (or under -60 dBFS)
    restorer: Path | None = None  # enhanced: GFPGAN / CodeFormer / RestoreFormer checkpoint
    restore_strength: float = 0.7  # 0: original, 1: fully restored (inside the mouth mask only)
    fidelity: float = 0.7  # CodeFormer's fidelity weight w
    upscaler: Path | None = None  # enhanced: a super-resolution checkpoint applied to the 96 px output
    parser: Path | None = (
        None  # face-parsing BiSeNet checkpoint (79999_iter.pth): keeps hair, hands, occluders
    )
    parser_keep_neck: bool = False  # let the new chin extend over the neck
    debug_video: Path | None = None  # write result | mask and landmarks overlay, side by side
    fan_path: Path | None = None  # FAN weights (default: the models folder)


@dataclass
class RunConfig:
    face: Path
    audio: Path
    out: Path | None = None  # None: a new unique name in ``results_dir``
    checkpoint: str | Path | None = None  # path, known name, or None for the default
    mode: str = "improved"
    faces: FaceOptions = field(default_factory=FaceOptions)
    frames: FrameOptions = field(default_factory=FrameOptions)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    composite: CompositeOptions = field(default_factory=CompositeOptions)
    refine: RefineOptions = field(default_factory=RefineOptions)  # mode "uhq": SD refinement of the mouth
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    precision: str = (
        "auto"  # "auto" (fp16 on CUDA, bf16 on CPUs that have it except in fast mode), "fp32", "fp16", "bf16"
    )
    batch_size: int = 32  # generator batch (at most; batches of large frames end at 96 MiB of frames)
    models_dir: Path | None = None
    cache_dir: Path | None = None  # None: ~/.cache/wav2lip-uhq; detection results live here
    results_dir: Path = Path("results")
    allow_download: bool = True

    def __post_init__(self) -> None:
        self.face = Path(self.face)
        self.audio = Path(self.audio)
        if self.out is not None:
            self.out = Path(self.out)
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.frames.loop not in LOOP_MODES:
            raise ValueError(f"unknown loop mode {self.frames.loop!r} (choose from {', '.join(LOOP_MODES)})")
        if self.composite.silence not in SILENCE_MODES:
            raise ValueError(
                f"unknown silence mode {self.composite.silence!r} (choose from {', '.join(SILENCE_MODES)})"
            )
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.frames.resize_factor < 1:
            raise ValueError("resize_factor must be at least 1")

    def to_dict(self) -> dict:
        """JSON-friendly settings (saved next to results)."""

        def conv(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            return v

        return conv(asdict(self))
