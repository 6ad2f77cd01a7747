"""The UI's batch section: uploaded faces and audios paired by name or number (or named by an
uploaded manifest), the form's settings for every row, jobs of the UI's runner, resumed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from wav2lip_uhq.ui import DEFAULTS, UI_KEYS, UIRunner, build_ui  # noqa: E402


def upload(src: Path, tmp_path: Path, name: str) -> str:
    """A file as gradio hands an upload over: in a folder of its own."""
    folder = tmp_path / "gradio" / name.replace(".", "_")
    folder.mkdir(parents=True)
    return str(shutil.copy(src, folder / name))


def form(w2l_checkpoint) -> list:
    values = {k: None for k in UI_KEYS}
    values.update(DEFAULTS)
    values.update(mode="fast", checkpoint=str(w2l_checkpoint), box="80 200 170 280", batch_size=8,
                  text="typed for a single run, not the batch")
    return [values[k] for k in UI_KEYS]


def test_batch_section_pairs_uploads_runs_them_and_resumes(tmp_path, astronaut_png, speech_short, w2l_checkpoint):
    runner = UIRunner(results_dir=tmp_path / "res", cache_dir=tmp_path / "cache", device="cpu")
    batch = build_ui(runner).wav2lip_uhq_batch
    renamed = upload(speech_short, tmp_path, "tmp8x2k.wav")  # gradio 3 renames uploads, keeps orig_name
    files = [upload(astronaut_png, tmp_path, "anna_1.png"), upload(astronaut_png, tmp_path, "ben_2.png"),
             upload(speech_short, tmp_path, "line1.wav"), {"path": renamed, "orig_name": "line2.wav"}]
    updates = list(batch.run_batch(files, None, *form(w2l_checkpoint)))
    text, summary = updates[-1]
    assert text == "batch finished: 2 done of 2 rows", text
    out = tmp_path / "res" / "batch"
    assert sorted(p.name for p in out.glob("*.mp4")) == ["anna_1_line1.mp4", "ben_2_line2.mp4"]
    assert summary["done"] == 2 and (out / "batch_summary.json").is_file()
    assert not any((tmp_path / "cache" / "batch-uploads").iterdir())  # the staged links are gone
    again = list(batch.run_batch(files, None, *form(w2l_checkpoint)))[-1][1]
    assert again["skipped"] == 2


def test_batch_manifest_names_uploads_and_bad_rows_stop_it_before_it_starts(tmp_path, astronaut_png,
                                                                          speech_short, w2l_checkpoint):
    runner = UIRunner(results_dir=tmp_path / "res", cache_dir=tmp_path / "cache", device="cpu")
    batch = build_ui(runner).wav2lip_uhq_batch
    files = [upload(astronaut_png, tmp_path, "face.png"), upload(speech_short, tmp_path, "speech.wav")]
    manifest = tmp_path / "rows.csv"
    manifest.write_text("face,audio,out,crf\nface.png,speech.wav,a.mp4,99\n/etc/hostname,speech.wav,b.mp4,\n")
    with pytest.raises(gr.Error) as exc:
        list(batch.run_batch(files, str(manifest), *form(w2l_checkpoint)))
    assert "rows.csv: line 2: quality (CRF)" in str(exc.value)
    assert "line 3: face '/etc/hostname': name one of the uploaded files" in str(exc.value)
    assert not (tmp_path / "res" / "batch").exists()
    manifest.write_text("face,audio,out,crf\nface.png,speech.wav,a.mp4,30\n")
    summary = list(batch.run_batch(files, str(manifest), *form(w2l_checkpoint)))[-1][1]
    assert summary["done"] == 1 and (tmp_path / "res" / "batch" / "a.mp4").is_file()
    assert batch.stop_batch() == "no batch is running"
