"""``wav2lip-uhq batch --ray``: a 4-row batch on 2 CPU actors of a local Ray started here (no network)."""

from __future__ import annotations

import json
import shutil

import pytest

ray = pytest.importorskip("ray")

from wav2lip_uhq.batch.progress import BatchProgress  # noqa: E402
from wav2lip_uhq.cli import main  # noqa: E402

FAST = ["--mode", "fast", "--box", "80", "200", "170", "280", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local instance: no token written to the home folder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_four_rows_on_two_actors_that_keep_their_models(tmp_path, local_ray, astronaut_png, speech_short,
                                                        w2l_checkpoint, monkeypatch):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(astronaut_png, media / "face.png")
    shutil.copy(speech_short, media / "speech.wav")
    manifest = media / "rows.csv"
    manifest.write_text("face,audio,out\n" + "".join(f"face.png,speech.wav,r{i}.mp4\n" for i in range(4)))
    out_dir = tmp_path / "shared"
    args = ["batch", str(manifest), "--out-dir", str(out_dir), "--ray", "auto", "--workers", "2", "--ray-cpus", "1",
            "--checkpoint", str(w2l_checkpoint), "--cache-dir", str(tmp_path / "cache"), "-q", *FAST]
    seen = []
    real = BatchProgress.__call__
    monkeypatch.setattr(BatchProgress, "__call__", lambda self, event: (seen.append(event), real(self, event)))
    assert main(args) == 0
    frames = [e for e in seen if e[0] == "progress"]
    assert {e[1] for e in frames} == {0, 1, 2, 3} and all(0 <= e[2] <= e[3] for e in frames)
    assert any(e[2] == e[3] > 30 for e in frames)  # live, per row
    summary = json.loads((out_dir / "batch_summary.json").read_text())
    assert summary["backend"] == "ray:auto" and summary["done"] == 4
    assert all((out_dir / f"r{i}.mp4").is_file() for i in range(4))
    workers = [r["worker"] for r in summary["results"]]
    assert all(w.startswith("ray pid ") for w in workers) and len(set(workers)) == 2
    assert all(r["frames"] > 30 for r in summary["results"])
    # finished rows are skipped on the next invocation: nothing is sent to the cluster
    assert main(args) == 0
    assert json.loads((out_dir / "batch_summary.json").read_text())["skipped"] == 4
