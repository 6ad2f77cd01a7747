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
