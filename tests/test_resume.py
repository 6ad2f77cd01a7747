"""Resumable runs: an interrupted run continues at its first unfinished segment; the lossless result
is the uninterrupted run's, frame for frame and sample for sample; a changed input or setting is
refused by name; a damaged part is written again; nothing appears under the output's name before
the end."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from test_segments import assert_same_frames, audio_of, base_config, frames_of
from test_webui_extension import callbacks, webui  # noqa: F401 - the fake WebUI's fixture

from wav2lip_uhq.errors import Cancelled, InputError
from wav2lip_uhq.pipeline import LipSyncPipeline
from wav2lip_uhq.resume import interrupted_jobs, jobs_dir, list_jobs
from wav2lip_uhq.video import EncodeSettings

SEGMENT = 0.4  # seconds: 10 frames at 25 fps, segments [0,10) [10,20) [20,30) [30,35); generator batches of 8


@pytest.fixture(scope="module")
def pipeline():
    return LipSyncPipeline("cpu")


@pytest.fixture
def speech(speech_short, tmp_path):
    """The speech clip as a file of this test's own (some tests change its content)."""
    path = tmp_path / "speech.wav"
    path.write_bytes(speech_short.read_bytes())
    return path


def make_config(face, audio, ckpt, tmp_path, out, **kw):
    return dataclasses.replace(base_config(face, audio, ckpt, tmp_path), out=out, resume_every=SEGMENT, **kw)


def interrupt_after(pipeline, config, frames: int) -> list:
    """Run ``config`` and cancel it once ``frames`` frames are reported done (an event, not a
    timer); the output's name must hold nothing at any report. Returns the reports."""
    stop, reports = [False], []

    def progress(stage, done, total):
        assert config.out is None or not config.out.exists(), f"{config.out} appeared during the run"
        reports.append((stage, done, total))
        stop[0] = stop[0] or (stage == "lip-sync" and done >= frames)

    with pytest.raises(Cancelled):
        pipeline.run(config, progress, lambda: stop[0])
    assert config.out is None or not config.out.exists()
    return reports


def lip_sync_reports(reports) -> list[tuple[int, int]]:
    return [(d, t) for s, d, t in reports if s == "lip-sync"]


@pytest.fixture(scope="module")
def whole(pipeline, moving_face_video, speech_short, w2l_checkpoint, tmp_path_factory):
    """The uninterrupted run, not written in segments (--resume-every 0): the reference."""
    tmp = tmp_path_factory.mktemp("whole")
    config = make_config(moving_face_video, speech_short, w2l_checkpoint, tmp, tmp / "whole.mkv")
    pipeline.run(dataclasses.replace(config, resume_every=0.0))
    return tmp / "whole.mkv"


def test_a_cancelled_lossless_run_resumes_to_the_uninterrupted_runs_frames_and_audio(
        pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path, whole):
    out = tmp_path / "out.mkv"
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, out)
    interrupt_after(pipeline, config, 10)
    [job] = interrupted_jobs(config.cache_dir)
    assert job.out == out and job.frames_done == 10 and job.frames_total == 35
    assert sorted(p.name for p in job.folder.iterdir()) == ["part0000.mkv", "state.json"]  # no partial part left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "speech.wav"]  # nothing beside the output

    reports = []
    result = pipeline.run(dataclasses.replace(config, resume=True), lambda *r: reports.append(r))
    done = lip_sync_reports(reports)
    assert done[0] == (10, 35) and done[-1] == (35, 35)  # started at the first unfinished segment
    assert result.frames == 35 and result.output == out
    assert_same_frames(whole, out)
    assert np.array_equal(audio_of(whole), audio_of(out))
    assert list_jobs(config.cache_dir) == [] and not any(jobs_dir(config.cache_dir).iterdir())


def test_an_uninterrupted_resumable_run_equals_a_run_in_one_piece(pipeline, moving_face_video, speech_short,
                                                                   w2l_checkpoint, tmp_path, whole):
    config = make_config(moving_face_video, speech_short, w2l_checkpoint, tmp_path, tmp_path / "seg.mkv")
    assert pipeline.run(config).frames == 35
    assert_same_frames(whole, tmp_path / "seg.mkv")
    assert np.array_equal(audio_of(whole), audio_of(tmp_path / "seg.mkv"))
    assert not any(jobs_dir(config.cache_dir).iterdir())


