"""The run's summary says where the result differs from what a user would assume."""

from __future__ import annotations

import cv2

from wav2lip_uhq.cli import main


def test_fast_frame_count_and_odd_size_are_explained(tmp_path, astronaut_png, speech_short, w2l_checkpoint, capsys):
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), cv2.imread(str(astronaut_png))[:511, :509])
    code = main(["run", "--face", str(odd), "--audio", str(speech_short), "--checkpoint", str(w2l_checkpoint),
                 "--mode", "fast", "--box", "80", "200", "170", "280", "--no-download", "-q",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o.mp4")])
    out = capsys.readouterr().out
    assert code == 0 and "wrote" in out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert any("reference implementation's frame count" in n for n in notes)
    assert any("509x511 was written as 510x512" in n for n in notes)
