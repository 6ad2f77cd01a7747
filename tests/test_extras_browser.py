"""The extra outputs in a real browser, under gradio 3.41.2 (A1111) and 4.40.0 (Forge): tick them in
"Extra outputs", Run: the job gets them, and the result shows them as files to download.

``python tests/test_extras_browser.py --screenshot docs/screenshots/outputs.png`` takes the README
screenshot with the real pipeline (not part of the test run).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from test_app_browser import PREFIX

REPO = Path(__file__).resolve().parents[1]


def tick_extra_outputs(page, kinds: list[str]) -> None:
    """Open "Extra outputs" and tick ``kinds`` (a CheckboxGroup's labelled checkboxes)."""
    page.click(f"{PREFIX}extras_group .label-wrap")
    for kind in kinds:
        label = page.locator(f"{PREFIX}extra_outputs label").filter(has_text=re.compile(rf"^\s*{kind}\s*$"))
        label.first.click()
        assert label.first.locator("input").is_checked(), kind


def shown_files(page, names: list[str], timeout_ms: int = 30_000) -> list[str]:
    """Wait until the extra files list offers ``names`` as download links (the shown text may be
    shortened); the links' addresses."""
    page.wait_for_function(
        "([sel, names]) => { const links = [...document.querySelectorAll(sel + ' a[href]')];"
        " return names.every(n => links.some(a => decodeURIComponent(a.href).endsWith('/' + n))); }",
        arg=[f"{PREFIX}extra_files", names], timeout=timeout_ms,
    )
    return page.eval_on_selector_all(f"{PREFIX}extra_files a[href]", "links => links.map(a => a.href)")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gradio3", "gradio4"])
def test_extra_outputs_in_browser_under_host_gradio(name, tmp_path, astronaut_png, speech_short):
    from test_app_browser import upload
    from test_ui_gradio_versions import stand_in_app

    with stand_in_app(name, tmp_path, b"a ready-made video") as (page, calls):  # copied under every name
        upload(page, "face", astronaut_png)
        upload(page, "audio", speech_short)
        tick_extra_outputs(page, ["raw", "mask", "mask_png"])
        page.click(f"{PREFIX}run")
        page.wait_for_function("sel => document.querySelector(sel).value.startsWith('done')",
                               arg=f"{PREFIX}status textarea", timeout=60_000)
        [out] = (tmp_path / "results").glob("*.mp4.json")  # the result's settings: named after it
        stem = out.name.removesuffix(".mp4.json")
        links = shown_files(page, [f"{stem}.raw.mp4", f"{stem}.mask.mov"])
        summary = page.input_value(f"{PREFIX}summary textarea")
        assert f"also: mask_png: {stem}.mask_png/" in summary, summary
        raw = [href for href in links if f"{stem}.raw.mp4" in href]
        assert raw, links
        assert page.request.get(raw[0]).body() == b"a ready-made video"  # downloadable as it is
    [job] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert job["extra_outputs"] == ["raw", "mask", "mask_png"]  # in the declared order


def take_outputs_screenshot(path: Path) -> None:
    """outputs.png: the result column after a real run (rule-filled generator weights) with the
    extra outputs ticked and listed."""
    import tempfile

    import cv2
    import skimage.data
    import soundfile as sf
    import torch
    from test_app_browser import chromium_browser, open_app, running_app, upload

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(REPO)  # the app from this checkout, whatever is installed
    with tempfile.TemporaryDirectory(prefix="w2l_shots_") as tmp_name, chromium_browser() as browser:
        tmp = Path(tmp_name)
        ckpt = tmp / "wav2lip_gan.pth"
        torch.save({"state_dict": {"module." + k: v for k, v in fill_rule_state_dict(Wav2Lip(96)).items()}}, ckpt)
        face = tmp / "astronaut.png"
        cv2.imwrite(str(face), skimage.data.astronaut()[:, :, ::-1])
        wav, sr = sf.read(REPO.parent / "shared" / "reference" / "speech_16k.wav", dtype="float32")
        sf.write(tmp / "speech.wav", wav[: int(1.2 * sr)], sr)
        (tmp / "run").mkdir()
        with running_app(tmp / "run", ckpt) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            open_app(page, url)
            upload(page, "face", face)
            upload(page, "audio", tmp / "speech.wav")
            page.click(f"{PREFIX}faces_group .label-wrap")
            page.locator(f"{PREFIX}detector label").filter(has_text=re.compile(r"^\s*dlib\s*$")).first.click()
            tick_extra_outputs(page, ["raw", "composited", "debug", "mask", "mask_png"])
            page.click(f"{PREFIX}run")
            page.wait_for_function("sel => document.querySelector(sel).value.startsWith('done')",
                                   arg=f"{PREFIX}status textarea", timeout=300_000)
            shown_files(page, ["astronaut_speech.raw.mp4", "astronaut_speech.mask.mov"], timeout_ms=60_000)
            page.locator(f"{PREFIX}extras_group").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(path), full_page=True)


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(REPO))  # this checkout's package, whatever is installed

    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", type=Path, required=True, help="the PNG to write")
    take_outputs_screenshot(parser.parse_args().screenshot)