def test_resume_refuses_a_changed_input_or_setting_by_name(pipeline, moving_face_video, speech, w2l_checkpoint,
                                                           tmp_path):
    out = tmp_path / "out.mkv"
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, out)
    interrupt_after(pipeline, config, 10)
    resume = dataclasses.replace(config, resume=True)
    with pytest.raises(InputError, match=r"--mode improved -> feather$"):
        pipeline.run(dataclasses.replace(resume, mode="feather"))
    with pytest.raises(InputError, match=r"--mask-feather 0.12 -> 0.2"):
        pipeline.run(dataclasses.replace(resume, composite=dataclasses.replace(config.composite, mask_feather=0.2)))
    original = speech.read_bytes()
    wav, sr = sf.read(speech, dtype="float32")
    sf.write(speech, wav * 0.5, sr)
    with pytest.raises(InputError, match=r"speech.wav: its content differs from the interrupted job's audio input"):
        pipeline.run(resume)
    with pytest.raises(InputError, match=r"other.mkv: no interrupted job writes this file"):
        pipeline.run(dataclasses.replace(resume, out=tmp_path / "other.mkv"))
    speech.write_bytes(original)
    assert not out.exists() and interrupted_jobs(config.cache_dir)[0].frames_done == 10  # the job is kept


def test_a_damaged_part_is_written_again(pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path, whole,
                                         caplog):
    out = tmp_path / "out.mkv"
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, out)
    interrupt_after(pipeline, config, 20)
    [job] = interrupted_jobs(config.cache_dir)
    assert job.frames_done == 20
    part = job.folder / "part0001.mkv"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    part.write_bytes(bytes(data))
    (job.folder / ".part0002.0badf00d.partial.mkv").write_bytes(b"left by a killed run")
    reports = []
    with caplog.at_level(logging.WARNING, logger="wav2lip_uhq"):
        pipeline.run(dataclasses.replace(config, resume=True), lambda *r: reports.append(r))
    assert "part0001.mkv: its content changed; this segment (frames 10-19)" in caplog.text
    assert lip_sync_reports(reports)[0] == (10, 35)  # part 0 kept, part 1 written again
    assert_same_frames(whole, out)


def test_a_fresh_run_leaves_an_interrupted_jobs_default_name_to_it(pipeline, moving_face_video, speech,
                                                                     w2l_checkpoint, tmp_path):
    """With no --out, a new run picks another name than the interrupted job's; --resume finds
    that job by its inputs' content and finishes it under its name."""
    results = tmp_path / "results"
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, None, results_dir=results)
    interrupt_after(pipeline, config, 10)
    assert not results.exists()  # nothing there yet (the folder the run made is removed again)
    other = pipeline.run(config)
    assert other.output.name == "moving_speech_1.mkv"
    resumed = pipeline.run(dataclasses.replace(config, resume=True))
    assert resumed.output == results / "moving_speech.mkv" and resumed.frames == 35
    with pytest.raises(InputError, match="no interrupted job with these inputs"):
        pipeline.run(dataclasses.replace(config, resume=True))


def test_h264_resumed_run_has_every_frame_once_at_the_seam(pipeline, moving_face_video, speech, w2l_checkpoint,
                                                            tmp_path):
    h264 = {"encode": EncodeSettings(lossless=False, crf=12)}
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mp4", **h264)
    reference = tmp_path / "one.mp4"
    pipeline.run(dataclasses.replace(config, out=reference, resume_every=0.0))
    interrupt_after(pipeline, config, 10)
    pipeline.run(dataclasses.replace(config, resume=True))
    import av

    with av.open(str(config.out)) as c:
        times = [f.time for f in c.decode(c.streams.video[0])]
    assert len(times) == 35 and np.allclose(np.diff(times), 0.04, atol=1e-3)
    ours, ref = [f.astype(np.int16) for f in frames_of(config.out)], [f.astype(np.int16) for f in frames_of(reference)]
    for i in range(8, 13):  # around the seam at 10: each frame is closest to its own frame of the reference
        errors = [np.abs(ours[i] - ref[j]).mean() for j in range(i - 2, i + 3)]
        assert int(np.argmin(errors)) == 2, (i, errors)


