"""Checkpoint compatibility: our models reproduce upstream's outputs under the reference fill rule,
and the loader accepts every released format while refusing anything else with a clear message."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from wav2lip_uhq.errors import CheckpointError
from wav2lip_uhq.models import SyncNet, Wav2Lip, Wav2LipDiscQual, load_model, read_state_dict, save_checkpoint
from wav2lip_uhq.models.fill import fill_rule_state_dict

CASES = {
    "wav2lip_96": lambda: Wav2Lip(96),
    "wav2lip_288": lambda: Wav2Lip(288),
    "disc_qual_96": lambda: Wav2LipDiscQual(96),
    "disc_qual_288": lambda: Wav2LipDiscQual(288),
    "syncnet_96": lambda: SyncNet(96),
    "syncnet_384": lambda: SyncNet(288),
}


def _reference_model(reference, name):
    keys = json.loads((reference / "models" / f"{name}.keys.json").read_text())
    model = CASES[name]()
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, s) for k, s, _ in keys], f"{name}: state_dict layout differs from upstream"
    model.load_state_dict(fill_rule_state_dict({k: tuple(s) for k, s, _ in keys}))
    return model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_model_matches_upstream_golden(reference, name):
    model = _reference_model(reference, name)
    golden = np.load(reference / "models" / f"{name}.golden.npz")
    t = lambda k: torch.from_numpy(golden[k])  # noqa: E731
    with torch.no_grad():
        if name.startswith("wav2lip"):
            np.testing.assert_allclose(model(t("audio"), t("face")).numpy(), golden["out"], atol=1e-4)
            if "audio_seq" in golden:
                out = model(t("audio_seq"), t("face_seq")).numpy()
                np.testing.assert_allclose(out, golden["out_seq"], atol=1e-4)
        elif name.startswith("disc"):
            np.testing.assert_allclose(model(t("face_seq")).numpy(), golden["out"], atol=1e-4)
        else:
            a, v = model(t("audio"), t("face"))
            np.testing.assert_allclose(a.numpy(), golden["audio_emb"], atol=1e-4)
            np.testing.assert_allclose(v.numpy(), golden["face_emb"], atol=1e-4)


def test_parameter_counts_match_upstream(reference):
    summary = json.loads((reference / "models" / "summary.json").read_text())
    for name, make in CASES.items():
        assert sum(p.numel() for p in make().parameters()) == summary[name]["params"], name


@pytest.mark.parametrize("size", [192, 256])
def test_higher_resolution_generators_run(size):
    model = Wav2Lip(size).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, size, size))
    assert out.shape == (1, 3, size, size)
    assert Wav2LipDiscQual(size).eval()(torch.zeros(1, 3, size, size)).shape == (1, 1)


@pytest.fixture(scope="module")
def w2l_state():
    return fill_rule_state_dict(Wav2Lip(96))


def _check_loads(path, expect_state, **options):
    model = load_model(path, kind="wav2lip", **options)
    assert not model.training
    assert model.architecture.name == "wav2lip_96"
    got = model.state_dict()
    for k in ("face_encoder_blocks.0.0.conv_block.0.weight", "output_block.1.bias"):
        assert torch.equal(got[k], expect_state[k])


def test_loader_accepts_released_layout(tmp_path, w2l_state):
    path = tmp_path / "released.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in w2l_state.items()}, "optimizer": None,
                "global_step": 3, "global_epoch": 1}, path)
    _check_loads(path, w2l_state)


def test_loader_accepts_bare_state_dict_without_batch_counters(tmp_path, w2l_state):
    path = tmp_path / "bare.pt"
    torch.save({k: v for k, v in w2l_state.items() if not k.endswith("num_batches_tracked")}, path)
    _check_loads(path, w2l_state)


def _torchscript(path, state):
    """A traced Wav2Lip saved as TorchScript (the layout of the Wav2Lip-SD-*.pt releases)."""
    model = Wav2Lip(96).eval()
    model.load_state_dict(state)
    with torch.no_grad():
        torch.jit.trace(model, (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, 96, 96))).save(str(path))
    return path


def test_loader_accepts_safetensors_and_torchscript(tmp_path, w2l_state):
    st = save_checkpoint(w2l_state, tmp_path / "w.safetensors")
    _check_loads(st, w2l_state)
    ts = _torchscript(tmp_path / "Wav2Lip-SD-GAN.pt", w2l_state)
    _check_loads(ts, w2l_state, trust_torchscript=True)


def test_torchscript_is_code_and_needs_the_callers_trust(tmp_path, w2l_state):
    ts = _torchscript(tmp_path / "Wav2Lip-SD-GAN.pt", w2l_state)
    refused = r"Wav2Lip-SD-GAN\.pt: a TorchScript archive holds code.*--trust-torchscript"
    with pytest.raises(CheckpointError, match=refused):
        load_model(ts, kind="wav2lip")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_state_dict(ts)


def test_saver_writes_upstream_layout(tmp_path, w2l_state):
    path = save_checkpoint(w2l_state, tmp_path / "ours.pth", global_step=7)
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"state_dict", "optimizer", "global_step", "global_epoch"}
    assert raw["global_step"] == 7
    _check_loads(path, w2l_state)
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_wrong_kind_is_named(tmp_path):
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": fill_rule_state_dict(SyncNet(96))}, path)
    with pytest.raises(CheckpointError, match="syncnet checkpoint.*wav2lip model is needed"):
        load_model(path, kind="wav2lip")


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh)
    with pytest.raises(CheckpointError, match="refusing to unpickle|not a PyTorch checkpoint"):
        read_state_dict(path)
    assert "owned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"<html>404 Not Found</html>", "not a PyTorch checkpoint|corrupt"),
    ],
)
def test_garbage_files_are_refused(tmp_path, content, message):
    path = tmp_path / "wav2lip.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def test_truncated_checkpoint_is_refused(tmp_path, w2l_state):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": w2l_state}, good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated|not a PyTorch"):
        read_state_dict(bad)


def test_foreign_models_are_recognised(tmp_path):
    path = tmp_path / "s3fd.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="S3FD face detector"):
        load_model(path)


def test_mismatched_shapes_explain_themselves(tmp_path, w2l_state):
    state = dict(w2l_state)
    state["output_block.1.weight"] = torch.zeros(3, 16, 1, 1)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="looks like a wav2lip model but matches no known resolution"):
        load_model(path)
    assert zipfile.is_zipfile(path)


def test_a_torchscript_generator_runs_only_with_trust_torchscript(tmp_path, w2l_state, astronaut_png, speech_short,
                                                                  capsys):
    from wav2lip_uhq.cli import main

    ts = _torchscript(tmp_path / "Wav2Lip-SD-GAN.pt", w2l_state)
    base = ["run", "--face", str(astronaut_png), "--audio", str(speech_short), "--checkpoint", str(ts),
            "--mode", "fast", "--box", "80", "200", "170", "280", "--no-download", "-q",
            "--cache-dir", str(tmp_path / "c")]
    assert main([*base, "--out", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert "--trust-torchscript" in err and err.count("\n") == 1 and not (tmp_path / "a.mp4").exists()
    assert main([*base, "--out", str(tmp_path / "b.mp4"), "--trust-torchscript"]) == 0
    assert (tmp_path / "b.mp4").is_file()
