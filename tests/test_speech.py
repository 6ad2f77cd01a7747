"""Text to speech (``wav2lip_uhq.speech``): the offline eSpeak NG voice for real, sentence splitting
with pauses, the content-keyed cache, the Piper voices' verified download from a local HTTP server
with tiny fake files, and text instead of audio in the CLI, the UI runner and the API."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from wav2lip_uhq import speech
from wav2lip_uhq.checkpoints import KnownCheckpoint
from wav2lip_uhq.errors import CheckpointError
from wav2lip_uhq.speech import SpeechError, espeak, piper, split_sentences

needs_espeak = pytest.mark.skipif(not espeak.available(), reason='needs espeakng-loader ("wav2lip-uhq[speech]")')


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def longest_silence(samples: np.ndarray, rate: int) -> float:
    """Seconds of the longest run of exact zeros (our pauses are digital silence)."""
    zero = np.concatenate([[False], samples == 0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    runs = edges[1::2] - edges[::2]
    return float(runs.max()) / rate if runs.size else 0.0


# -- sentences -----------------------------------------------------------------------------------
def test_split_sentences_at_ends_lines_and_cjk_keeping_abbreviations_and_quotes():
    text = 'Hello there. How are you?  Fine!\nNew line... Dr. Who is here. 你好。再见！ "Quoted." Last'
    assert split_sentences(text) == ["Hello there.", "How are you?", "Fine!", "New line...", "Dr. Who is here.",
                                     "你好。", "再见！", '"Quoted."', "Last"]
    assert split_sentences(" \n\n ") == []


def test_a_very_long_sentence_is_cut_at_commas_within_the_limit():
    parts = split_sentences("word, " * 200, limit=100)
    assert len(parts) > 5 and all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == ("word, " * 200).split()


# -- the offline voice ---------------------------------------------------------------------------
@needs_espeak
def test_espeak_speaks_offline_with_speed_and_voices_by_language():
    one, rate = espeak.synthesize("Hello world, this is a test.", "en-us", 1.0)
    fast, _ = espeak.synthesize("Hello world, this is a test.", "en-us", 2.0)
    assert rate == 22050 and one.dtype == np.int16
    assert 0.8 < one.size / rate < 4.0 and np.abs(one).max() > 3000  # speech, not silence
    assert fast.size < 0.7 * one.size
    assert {"en", "de", "fr", "es"} <= set(speech.languages("espeak"))
    french = [vid for _, vid in speech.voices_for("espeak", "fr")]
    assert "fr-fr" in french and all(v.startswith("fr") for v in french)
    assert espeak.synthesize("Bonjour tout le monde.", "French (France)", 1.0)[0].size > 0  # by name too
    with pytest.raises(SpeechError, match="unknown eSpeak voice 'xx-nope'"):
        espeak.synthesize("Hello.", "xx-nope")


@needs_espeak
def test_sentences_are_joined_with_the_pause():
    text = "The first sentence. The second one."
    none, rate = speech.synthesize(text, pause=0.0)
    long, _ = speech.synthesize(text, pause=1.0)
    assert abs((long.size - none.size) / rate - 1.0) < 1e-3
    assert longest_silence(long, rate) >= 1.0 > longest_silence(none, rate)


@needs_espeak
def test_speak_caches_by_content(tmp_path):
    a = speech.speak("Cache me. Twice.", cache_dir=tmp_path)
    stamp = a.stat().st_mtime_ns
    assert speech.speak("Cache me. Twice.", cache_dir=tmp_path) == a and a.stat().st_mtime_ns == stamp
    b = speech.speak("Cache me. Twice.", speed=1.5, cache_dir=tmp_path)
    c = speech.speak("Cache me. Twice.", voice="en-gb", cache_dir=tmp_path)
    assert len({a, b, c}) == 3 and a.parent == tmp_path / "speech"
    samples, rate = read_wav(a)
    assert rate == 22050 and samples.size > rate // 2
    from wav2lip_uhq.audio import load_audio

    assert load_audio(a).size > 0  # the pipeline's own loader reads it
    assert not list((tmp_path / "speech").glob(".*"))  # no temporary file left


def test_nothing_to_speak_and_bad_text_files(tmp_path):
    with pytest.raises(SpeechError, match="no text"):
        speech.synthesize("  \n ")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    opts = speech.options_from_values({"text_file": str(latin1)})
    with pytest.raises(SpeechError, match=r"latin1.txt: the text file is not UTF-8"):
        speech.text_of(opts)
    with pytest.raises(SpeechError, match="not both"):
        speech.text_of(speech.options_from_values({"text": "hi", "text_file": str(latin1)}))
    with pytest.raises(ValueError, match="speaking speed must be between 0.5 and 2"):
        speech.options_from_values({"tts_speed": 3})


# -- the neural voice's download (tiny fakes, a local server) ---------------------------------------
class Server:
    """Serves files from a folder on 127.0.0.1 and counts the requests."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def voice_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "xx_XX-fake-low.onnx").write_bytes(b"ONNX" * 5000)
    (served / "xx_XX-fake-low.onnx.json").write_text('{"audio": {"sample_rate": 16000}}')
    server = Server(served)
    yield server, served
    server.close()


