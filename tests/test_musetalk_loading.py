"""MuseTalk's files as the user has them: the folder, its UNet folder or file, 1.0's layout,
the released VAE's older key names, and clear one-line errors for a missing or foreign file;
the ``musetalk`` name, the models listing, a verified download and the UI's dropdown."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from musetalk_helpers import write_folder

from wav2lip_uhq import checkpoints
from wav2lip_uhq.checkpoints import MUSETALK, resolve_checkpoint
from wav2lip_uhq.errors import CheckpointError
from wav2lip_uhq.generators.musetalk import MuseTalkGenerator
from wav2lip_uhq.models import load_model
from wav2lip_uhq.models.loading import generator_kind
from wav2lip_uhq.musetalk_layout import find_files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("mt") / "models")


def _copy(folder, tmp_path, name="models"):
    return shutil.copytree(folder, tmp_path / name)


def test_the_folder_its_unet_folder_and_its_unet_file_name_the_same_files(folder):
    files = [find_files(p) for p in (folder, folder / "musetalkV15", folder / "musetalkV15" / "unet.pth")]
    assert files[0] == files[1] == files[2] and files[0].version == "1.5"
    assert files[0].vae_weights.name == "diffusion_pytorch_model.bin"
    for p in (folder, folder / "musetalkV15" / "unet.pth"):
        assert generator_kind(p) == "musetalk"


def test_loaded_generator_makes_faces_from_the_released_layout(folder):
    gen = MuseTalkGenerator.load(folder / "musetalkV15" / "unet.pth", "cpu")
    assert gen.nets.files.version == "1.5" and gen.img_size == 256
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
    from wav2lip_uhq.generators.musetalk import MuseTalkInput

    faces = gen.generate([MuseTalkInput(crop, "a"), MuseTalkInput(crop, "a")], np.zeros((2, 50, 384), np.float32))
    assert faces.shape == (2, 256, 256, 3) and faces.dtype == np.uint8
    assert gen.store.misses == 1  # one encode for two items of the same content


def test_musetalk_1_0_layout_and_a_safetensors_vae(tmp_path):
    root = write_folder(tmp_path / "m10", version="1.0", safetensors_vae=True)
    files = find_files(root)
    assert files.version == "1.0" and files.unet.name == "pytorch_model.bin"
    assert files.vae_weights.suffix == ".safetensors"
    MuseTalkGenerator.load(root, "cpu")  # the older attention names are mapped


@pytest.mark.parametrize("missing", ["whisper/preprocessor_config.json", "sd-vae/config.json",
                                     "musetalkV15/musetalk.json"])
def test_a_missing_file_is_named(folder, tmp_path, missing):
    root = _copy(folder, tmp_path)
    (root / missing).unlink()
    with pytest.raises(CheckpointError, match=str(root / missing).replace("\\", "\\\\")):
        resolve_checkpoint(root)


def test_missing_weights_name_the_expected_file(folder, tmp_path):
    root = _copy(folder, tmp_path)
    (root / "whisper" / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="whisper/model.safetensors: missing .*pytorch_model.bin"):
        find_files(root)


def test_a_foreign_file_says_what_it_is(folder, tmp_path):
    root = _copy(folder, tmp_path)
    shutil.copy(root / "whisper" / "pytorch_model.bin", root / "sd-vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.bin: this is a whisper model .*not the sd-vae"):
        MuseTalkGenerator.load(root, "cpu")


def test_a_wav2lip_file_in_place_of_the_unet(folder, tmp_path, w2l_checkpoint):
    root = _copy(folder, tmp_path)
    shutil.copy(w2l_checkpoint, root / "musetalkV15" / "unet.pth")
    with pytest.raises(CheckpointError, match=r"unet.pth: not a MuseTalk UNet: \d+ missing"):
        MuseTalkGenerator.load(root, "cpu")


def test_the_unet_alone_or_as_wav2lip_gets_a_clear_message(folder, tmp_path):
    lone = tmp_path / "renamed.pth"
    shutil.copy(folder / "musetalkV15" / "unet.pth", lone)
    with pytest.raises(CheckpointError, match="must sit in its models folder"):
        generator_kind(lone)
    with pytest.raises(CheckpointError, match="this is MuseTalk's UNet"):
        load_model(lone, kind="wav2lip")


def test_weights_are_read_weights_only(folder, tmp_path):
    root = _copy(folder, tmp_path)
    torch.save({"x": torch.zeros(1), "bad": shutil.copy}, root / "sd-vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        MuseTalkGenerator.load(root, "cpu")


def test_the_musetalk_name_finds_the_folder_in_the_models_folder(folder, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(CheckpointError, match="models download musetalk"):
        resolve_checkpoint(MUSETALK, models, allow_download=False)
    shutil.copytree(folder, models / MUSETALK)
    assert resolve_checkpoint(MUSETALK, models, allow_download=False) == models / MUSETALK
    # MuseTalk's own models/ folder used as the models folder, unchanged
    assert resolve_checkpoint(MUSETALK, folder, allow_download=False) == folder


def test_models_listing_says_where_musetalks_files_go(tmp_path):
    rows = {c.name: (path, present) for c, path, present in checkpoints.list_checkpoints(tmp_path)}
    assert rows["musetalk/musetalkV15/unet.pth"] == (tmp_path / "musetalk" / "musetalkV15" / "unet.pth", False)
    assert {"musetalk/sd-vae/config.json", "musetalk/whisper/preprocessor_config.json"} <= set(rows)


def _source(folder, tmp_path):
    """A copy of ``folder`` under the released names (the bytes are what matters here)."""
    src = shutil.copytree(folder, tmp_path / "server")
    (src / "sd-vae" / "diffusion_pytorch_model.bin").rename(src / "sd-vae" / "diffusion_pytorch_model.safetensors")
    (src / "whisper" / "pytorch_model.bin").rename(src / "whisper" / "model.safetensors")
    return src


def _serve_from(monkeypatch, source, min_sizes=None):
    """MuseTalk's files served from ``source`` (file:// URLs: no network)."""
    files = []
    for c in checkpoints.MUSETALK_FILES:
        rel = c.filename.split("/", 1)[1]
        size = (source / rel).stat().st_size
        files.append(checkpoints.KnownCheckpoint(
            c.name, c.filename, c.kind, c.description, ((source / rel).as_uri(),),
            min_size=(min_sizes or {}).get(rel, 1), max_size=size + 10))
    monkeypatch.setattr(checkpoints, "MUSETALK_FILES", tuple(files))


