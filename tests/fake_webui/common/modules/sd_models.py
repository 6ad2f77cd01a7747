"""``modules/sd_models.py``: checkpoints and the loaded model (a stand-in object in the fake)."""

from __future__ import annotations

import hashlib
import os

from modules import _fake, paths


def model_hash(filename):
    return hashlib.sha256(os.path.basename(filename).encode()).hexdigest()[:8]


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        self.name = os.path.basename(filename)
        self.name_for_extra = os.path.splitext(self.name)[0]
        self.model_name = self.name_for_extra
        self.hash = model_hash(filename)
        self.sha256 = None
        self.shorthash = self.hash[:10]
        self.title = f"{self.name} [{self.shorthash}]"
        self.short_title = f"{self.name_for_extra} [{self.shorthash}]"
        self.ids = [self.hash, self.model_name, self.title, self.name, self.name_for_extra]

    def register(self):
        checkpoints_list[self.title] = self
        for i in self.ids:
            checkpoint_aliases[i] = self


class FakeSDModel:
    """What the glue may read off ``shared.sd_model``."""

    def __init__(self, filename="v1-5-pruned-emaonly.safetensors", *, is_sdxl=False):
        self.sd_checkpoint_info = CheckpointInfo(os.path.join(paths.models_path, "Stable-diffusion", filename))
        self.sd_model_hash = self.sd_checkpoint_info.hash
        self.sd_model_checkpoint = self.sd_checkpoint_info.filename
        self.is_sdxl = is_sdxl
        self.is_sd1 = not is_sdxl
        self.is_sd2 = False
        self.is_sd3 = False


checkpoints_list: dict[str, CheckpointInfo] = {}
checkpoint_aliases: dict[str, CheckpointInfo] = {}


class FakeInitialModel:
    """Forge's placeholder: ``shared.sd_model`` is never None there; until the first generation
    loads the selected checkpoint it is this object (no ``sd_checkpoint_info``)."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class ModelData:
    def __init__(self):
        self.sd_model = None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        if _fake.CONFIG["forge"]:
            self.forge_loading_parameters = {}  # {"checkpoint_info": CheckpointInfo | None, ...}
            self.forge_hash = ""

    def get_sd_model(self):
        # A1111 loads the checkpoint on first access and returns None when that fails;
        # Forge returns what it holds (a FakeInitialModel until the first generation).
        return _fake.sd_model

    def set_sd_model(self, v, already_loaded=False):
        _fake.sd_model = v
        self.sd_model = v
        self.was_loaded_at_least_once = v is not None or self.was_loaded_at_least_once


model_data = ModelData()


def forge_model_reload():
    """Forge: load the checkpoint of ``forge_loading_parameters`` unless it is the loaded one."""
    current_hash = str(model_data.forge_loading_parameters)
    if model_data.forge_hash == current_hash:
        return model_data.sd_model, False
    checkpoint_info = model_data.forge_loading_parameters.get("checkpoint_info")
    if checkpoint_info is None:
        raise ValueError("You do not have any model! Please download at least one model in [models/Stable-diffusion].")
    model = FakeSDModel(checkpoint_info.name)
    _fake.sd_model_loads.append(checkpoint_info.title)
    model_data.set_sd_model(model)
    model_data.forge_hash = current_hash
    return model, True


def checkpoint_tiles(use_short=False):
    return [x.short_title if use_short else x.title for x in checkpoints_list.values()]


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    info = checkpoint_aliases.get(search_string, None)
    if info is not None:
        return info
    found = sorted([info for info in checkpoints_list.values() if search_string in info.title],
                   key=lambda x: len(x.title))
    return found[0] if found else None


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    return _fake.sd_model


def unload_model_weights(sd_model=None, info=None):
    """Settings -> Actions "Unload SD checkpoint" and ``POST /sdapi/v1/unload-checkpoint``."""
    _fake.sd_model_unloads.append(1)
    return _fake.sd_model


def apply_token_merging(sd_model, token_merging_ratio):
    pass
