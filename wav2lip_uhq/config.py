"""Run configuration: small grouped dataclasses shared by the CLI, the UI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .compositing import BLENDS
from .faces.detection import DETECTORS
from .faces.landmarks import LANDMARK_SMOOTHING
from .faces.track import SMOOTHING
from .masks import MASK_REGIONS
from .options import check_fields, option
from .outputs import EXTRA_KINDS, EXTRA_OUTPUTS
from .refine.base import RefineOptions
from .speakers import Speaker, TimeRange, parse_ranges, parse_speakers
from .video import EncodeSettings

MODES = ("fast", "feather", "improved", "enhanced", "uhq")
SILENCE_MODES = ("off", "close", "keep")
SPEECH_ENGINES = ("espeak", "piper")  # wav2lip_uhq.speech.ENGINES
LOOP_MODES = ("forward", "pingpong")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class FaceOptions:
    """How the face is found in each frame."""

    detector: str = option("s3fd", "face detector: s3fd (neural, default) or dlib (HOG, offline, CPU)",
                           group="faces", choices=DETECTORS)
    box: tuple[int, int, int, int] | None = option(
        None, "fixed face box, skips detection (upstream order)", group="faces", kind="box", null=None,
        label="face box", widget="textbox")
    pads: tuple[int, int, int, int] = option(
        (0, 10, 0, 0), "padding around the detected face in pixels (upstream default 0 10 0 0)", group="faces",
        kind="ints4", parts=("pad_top", "pad_bottom", "pad_left", "pad_right"),
        part_labels=("top padding", "bottom padding", "left padding", "right padding"))
    smoothing: str = option("centered", "box smoothing over time: centered (no lag), upstream (5-frame forward "
                            "mean), none", group="faces", choices=SMOOTHING, label="box smoothing",
                            cli_aliases=("--nosmooth=none",))
    face_index: int | None = option(None, "which face when several: N-th from the left (-1: the largest)",
                                    group="faces", minimum=0, maximum=64, null=-1, kind="int",
                                    label="face index", widget="number")
    detect_max_size: int | None = option(720, "downscale frames to this long side for detection (0: full size)",
                                         group="faces", minimum=0, maximum=8192, widget="number",
                                         label="detection size")
    batch_size: int = option(16, "frames per face-detection call", group="faces", key="face_det_batch_size",
                             minimum=1, maximum=256, widget="number", label="detection batch size")
    s3fd_path: Path | None = option(None, "S3FD weights (default: the models folder)", group="faces",
                                    kind="path", null=None, ui=False, client=False)


@dataclass
class FrameOptions:
    """Preprocessing of the face frames (upstream's options) and timing."""

    resize_factor: int = option(1, "divide the frame size by this factor", group="frames", minimum=1,
                                maximum=16, widget="number")
    crop: tuple[int, int, int, int] = option(
        (0, -1, 0, -1), "crop the frames after resize/rotate (-1: to the edge)", group="frames", kind="ints4",
        parts=("crop_top", "crop_bottom", "crop_left", "crop_right"),
        part_labels=("crop top", "crop bottom", "crop left", "crop right"))
    rotate: bool = option(False, "rotate frames 90 degrees clockwise", group="frames")
    fps: float = option(25.0, "frame rate for a still image", group="frames", minimum=1.0, maximum=120.0,
                        widget="number", label="still-image fps")
    loop: str = option("forward", "how a video shorter than the audio repeats: forward (upstream) or "
                       "pingpong", group="frames", choices=LOOP_MODES, cli_aliases=("--pingpong=pingpong",))
    segment: tuple[int, int] | None = option(
        None, "only output frames START:END (END not included, clipped to the run's length), video only: one "
        "part of a long run split across workers (the join adds the audio)", group="frames", kind="range",
        null=None, ui=False, label="segment")


@dataclass
class CompositeOptions:
    """How the new mouth is put back (modes improved and enhanced)."""

    landmarks: str = option("auto", "68-point landmarks: fan (with s3fd) or dlib (offline); auto picks by "
                            "detector", group="compositing", choices=("auto", "fan", "dlib"))
    landmark_smoothing: str = option("savgol", "landmark smoothing over time: zero-lag Savitzky-Golay or none",
                                     group="compositing", choices=LANDMARK_SMOOTHING)
    mask_region: str = option("lower_face", "lower_face: lips, chin, lower cheeks; mouth: lips and around",
                              group="compositing", choices=MASK_REGIONS)
    mask_dilate: float = option(0.0, "grow (+) / shrink (-) the mask, fraction of the face width",
                                group="compositing", minimum=-0.5, maximum=0.5, step=0.01)
    mask_feather: float = option(0.12, "soft edge width, fraction of the face width", group="compositing",
                                 minimum=0.0, maximum=1.0, step=0.01)
    colour_match: bool = option(True, "match the new mouth's colours to the frame", group="compositing")
    sharpen: float = option(0.0, "unsharp amount for the new mouth (0: off)", group="compositing",
                            minimum=0.0, maximum=5.0, step=0.05)
    regrain: bool = option(False, "add the original's grain to the new mouth", group="compositing")
    blend: str = option("alpha", "how the mouth is blended in", group="compositing", choices=BLENDS)
    aligned: bool = option(False, "rotate tilted heads upright for the generator, then back",
                           group="compositing", label="align tilted heads")
    silence: str = option("off", "on silent audio: off, close (closed mouth), keep (original frame)",
                          group="compositing", choices=SILENCE_MODES, label="on silence")
    silence_db: float = option(-35.0, "silent: this far below the clip's speech level (dB; or under -60 dBFS)",
                               group="compositing", minimum=-80.0, maximum=-1.0, step=1.0, label="silence level")
    restorer: Path | None = option(None, "GFPGAN / CodeFormer / RestoreFormer checkpoint (default GFPGANv1.4)",
                                   group="restoration", kind="path", null=None, label="restorer checkpoint")
    restore_strength: float = option(0.7, "0: original, 1: fully restored (inside the mouth mask only)",
                                     group="restoration", minimum=0.0, maximum=1.0, step=0.05)
    fidelity: float = option(0.7, "CodeFormer's fidelity weight w", group="restoration", minimum=0.0,
                             maximum=1.0, step=0.05, label="CodeFormer fidelity")
    upscaler: Path | None = option(None, "super-resolution checkpoint applied to the generator's output",
                                   group="restoration", kind="path", null=None,
                                   label="super-resolution checkpoint")
    parser: Path | None = option(None, "face-parsing BiSeNet checkpoint (79999_iter.pth): never paint over hair,"
                                 " hands, occluders", group="compositing", kind="path", null=None,
                                 label="face-parsing checkpoint")
    parser_keep_neck: bool = option(False, "with a parser: let the new chin extend over the neck",
                                    group="compositing")
    musetalk_blend: str = option("masks", "MuseTalk's blend: our landmark masks, or parsing = MuseTalk's own "
                                 "face-parsing jaw blend (needs --parser 79999_iter.pth)", group="compositing",
                                 choices=("masks", "parsing"), label="MuseTalk blend")
    debug_video: Path | None = option(None, "write the debug extra output (result | mask+landmarks overlay) to "
                                      "this file instead of <result>.debug.<ext>", group="extras", kind="path",
                                      null=None, ui=False, client=False)
    fan_path: Path | None = option(None, "FAN weights (default: the models folder)", group="compositing",
                                   kind="path", null=None, ui=False, client=False)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class SpeechOptions:
    """Text to speech in front of the lip sync (``wav2lip_uhq.speech``): the text becomes the audio."""

    text: str = option("", "text to speak instead of an audio file (split at sentence ends, with pauses)",
                       group="speech", kind="text", label="text to speak")
    text_file: Path | None = option(None, "read the text to speak from this UTF-8 file", group="speech",
                                    kind="path", null=None, ui=False, client=False)
    engine: str = option("espeak", "espeak: offline, built in; piper: neural voices, downloaded on first use",
                         group="speech", key="tts_engine", choices=SPEECH_ENGINES, label="voice engine")
    voice: str = option("", "voice id (`wav2lip-uhq voices` lists them; empty: the engine's default)",
                        group="speech", widget="dropdown")
    speed: float = option(1.0, "speaking rate (1: normal, 2: twice as fast)", group="speech", key="tts_speed",
                          minimum=0.5, maximum=2.0, step=0.05, label="speaking speed")
    pause: float = option(0.3, "silence between sentences (seconds)", group="speech", key="tts_pause",
                          minimum=0.0, maximum=3.0, step=0.05, label="pause between sentences")

    def __post_init__(self) -> None:
        if self.text_file is not None:
            self.text_file = Path(self.text_file)
        check_fields(self)


@dataclass
class RunConfig:
    face: Path
    audio: Path
    out: Path | None = option(None, "output file (default: a new name in the results folder)", group="run",
                              kind="path", null=None, ui=False, client=False)
    overwrite: bool = option(False, "replace the --out file if it exists (otherwise an existing file is refused)",
                             group="run", ui=False, client=False)
    extra_outputs: tuple[str, ...] = option(
        (), "also write, from the same pass, beside the result as <result>.<kind>.<ext>: "
        + "; ".join(f"{k}: {what}" for k, (_, what) in EXTRA_OUTPUTS.items()), group="extras",
        kind="choice_set", choices=EXTRA_KINDS, label="extra outputs")
    resume: bool = option(False, "continue the interrupted run with these inputs and settings (the one writing "
                          "--out, else the latest with the same inputs) instead of starting anew", group="run",
                          ui=False)
    resume_every: float = option(10.0, "write the run in segments of this many seconds of video into a job "
                                 "folder in the cache, so that an interrupted run can be resumed (0: off)",
                                 group="run", minimum=0.0, maximum=3600.0, ui=False, label="resume segment")
    checkpoint: str | Path | None = option(
        "wav2lip_gan", "generator checkpoint: a path or a known name", group="run", kind="str", null=None,
        label="generator checkpoint", widget="dropdown")
    mode: str = option("improved", "fast: upstream's hard box paste; feather: blended lower-face rectangle; "
                       "improved: landmark mask + colour match; enhanced: + face restoration; uhq: + SD img2img "
                       "refinement", group="run", choices=MODES, widget="dropdown")
    faces: FaceOptions = field(default_factory=FaceOptions)
    frames: FrameOptions = field(default_factory=FrameOptions)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    composite: CompositeOptions = field(default_factory=CompositeOptions)
    refine: RefineOptions = field(default_factory=RefineOptions)  # mode "uhq": SD refinement of the mouth
    speech: SpeechOptions = field(default_factory=SpeechOptions)  # text instead of audio (the CLI, UI, API)
    ranges: tuple[TimeRange, ...] = option(
        (), "lip-sync only these times of the video, START-END[@OFFSET] (seconds or m:ss.s; END empty: to the end; "
        "OFFSET: where in the speech the range starts), comma-separated or repeated; the rest passes through "
        "with the video's own audio", group="speakers", kind="ranges", cli="--range", label="time ranges",
        widget="textbox")
    delay: float = option(0.0, "seconds before the speech starts (at the start of the run, or of each range)",
                          group="speakers", minimum=0.0, maximum=3600.0, step=0.1, widget="number",
                          label="delay before speech")
    speakers: tuple[Speaker, ...] = option(
        (), "one more voice: face INDEX (from the left; -1: the largest) speaks AUDIO, in its own RANGES or the "
        "run's; repeat for more (the audio and --face-index are the first speaker)", group="speakers",
        kind="speakers", cli="--speaker", ui=False, label="extra speakers")
    device: str = option("auto", "auto, cpu, cuda, cuda:N, mps", group="compute", ui=False, client=False)
    precision: str = option("auto", "generator precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 "
                            "(not in fast mode)", group="compute", choices=PRECISIONS)
    batch_size: int = option(32, "generator batch size (at most; a batch also ends at 96 MiB of frames)",
                             group="compute", minimum=1, maximum=1024, widget="number")
    models_dir: Path | None = option(None, "models folder (default: $WAV2LIP_UHQ_MODELS or "
                                     "~/.cache/wav2lip-uhq/models)", group="compute", kind="path", null=None,
                                     ui=False, client=False)
    cache_dir: Path | None = option(None, "cache folder for face detections (default ~/.cache/wav2lip-uhq)",
                                    group="compute", kind="path", null=None, ui=False, client=False)
    results_dir: Path = option(Path("results"), "where results go when no output is named", group="compute",
                               kind="path", ui=False, client=False, cli=None)
    trust_torchscript: bool = option(False, "load TorchScript .pt checkpoints: they hold code, so only files you "
                                     "trust", group="compute", ui=False, client=False)
    allow_download: bool = option(True, "download missing released checkpoints into the models folder",
                                  group="compute", cli="--download", client=False,
                                  label="download missing released checkpoints")

    def __post_init__(self) -> None:
        self.face = Path(self.face)
        self.audio = Path(self.audio)
        if self.out is not None:
            self.out = Path(self.out)
        self.ranges, self.speakers = parse_ranges(self.ranges, "time ranges"), parse_speakers(self.speakers)
        if self.speakers and self.faces.box is not None:
            raise ValueError("extra speakers need face detection: a fixed face box is one face")
        faces = [self.faces.face_index, *(s.face_index for s in self.speakers)]
        for n, index in enumerate(faces[1:], 2):
            if index is not None and index in faces[: n - 1]:
                raise ValueError(f"speaker {n} and speaker {faces.index(index) + 1} both move face {index}: "
                                 "give each speaker its own face index")
        for group in (self, self.faces, self.frames):
            check_fields(group)  # composite, refine and encode check themselves

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