def fake_voice(server, served, sha256: str | None = None, max_size: int = 200_000_000):
    vid = "xx_XX-fake-low"
    model = KnownCheckpoint(vid, f"{vid}.onnx", "voice", "fake", (f"{server.url}/{vid}.onnx",), 1000,
                            sha256=sha256, max_size=max_size)
    config = KnownCheckpoint(f"{vid} config", f"{vid}.onnx.json", "voice", "fake", (f"{server.url}/{vid}.onnx.json",),
                             10, max_size=2_000_000)
    return piper.PiperVoiceInfo(vid, "fake", model, config)


def test_piper_voice_downloads_into_the_models_folder_verified(voice_server, tmp_path, monkeypatch):
    server, served = voice_server
    digest = hashlib.sha256((served / "xx_XX-fake-low.onnx").read_bytes()).hexdigest()
    monkeypatch.setitem(piper.VOICES, "xx_XX-fake-low", fake_voice(server, served, sha256=digest))
    seen = []
    model, config = piper.voice_files("xx_XX-fake-low", tmp_path / "models", True, lambda d, t: seen.append((d, t)))
    assert model == tmp_path / "models" / "piper" / "xx_XX-fake-low.onnx"
    assert model.read_bytes() == (served / model.name).read_bytes() and config.is_file()
    assert seen and seen[-1] == (20000, 20000)  # the progress bar's last report: all of it
    assert ("xx", "xx_XX-fake-low", "xx_XX-fake-low — fake") in speech.voice_list("piper", tmp_path / "models")
    (served / model.name).unlink()  # present now: no second download
    assert piper.voice_files("xx_XX-fake-low", tmp_path / "models", True) == (model, config)


def test_piper_download_refuses_a_wrong_hash_or_size_and_leaves_nothing(voice_server, tmp_path, monkeypatch):
    server, served = voice_server
    monkeypatch.setitem(piper.VOICES, "xx_XX-fake-low", fake_voice(server, served, sha256="0" * 64))
    with pytest.raises(CheckpointError, match="SHA-256"):
        piper.voice_files("xx_XX-fake-low", tmp_path / "m", True)
    monkeypatch.setitem(piper.VOICES, "xx_XX-fake-low", fake_voice(server, served, max_size=5000))
    with pytest.raises(CheckpointError, match="more than the 5000"):
        piper.voice_files("xx_XX-fake-low", tmp_path / "m", True)
    assert not (tmp_path / "m" / "piper" / "xx_XX-fake-low.onnx").exists()
    assert not list((tmp_path / "m" / "piper").glob("*.download"))
    with pytest.raises(SpeechError, match="downloads are off"):
        piper.voice_files("en_US-lessac-medium", tmp_path / "m", False)
    with pytest.raises(SpeechError, match="unknown Piper voice 'nobody'"):
        piper.voice_files("nobody", tmp_path / "m", True)


