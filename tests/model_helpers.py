"""Small models built locally for the tests (a plain module: importable from any test folder)."""

from __future__ import annotations


def random_gfpgan(**kw):
    """spandrel's GFPGANv1Clean with seeded random weights (``kw``: its constructor arguments).
    The noise strengths start at 0; they are set to 0.1 so that the stored noise matters."""
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    model = GFPGAN(**kw)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() == 1:
                p.fill_(0.1)
    return model


def small_gfpgan_file(folder):
    """A small random-weight GFPGAN (out_size 128) saved as ``GFPGANv1.4.pth`` in ``folder``."""
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    model = GFPGAN(out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
    path = folder / "GFPGANv1.4.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    return path


def small_upscaler_file(folder):
    """A tiny random-weight x2 Real-ESRGAN Compact saved as ``realesr-x2.pth`` in ``folder``."""
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1)
    path = folder / "realesr-x2.pth"
    torch.save({"params": Compact(num_feat=16, num_conv=2, upscale=2).state_dict()}, path)
    return path
