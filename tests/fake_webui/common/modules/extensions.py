"""``modules/extensions.py``: the installed extensions (``install`` fills ``extensions``)."""

from __future__ import annotations

import os


class Extension:
    def __init__(self, name, path, enabled=True, is_builtin=False, canonical_name=None):
        self.name = name
        self.canonical_name = canonical_name or name.lower()
        self.path = path
        self.enabled = enabled
        self.status = ''
        self.can_update = False
        self.is_builtin = is_builtin
        self.commit_hash = ''
        self.version = ''
        self.remote = None
        self.have_info_from_repo = False

    def list_files(self, subdir, extension):
        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        return [os.path.join(dirpath, f) for f in sorted(os.listdir(dirpath))
                if os.path.splitext(f)[1].lower() == extension and os.path.isfile(os.path.join(dirpath, f))]


extensions: list[Extension] = []
extension_paths: dict[str, Extension] = {}


def active():
    from modules import shared

    if shared.cmd_opts.disable_all_extensions or shared.opts.disable_all_extensions == "all":
        return []
    if shared.cmd_opts.disable_extra_extensions or shared.opts.disable_all_extensions == "extra":
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]


def find_extension(filename):
    path = os.path.realpath(filename)
    for ext in extensions:
        root = os.path.realpath(ext.path)
        if path == root or path.startswith(root + os.sep):
            return ext
    return None