def test_download_fetches_every_file_into_the_layout(folder, tmp_path, monkeypatch):
    src = _source(folder, tmp_path)
    _serve_from(monkeypatch, src)
    dest = checkpoints.download(MUSETALK, tmp_path / "models")
    assert dest == tmp_path / "models" / MUSETALK
    files = find_files(dest)
    assert files.unet.read_bytes() == (src / "musetalkV15" / "unet.pth").read_bytes()
    assert not list(dest.rglob("*.download"))


def test_a_truncated_download_leaves_nothing(folder, tmp_path, monkeypatch):
    src = _source(folder, tmp_path)
    (src / "whisper" / "model.safetensors").write_bytes(b"short")
    _serve_from(monkeypatch, src, min_sizes={"whisper/model.safetensors": 1000})
    with pytest.raises(CheckpointError, match="model.safetensors .*only 5 bytes"):
        checkpoints.download(MUSETALK, tmp_path / "models")
    assert not (tmp_path / "models" / MUSETALK / "whisper" / "model.safetensors").exists()
    assert not list((tmp_path / "models").rglob("*.download"))


def test_the_pinned_vae_and_whisper_weights_refuse_other_bytes(folder, tmp_path, monkeypatch):
    pinned = {c.filename: c for c in checkpoints.MUSETALK_FILES if c.sha256}
    assert {f: (c.size, c.sha256[:8]) for f, c in pinned.items()} == {
        "musetalk/sd-vae/diffusion_pytorch_model.safetensors": (334_643_276, "a1d99348"),
        "musetalk/whisper/model.safetensors": (151_061_672, "7ebd0e69"),
    }
    src = _source(folder, tmp_path)
    _serve_from(monkeypatch, src)
    vae = "musetalk/sd-vae/diffusion_pytorch_model.safetensors"
    size = (src / "sd-vae" / "diffusion_pytorch_model.safetensors").stat().st_size
    files = [dataclasses.replace(c, sha256=pinned[vae].sha256, size=size) if c.filename == vae else c
             for c in checkpoints.MUSETALK_FILES]  # the served bytes are not the released file's
    monkeypatch.setattr(checkpoints, "MUSETALK_FILES", tuple(files))
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors.*SHA-256"):
        checkpoints.download(MUSETALK, tmp_path / "models")
    assert not (tmp_path / "models" / vae).exists()
    assert not list((tmp_path / "models").rglob("*.download"))


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    missing.mkdir()
    for rel in ("musetalkV15",):
        (missing / rel).mkdir()
    files = [checkpoints.KnownCheckpoint(c.name, c.filename, c.kind, c.description,
                                         ((missing / "x").as_uri(),), 1) for c in checkpoints.MUSETALK_FILES]
    monkeypatch.setattr(checkpoints, "MUSETALK_FILES", tuple(files))
    with pytest.raises(CheckpointError, match="put it at .*musetalk/musetalkV15/unet.pth"):
        checkpoints.download(MUSETALK, tmp_path / "models")


def test_ui_dropdown_lists_musetalk_and_its_folders(folder, tmp_path):
    from wav2lip_uhq.ui.values import checkpoint_choices, resolve_checkpoint_choice

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(folder, models / "MuseTalk-copy")
    (models / "not-a-model").mkdir()
    choices = checkpoint_choices(models)
    assert "musetalk" in choices and "MuseTalk-copy" in choices and "not-a-model" not in choices
    assert resolve_checkpoint_choice("musetalk", models) == "musetalk"
    assert resolve_checkpoint_choice("MuseTalk-copy", models) == models / "MuseTalk-copy"


def test_silenced_frames_get_whispers_prompts_for_silence(folder, reference):
    import soundfile as sf

    gen = MuseTalkGenerator.load(folder, "cpu")
    wav, _ = sf.read(reference / "speech_16k.wav", dtype="float32")
    wav = wav[:16000]
    speech = gen.audio_features(wav, 25.0, cover=True)
    silent = np.zeros(len(speech), bool)
    silent[[3, 4, 10]] = True
    quiet = speech.silenced(silent)
    zeros = gen.audio_features(np.zeros_like(wav), 25.0, cover=True)
    np.testing.assert_allclose(quiet.take([3, 4, 10]), zeros.take([3, 4, 10]), atol=1e-5)
    np.testing.assert_array_equal(quiet.take([0, 5, 11]), speech.take([0, 5, 11]))
    assert not np.allclose(speech.take([3]), zeros.take([3]))
