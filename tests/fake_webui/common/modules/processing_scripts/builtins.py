"""``ScriptSeed`` and ``ScriptSampler`` (1.10: their ``setup`` overwrites seed / steps / sampler /
scheduler from the UI values unless ``p.is_api``), and a soft-inpainting stand-in."""

from __future__ import annotations

from modules import _fake, scripts


class ScriptSeed(scripts.ScriptBuiltinUI):
    section = "seed"
    create_group = False

    def title(self):
        return "Seed"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def setup(self, p, seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h):
        _fake.script_calls.append((self.title(), "setup"))
        p.seed = seed
        if seed_checkbox and subseed_strength > 0:
            p.subseed = subseed
            p.subseed_strength = subseed_strength


class ScriptSampler(scripts.ScriptBuiltinUI):
    section = "sampler"
    create_group = False

    def title(self):
        return "Sampler"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def setup(self, p, steps, sampler_name, *scheduler):
        _fake.script_calls.append((self.title(), "setup"))
        p.steps = steps
        p.sampler_name = sampler_name
        if scheduler:
            p.scheduler = scheduler[0]


class SoftInpainting(scripts.Script):
    """extensions-builtin/soft-inpainting: changes how the mask is blended when enabled."""

    def title(self):
        return "Soft Inpainting"

    def show(self, is_img2img):
        return scripts.AlwaysVisible if is_img2img else False

    def process(self, p, enabled, *args):
        _fake.script_calls.append((self.title(), "process"))

    def postprocess_image(self, p, pp, enabled, *args):
        _fake.script_calls.append((self.title(), "postprocess_image"))
