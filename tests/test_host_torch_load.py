"""Inside AUTOMATIC1111/Forge ``torch.load`` is the host's ``modules.safe.load``, whose zip check
refuses files that newer torch writes (``.format_version``) and returns None. Found in a real
A1111 1.10.1: a checkpoint saved by torch 2.12 failed as "contains no model weights". Our
weights-only reads go to torch's own loader there."""

from __future__ import annotations

import sys
import types
import zipfile

import pytest
import torch

from wav2lip_uhq.models.loading import generator_kind, read_state_dict


@pytest.fixture
def host_safe_load(monkeypatch):
    """``modules.safe`` as A1111 1.10.1 installs it: ``torch.load`` replaced by a checking loader
    that refuses (None) any zip with an entry its pattern does not know."""
    original = torch.load
    calls = []

    def load(filename, *args, **kwargs):
        calls.append(filename)
        with zipfile.ZipFile(filename) as z:
            if any(n.endswith("/.format_version") for n in z.namelist()):
                return None  # A1111 prints "bad file inside ..." and gives up
        return original(filename, *args, **kwargs)

    safe = types.ModuleType("modules.safe")
    safe.load, safe.unsafe_torch_load = load, original
    monkeypatch.setitem(sys.modules, "modules.safe", safe)
    monkeypatch.setattr(torch, "load", load)
    return calls


def test_a_checkpoint_saved_by_new_torch_loads_under_the_hosts_torch_load(host_safe_load, w2l_checkpoint):
    with zipfile.ZipFile(w2l_checkpoint) as z:
        assert any(n.endswith("/.format_version") for n in z.namelist())  # what the host's check refuses
    assert torch.load(str(w2l_checkpoint), weights_only=True) is None  # the host's loader, as in A1111
    state = read_state_dict(w2l_checkpoint)
    assert "audio_encoder.0.conv_block.0.weight" in state and generator_kind(w2l_checkpoint) == "wav2lip"
    assert host_safe_load == [str(w2l_checkpoint)]  # only the call above went through the host's loader


def test_pickled_code_is_still_refused_under_the_host(host_safe_load, tmp_path):
    from wav2lip_uhq.errors import CheckpointError

    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": types.SimpleNamespace(x=1)}, bad)
    with pytest.raises(CheckpointError, match="bad.pth"):
        read_state_dict(bad)