def test_runs_that_cannot_start_mid_run_are_not_resumable(pipeline, moving_face_video, speech, w2l_checkpoint,
                                                           tmp_path):
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "o.mkv", resume=True,
                         composite=dataclasses.replace(base_config(moving_face_video, speech, w2l_checkpoint,
                                                                   tmp_path).composite, debug_video=tmp_path / "d.mkv"))
    with pytest.raises(InputError, match=r"cannot resume: a run with extra outputs \(--extra-outputs, --debug-video\) is written in one piece"):
        pipeline.run(config)
    uhq = dataclasses.replace(config, mode="uhq", composite=dataclasses.replace(config.composite, debug_video=None),
                              refine=dataclasses.replace(config.refine, temporal_blend=0.5))
    with pytest.raises(InputError, match="cannot resume: uhq with --temporal-blend carries each refinement"):
        pipeline.run(uhq)
    with pytest.raises(InputError, match=r"cannot resume: --resume-every is 0 \(off\)"):
        pipeline.run(dataclasses.replace(config, composite=dataclasses.replace(config.composite, debug_video=None),
                                         resume_every=0.0))


def test_state_file_records_inputs_settings_and_parts(pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path):
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv")
    interrupt_after(pipeline, config, 10)
    [job] = interrupted_jobs(config.cache_dir)
    state = json.loads((job.folder / "state.json").read_text())
    assert state["out"] == str(tmp_path / "out.mkv") and state["segment_frames"] == 10
    assert set(state["digests"]) == {"face", "audio"} and state["values"]["mode"] == "improved"
    assert [(p["start"], p["end"]) for p in state["parts"]] == [(0, 10)]
    assert "out.mkv: 10/35 frames done" in job.describe()