class FakePiperVoice:
    """A loaded voice's interface (piper.PiperVoice): one chunk per call, length by the length scale."""

    def __init__(self):
        self.config = type("Config", (), {"sample_rate": 16000})()
        self.scales = []

    def synthesize(self, text, syn_config=None):
        self.scales.append(syn_config.length_scale)
        n = int(len(text) * 400 * syn_config.length_scale)
        yield type("Chunk", (), {"audio_int16_array": np.full(n, 1000, np.int16)})()


def test_piper_engine_speaks_each_sentence_with_the_speed(voice_server, tmp_path, monkeypatch):
    pytest.importorskip("piper")
    server, served = voice_server
    monkeypatch.setitem(piper.VOICES, "xx_XX-fake-low", fake_voice(server, served))
    loaded = FakePiperVoice()
    monkeypatch.setattr(piper, "load_voice", lambda model, config: loaded)
    wav = speech.speak("One two. Three four!", engine="piper", voice="xx_XX-fake-low", speed=2.0, pause=0.5,
                       cache_dir=tmp_path / "c", models_dir=tmp_path / "m")
    samples, rate = read_wav(wav)
    assert rate == 16000 and loaded.scales == [0.5, 0.5]  # two sentences, length scale 1/speed
    assert samples.size == int(8 * 400 * 0.5) + int(11 * 400 * 0.5) + 8000  # two sentences, 0.5 s between
    assert (tmp_path / "m" / "piper" / "xx_XX-fake-low.onnx").is_file()


# -- text instead of audio: CLI, UI runner, API ------------------------------------------------------
@needs_espeak
def test_cli_run_from_text_saves_the_spoken_audio_beside_the_result(tmp_path, w2l_checkpoint, capsys):
    from wav2lip_uhq.cli import EXAMPLES, main
    from wav2lip_uhq.video import iter_frames, read_audio_track

    text = tmp_path / "words.txt"
    text.write_text("Hello from the text file. It has two sentences.", encoding="utf-8")
    out = tmp_path / "spoken.mp4"
    code = main(["run", "--face", str(EXAMPLES / "face.jpg"), "--text-file", str(text), "--voice", "en-gb",
                 "--checkpoint", str(w2l_checkpoint), "--detector", "dlib", "--mode", "fast", "--out", str(out),
                 "-q", "--cache-dir", str(tmp_path / "c")])
    assert code == 0, capsys.readouterr().err
    assert "spoken audio saved as" in capsys.readouterr().out
    beside = tmp_path / "spoken.wav"
    [cached] = (tmp_path / "c" / "speech").glob("*.wav")
    assert beside.read_bytes() == cached.read_bytes()
    frames = sum(1 for _ in iter_frames(out))
    # the video is as long as the speech (less than Wav2Lip's 0.2 s mel window at the end)
    assert abs(frames / 25 - read_audio_track(beside).duration) < 0.25


