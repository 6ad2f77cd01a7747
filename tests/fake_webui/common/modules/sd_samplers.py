"""``modules/sd_samplers.py``: sampler names. 1.9+ lists samplers alone (the schedule comes from
``sd_schedulers``); 1.8 and older list combined names such as "DPM++ 2M Karras"."""

from __future__ import annotations

import logging
from collections import namedtuple

from modules import _fake

SamplerData = namedtuple('SamplerData', ['name', 'constructor', 'aliases', 'options'])

if _fake.CONFIG["sd_schedulers"]:
    _names = [
        ("DPM++ 2M", ['k_dpmpp_2m'], {'scheduler': 'karras'}),
        ("DPM++ SDE", ['k_dpmpp_sde'], {'scheduler': 'karras', "second_order": True, "brownian_noise": True}),
        ("DPM++ 2M SDE", ['k_dpmpp_2m_sde'], {'scheduler': 'exponential', "brownian_noise": True}),
        ("Euler a", ['k_euler_a', 'k_euler_ancestral'], {"uses_ensd": True}),
        ("Euler", ['k_euler'], {}),
        ("LMS", ['k_lms'], {}),
        ("Heun", ['k_heun'], {"second_order": True}),
        ("DDIM", ['ddim'], {"default_eta_is_0": True, "uses_ensd": True}),
        ("UniPC", ['unipc'], {}),
        ("LCM", ['k_lcm'], {}),
    ]
else:  # WebUI 1.8: the schedule is part of the name
    _names = [
        ("DPM++ 2M Karras", ['k_dpmpp_2m_ka'], {'scheduler': 'karras'}),
        ("DPM++ SDE Karras", ['k_dpmpp_sde_ka'], {'scheduler': 'karras', "second_order": True}),
        ("DPM++ 2M SDE Exponential", ['k_dpmpp_2m_sde_exp'], {'scheduler': 'exponential'}),
        ("DPM++ 2M SDE Karras", ['k_dpmpp_2m_sde_ka'], {'scheduler': 'karras'}),
        ("Euler a", ['k_euler_a', 'k_euler_ancestral'], {"uses_ensd": True}),
        ("Euler", ['k_euler'], {}),
        ("LMS", ['k_lms'], {}),
        ("Heun", ['k_heun'], {"second_order": True}),
        ("DPM++ 2M", ['k_dpmpp_2m'], {}),
        ("DPM++ SDE", ['k_dpmpp_sde'], {"second_order": True}),
        ("DPM++ 2M SDE", ['k_dpmpp_2m_sde'], {}),
        ("LMS Karras", ['k_lms_ka'], {'scheduler': 'karras'}),
        ("DDIM", ['ddim'], {"default_eta_is_0": True, "uses_ensd": True}),
        ("UniPC", ['unipc'], {}),
        ("LCM", ['k_lcm'], {}),
    ]

all_samplers = [SamplerData(name, None, aliases, options) for name, aliases, options in _names]
all_samplers_map = {x.name: x for x in all_samplers}
samplers = all_samplers
samplers_for_img2img = all_samplers
samplers_map: dict[str, str] = {}
for _s in all_samplers:
    samplers_map[_s.name.lower()] = _s.name
    for _alias in _s.aliases:
        samplers_map[_alias.lower()] = _s.name


def find_sampler_config(name):
    if name is not None:
        return all_samplers_map.get(name, None)
    return all_samplers[0]


def visible_samplers():
    from modules import shared

    return [x for x in samplers if x.name not in shared.opts.hide_samplers]


def get_sampler_and_scheduler(sampler_name, scheduler_name, *, convert_automatic=True):
    from modules import sd_schedulers

    default_sampler = samplers[0]
    found_scheduler = sd_schedulers.schedulers_map.get(scheduler_name, sd_schedulers.schedulers[0])
    name = sampler_name or default_sampler.name
    for scheduler in sd_schedulers.schedulers:
        name_options = [scheduler.label, scheduler.name, *(scheduler.aliases or [])]
        for name_option in name_options:
            if name.endswith(" " + name_option):
                found_scheduler = scheduler
                name = name[0:-(len(name_option) + 1)]
                break
    sampler = all_samplers_map.get(name, default_sampler)
    if convert_automatic and sampler.options.get('scheduler', None) == found_scheduler.name:
        found_scheduler = sd_schedulers.schedulers[0]
    return sampler.name, found_scheduler.label


def fix_p_invalid_sampler_and_scheduler(p):
    """1.9+: an unknown sampler or a legacy combined name is silently corrected (logged only)."""
    i_sampler_name, i_scheduler = p.sampler_name, p.scheduler
    p.sampler_name, p.scheduler = get_sampler_and_scheduler(p.sampler_name, p.scheduler, convert_automatic=False)
    if p.sampler_name != i_sampler_name or i_scheduler != p.scheduler:
        logging.getLogger(__name__).warning(f'Sampler Scheduler autocorrection: "{i_sampler_name}" -> "{p.sampler_name}", '
                        f'"{i_scheduler}" -> "{p.scheduler}"')


if not _fake.CONFIG["sd_schedulers"]:
    del get_sampler_and_scheduler, fix_p_invalid_sampler_and_scheduler