# -- the CLI: --resume, a killed process, `jobs` -------------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
HANG_AFTER_FIRST_PART = """
import sys, time
import wav2lip_uhq.resume as resume
finish = resume.PartEncoder._finish_part
def finish_then_hang(self):  # the test's stand-in for a long run: it is killed here
    finish(self)
    print("saved", self.next, flush=True)
    time.sleep(600)
resume.PartEncoder._finish_part = finish_then_hang
from wav2lip_uhq.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_args(face, audio, ckpt, tmp_path, out):
    return ["run", "--face", str(face), "--audio", str(audio), "--checkpoint", str(ckpt), "--detector", "dlib",
            "--lossless", "--batch-size", "8", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
            "--resume-every", str(SEGMENT), "--out", str(out), "-q"]


def test_a_killed_cli_run_resumes_with_resume(moving_face_video, speech, w2l_checkpoint, tmp_path, whole, capsys):
    import os
    import signal
    import subprocess
    import sys

    from wav2lip_uhq.cli import main

    out = tmp_path / "out.mkv"
    args = cli_args(moving_face_video, speech, w2l_checkpoint, tmp_path, out)
    child = subprocess.Popen([sys.executable, "-c", HANG_AFTER_FIRST_PART, *args], stdout=subprocess.PIPE,
                             text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "saved 10"  # the first segment is on disk
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL and not out.exists()
    assert main(["jobs", "--cache-dir", str(tmp_path / "cache")]) == 0
    listing = capsys.readouterr().out
    assert "interrupted" in listing and "moving.mkv + speech.wav -> out.mkv: 10/35 frames done" in listing

    assert main([*args, "--resume"]) == 0
    assert f"wrote {out} (35 frames at 25 fps" in capsys.readouterr().out
    assert_same_frames(whole, out)
    assert np.array_equal(audio_of(whole), audio_of(out))
    assert main(["jobs", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip() == "no interrupted jobs"


def test_cli_resume_exit_codes(moving_face_video, speech, w2l_checkpoint, tmp_path, capsys):
    from wav2lip_uhq.cli import main

    args = cli_args(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv")
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'out.mkv'}: no interrupted job writes this file (`wav2lip-uhq jobs` lists them)"
    assert main(["jobs", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip() == "no interrupted jobs"
    assert main(["jobs", "--cache-dir", str(tmp_path / "cache"), "--discard", "abc"]) == 2
    assert "abc: no job has this key" in capsys.readouterr().err


def test_jobs_discard_removes_an_interrupted_job(pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path,
                                                 capsys):
    from wav2lip_uhq.cli import main

    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv")
    interrupt_after(pipeline, config, 10)
    [job] = interrupted_jobs(config.cache_dir)
    assert main(["jobs", "--cache-dir", str(config.cache_dir), "--discard", job.key[:8]]) == 0
    assert capsys.readouterr().out.strip() == f"discarded job {job.key[:8]}"
    assert list_jobs(config.cache_dir) == [] and not job.folder.exists()
    args = cli_args(moving_face_video, speech, w2l_checkpoint, tmp_path, config.out)
    assert main([*args, "--resume"]) == 2 and "no interrupted job writes this file" in capsys.readouterr().err


# -- the UI's Resume button and the HTTP API ------------------------------------------------------
def interrupted_default_job(pipeline, face, audio, ckpt, tmp_path):
    """An interrupted job with no --out (its name chosen in results/), as a UI or API job has."""
    config = make_config(face, audio, ckpt, tmp_path, None, results_dir=tmp_path / "results")
    interrupt_after(pipeline, config, 10)
    return config


def test_resume_button_resumes_the_last_interrupted_job_with_its_settings(pipeline, moving_face_video, speech,
                                                                          w2l_checkpoint, tmp_path, whole):
    from wav2lip_uhq.ui.handlers import Handlers
    from wav2lip_uhq.ui_runner import UIRunner

    runner = UIRunner(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", device="cpu", pipeline=pipeline)
    h = Handlers(runner, need_sd_checkpoint=False)
    button, info = h.resume_state()
    assert button["visible"] is False and info["visible"] is False
    interrupted_default_job(pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path)
    button, info = h.resume_state()
    assert button["visible"] is True and info["visible"] is True
    assert info["value"].startswith("moving.mkv + speech.wav -> moving_speech.mkv: 10/35 frames done")
    *_, last = list(h.resume())
    out = tmp_path / "results" / "moving_speech.mkv"
    assert last[0].startswith("done: moving_speech.mkv, 35 frames") and last[1] == str(out)
    assert runner.job.config.resume and runner.job.config.mode == "improved" and runner.job.config.resume_every == SEGMENT
    assert_same_frames(whole, out)
    assert h.resume_state()[0]["visible"] is False  # nothing left to resume
    status, *_ = list(h.resume())[-1]
    assert status == "error: there is no interrupted job to resume"


def test_api_resumes_an_interrupted_job_under_the_same_access_guard(pipeline, astronaut_png, speech,
                                                                    w2l_checkpoint, tmp_path):
    pytest.importorskip("fastapi")
    from api_helpers import api_client
    from test_api_access import basic

    from wav2lip_uhq.api import API_PREFIX

    api = api_client(tmp_path, w2l_checkpoint, astronaut_png, speech, credentials={"alice": "s3cret"})
    settings = {"checkpoint": "test_w2l.pth", "detector": "dlib", "batch_size": 8, "resume_every": SEGMENT}
    job = {"face": "face.png", "audio": "speech.wav", "settings": {**settings, "resume": True}, "wait": True}
    from wav2lip_uhq.api import parse_request

    config = parse_request({**job, "settings": settings}, api.policy, api.jobs.runner, "first", False)
    interrupt_after(pipeline, config, 10)  # the same request's job, interrupted
    assert api.post(API_PREFIX + "/run", json=job).status_code == 401
    assert interrupted_jobs(tmp_path / "cache")[0].frames_done == 10  # untouched by the refused request
    api.jobs.runner._pipeline = pipeline
    r = api.post(API_PREFIX + "/run", json=job, headers=basic("alice", "s3cret"))
    assert r.status_code == 200 and r.json()["state"] == "done", r.json()
    assert r.json()["output"] == str(tmp_path / "results" / "face_speech.mp4") and r.json()["frames"] == 35
    assert interrupted_jobs(tmp_path / "cache") == []
    r = api.post(API_PREFIX + "/run", json=job, headers=basic("alice", "s3cret"))
    assert r.json()["state"] == "error" and "no interrupted job with these inputs" in r.json()["error"], r.json()



def test_webui_tab_shows_resume_only_for_an_interrupted_job(webui, pipeline, moving_face_video,  # noqa: F811
                                                            speech, w2l_checkpoint, tmp_path):
    pytest.importorskip("gradio")
    webui.cmd_opts.wav2lip_uhq_cache_dir = str(tmp_path / "cache")
    for cb in callbacks(webui, "ui_settings"):
        cb()
    [(blocks, _, _)] = callbacks(webui, "ui_tabs")[0]()
    assert blocks.wav2lip_uhq_components["resume"].visible is False
    interrupted_default_job(pipeline, moving_face_video, speech, w2l_checkpoint, tmp_path)
    [(blocks, _, _)] = callbacks(webui, "ui_tabs")[0]()
    comps = blocks.wav2lip_uhq_components
    assert comps["resume"].visible is True and "moving_speech.mkv: 10/35 frames done" in comps["resume_info"].value


def test_old_interrupted_jobs_are_pruned_after_seven_days(tmp_path):
    import os
    import time

    from wav2lip_uhq.resume import MAX_AGE_DAYS, STATE, RunJob, job_key

    root = jobs_dir(tmp_path)
    for name, age_days in (("old.mkv", MAX_AGE_DAYS + 1), ("recent.mkv", MAX_AGE_DAYS - 1)):
        job = RunJob(root / job_key(tmp_path / name), {"version": 1, "out": str(tmp_path / name), "frames": 35,
                                                       "values": {}, "digests": {}, "parts": []}, 0)
        job.save()
        job.state["updated"] = time.time() - age_days * 86400
        (job.folder / STATE).write_text(json.dumps(job.state))
    (root / "no-state").mkdir()
    os.utime(root / "no-state", (time.time() - 7200,) * 2)  # a crash before the first state, 2 h ago
    assert [j.out.name for j in list_jobs(tmp_path)] == ["recent.mkv"]
    assert sorted(p.name for p in root.iterdir()) == [job_key(tmp_path / "recent.mkv")]


def test_ctrl_c_says_how_to_continue(moving_face_video, speech, w2l_checkpoint, tmp_path, capsys, monkeypatch):
    from wav2lip_uhq import pipeline as pipeline_module
    from wav2lip_uhq.cli import main

    def interrupted(config, progress=None, cancel=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "run", interrupted)
    args = cli_args(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv")
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == ("interrupted; no output written (the finished segments are kept: the "
                                               "same command with --resume continues it)")
    assert main([*args, "--resume-every", "0"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; no output written"


def test_an_unwritable_cache_makes_the_run_non_resumable_not_a_failure(pipeline, moving_face_video, speech,
                                                                       w2l_checkpoint, tmp_path, caplog):
    cache = tmp_path / "not-a-folder"
    cache.write_bytes(b"")  # a file where the cache folder should be: nothing can be written under it
    config = dataclasses.replace(make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv"),
                                 cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="wav2lip_uhq"):
        assert pipeline.run(config).frames == 35
    assert "the cache is not writable, so this run is written in one piece" in caplog.text
    assert (tmp_path / "out.mkv").is_file()


def test_the_ui_says_where_resume_continues_and_hides_it_while_a_job_stops(pipeline, moving_face_video, speech,
                                                                         w2l_checkpoint, tmp_path):
    """Seen in a real A1111: after Interrupt the status gave no hint, and Resume showed up while
    the interrupted job was still stopping."""
    from wav2lip_uhq.ui.handlers import Handlers
    from wav2lip_uhq.ui_runner import Job, UIRunner

    runner = UIRunner(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", device="cpu", pipeline=pipeline)
    config = make_config(moving_face_video, speech, w2l_checkpoint, tmp_path, tmp_path / "out.mkv")
    original = pipeline.run

    def run_and_interrupt(config, progress=None, cancel=None):  # Interrupt once 10 frames are done
        def report(stage, done, total):
            progress(stage, done, total)
            if stage == "lip-sync" and done >= 10:
                runner.cancel()

        return original(config, progress=report, cancel=cancel)

    pipeline.run = run_and_interrupt
    try:
        with pytest.raises(Cancelled):
            runner.run(config, timeout=120)
    finally:
        pipeline.run = original
    assert runner.progress_text() == "interrupted: no output written; Resume continues it from frame 10 of 35"
    h = Handlers(runner, need_sd_checkpoint=False)
    assert h.resume_state()[0]["visible"] is True
    runner.job = Job(config)  # a job that has not ended yet (e.g. still stopping)
    assert h.resume_state()[0]["visible"] is False
    with_extras = dataclasses.replace(config, extra_outputs=("raw",))
    runner.job = Job(with_extras, error=Cancelled("cancelled"))
    runner.job.done.set()
    assert runner.progress_text() == ("interrupted: no output written; it cannot be resumed: a run with extra "
                                      "outputs (--extra-outputs, --debug-video) is written in one piece")
