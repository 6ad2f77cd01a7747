"""LSE metric network: same outputs as syncnet_python's S on the shared goldens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.lse import SyncNetLSE, calc_pdist, load_lse_model, lse_scores
from wav2lip_uhq.models.fill import fill_rule_state_dict

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "models"


def _golden_model() -> SyncNetLSE:
    keys = json.loads((REF / "syncnet_lse.keys.json").read_text())
    model = SyncNetLSE()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert [k for k, _, _ in keys] == list(ours), "state_dict order/names differ from syncnet_python"
    assert all(tuple(s) == ours[k] for k, s, _ in keys)
    model.load_state_dict(fill_rule_state_dict({k: tuple(s) for k, s, _ in keys}))
    return model.eval()


def test_lse_network_matches_golden():
    g = np.load(REF / "syncnet_lse.golden.npz")
    model = _golden_model()
    with torch.no_grad():
        aud = model.forward_aud(torch.from_numpy(g["audio"]))
        lip = model.forward_lip(torch.from_numpy(g["video"]))
    np.testing.assert_allclose(aud.numpy(), g["audio_feat"], rtol=1e-4, atol=1e-4 * np.abs(g["audio_feat"]).max())
    np.testing.assert_allclose(lip.numpy(), g["lip_feat"], rtol=1e-4, atol=1e-4 * np.abs(g["lip_feat"]).max())


def test_load_lse_model_round_trip(tmp_path):
    model = _golden_model()
    path = tmp_path / "syncnet_v2.model"
    torch.save(model.state_dict(), path)
    loaded = load_lse_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "bad.model")
    from wav2lip_uhq.errors import CheckpointError

    with pytest.raises(CheckpointError):
        load_lse_model(tmp_path / "bad.model")


def test_calc_pdist_offset_convention():
    """Video feature i equal to audio feature i - 2: the reported offset must be +2 (syncnet_python)."""
    torch.manual_seed(0)
    aud = torch.randn(30, 8)
    lip = torch.cat([torch.randn(2, 8), aud[:-2]])  # lip[i] = aud[i-2]
    d = calc_pdist(lip, aud, vshift=5).mean(0)
    offset = 5 - int(torch.argmin(d))
    assert offset == 2


def test_lse_scores_runs_on_a_clip():
    model = _golden_model()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(12)]
    wav = rng.standard_normal(16000 * 12 // 25).astype(np.float32) * 0.1
    res = lse_scores(model, frames, wav, vshift=3)
    assert res.frames == 7 and len(res.distances) == 7
    assert res.lse_d == pytest.approx(min(res.distances))
    assert res.lse_c == pytest.approx(float(np.median(res.distances)) - res.lse_d, abs=1e-5)
    assert -3 <= res.offset <= 3