def test_cli_needs_audio_or_text_not_both(tmp_path, capsys):
    from wav2lip_uhq.cli import EXAMPLES, main

    face = str(EXAMPLES / "face.jpg")
    assert main(["run", "--face", face]) == 2
    assert "give --audio, or --text / --text-file" in capsys.readouterr().err
    assert main(["run", "--face", face, "--audio", str(EXAMPLES / "speech.m4a"), "--text", "hi"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:  # argparse: the option's own range
        main(["run", "--face", face, "--text", "hi", "--tts-speed", "9"])
    assert bad.value.code == 2 and "speaking speed must be between" in capsys.readouterr().err


@needs_espeak
def test_cli_lists_voices_by_language(capsys):
    from wav2lip_uhq.cli import main

    assert main(["voices", "--language", "de"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("de ") for line in lines)
    assert main(["voices"]) == 0
    assert any(line.split()[1] == "en-us" and line.endswith("(default)") for line in capsys.readouterr().out.splitlines())
    assert main(["voices", "--tts-engine", "piper", "--language", "en"]) == 0
    assert "en_US-lessac-medium" in capsys.readouterr().out


class CopyPipeline:
    """Stand-in pipeline: 'lip-syncs' by writing a file at the output, and records the audio it got."""

    def __init__(self):
        self.audio = None

    def run(self, config, progress=None, cancel=None):
        from wav2lip_uhq.pipeline import RunResult

        self.audio = config.audio
        out = config.out
        out.write_bytes(b"video")
        return RunResult(output=out, frames=1, frames_without_face=0, fps=25.0, detection_cached=False,
                         timings={"total": 0.0})


@needs_espeak
def test_ui_text_replaces_the_audio_and_the_job_saves_it(tmp_path, astronaut_png):
    pytest.importorskip("gradio")
    from wav2lip_uhq.ui.handlers import Handlers
    from wav2lip_uhq.ui.values import UI_KEYS, ui_defaults
    from wav2lip_uhq.ui_runner import UIRunner

    pipe = CopyPipeline()
    runner = UIRunner(results_dir=tmp_path / "r", cache_dir=tmp_path / "c", pipeline=pipe)
    h = Handlers(runner)
    values = {**ui_defaults(), "face": str(astronaut_png), "text": "Spoken in the tab.", "voice": "en-us"}
    args = [values[k] for k in UI_KEYS]
    heard = h.speak(args)  # the Speak button: audio for the player, before any lip sync
    assert Path(heard).parent == tmp_path / "c" / "speech" and read_wav(Path(heard))[0].size
    config = h.config(args)
    assert config.audio == Path(heard) and config.speech.text == "Spoken in the tab."
    config.out = tmp_path / "r" / "tab.mp4"
    (tmp_path / "r").mkdir()
    job = runner.run(config, timeout=60)
    assert pipe.audio == Path(heard) and job.speech_path == tmp_path / "r" / "tab.wav"
    assert job.speech_path.read_bytes() == Path(heard).read_bytes()


def test_ui_speak_without_text_says_so(tmp_path):
    gr = pytest.importorskip("gradio")
    from wav2lip_uhq.ui.handlers import Handlers
    from wav2lip_uhq.ui.values import UI_KEYS, ui_defaults
    from wav2lip_uhq.ui_runner import UIRunner

    values = ui_defaults()
    with pytest.raises(gr.Error, match="Type the text"):
        Handlers(UIRunner(results_dir=tmp_path, cache_dir=tmp_path)).speak([values[k] for k in UI_KEYS])


@needs_espeak
def test_api_text_instead_of_audio(tmp_path, astronaut_png):
    from wav2lip_uhq.api import ApiPolicy
    from wav2lip_uhq.api.requests import ApiError, parse_request, schema
    from wav2lip_uhq.ui_runner import UIRunner

    policy = ApiPolicy(results_dir=tmp_path / "r", uploads_dir=tmp_path / "u", allowed_dirs=(astronaut_png.parent,))
    runner = UIRunner(results_dir=tmp_path / "r", cache_dir=tmp_path / "c")
    config = parse_request({"face": str(astronaut_png), "settings": {"text": "From the API.", "tts_speed": 1.2}},
                           policy, runner, "0001-aaaaaaaaaaaa")
    assert config.audio.parent == tmp_path / "c" / "speech" and config.speech.speed == 1.2
    with pytest.raises(ApiError, match="not both") as both:
        parse_request({"face": str(astronaut_png), "audio": "x.wav", "settings": {"text": "Hi."}}, policy, runner,
                      "0002-aaaaaaaaaaaa")
    assert both.value.status == 400
    with pytest.raises(ApiError, match="settings.text: .*downloads are off") as off:  # the server's choice
        parse_request({"face": str(astronaut_png), "settings": {"text": "Hi.", "tts_engine": "piper"}}, policy,
                      runner, "0003-aaaaaaaaaaaa")
    assert off.value.status == 422
    with pytest.raises(ApiError, match="text_file"):  # a server path: never from a client
        parse_request({"face": str(astronaut_png), "settings": {"text_file": "/etc/passwd"}}, policy, runner,
                      "0004-aaaaaaaaaaaa")
    assert schema()["required"] == ["face"] and "text" in schema()["properties"]["settings"]["properties"]
