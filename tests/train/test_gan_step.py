"""One GAN step: D's gradient is the gradient of D's own loss alone, G's is that of G's loss alone.

Reference gradients are computed with ``torch.autograd.grad`` on fresh forwards of the same
weights and batch; ``backward_step`` must fill ``.grad`` with exactly those (a leak of the
generator's adversarial term into D, or of D's loss into G, shows up at the 1e-1 level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.runtime import Amp
from train.wav2lip import Nets, backward_step, build_generator
from wav2lip_uhq.models import Wav2LipDiscQual

DISC_WT = 0.07


def _batch(seed: int = 0, size: int = 96, b: int = 2, t: int = 5):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(b, 3, t, size, size, generator=g)
    masked = y.clone()
    masked[:, :, :, size // 2 :] = 0
    x = torch.cat([masked, torch.rand(b, 3, t, size, size, generator=g)], 1)
    mels = torch.randn(b, t, 1, 80, 16, generator=g)
    return x, mels, torch.randn(b, 1, 80, 16, generator=g), y


def _bce(p, target):
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def test_discriminator_gradient_is_its_own_loss_only():
    torch.manual_seed(0)
    gen, disc = build_generator(96, 0.25), Wav2LipDiscQual(96)
    gen.train()
    disc.train()
    x, mels, mel, y = _batch()
    g_params, d_params = list(gen.parameters()), list(disc.parameters())

    # references: the same forwards, gradients of each loss alone (BatchNorm in train mode: the same
    # batches give the same statistics as in backward_step)
    g = gen(mels, x)
    g_loss = (1 - DISC_WT) * F.l1_loss(g, y) + DISC_WT * _bce(disc(g), 1.0)
    ref_g = torch.autograd.grad(g_loss, g_params)
    d_loss = _bce(disc(y), 1.0) + _bce(disc(g.detach()), 0.0)
    ref_d = torch.autograd.grad(d_loss, d_params)
    # what the bug did: D's step also carried the generator's push towards "real"
    leak = torch.autograd.grad(DISC_WT * _bce(disc(g.detach()), 1.0), d_params)

    amp = Amp(torch.device("cpu"), enabled=False)
    nets = Nets(gen, amp, disc=disc, dnet=disc, disc_amp=Amp(torch.device("cpu"), enabled=False))
    logs = backward_step(nets, [(x, mels, mel, y)], sync_wt=0.0, disc_wt=DISC_WT, perceptual_wt=0.0)
    assert logs["perceptual"] > 0 and logs["disc_real"] > 0 and logs["disc_fake"] > 0

    leak_norm = torch.cat([t.flatten() for t in leak]).norm()
    got_d = torch.cat([p.grad.flatten() for p in d_params])
    want_d = torch.cat([t.flatten() for t in ref_d])
    assert leak_norm > 1e-2 * want_d.norm()  # the check below can see a leak of this size
    torch.testing.assert_close(got_d, want_d, rtol=1e-4, atol=1e-4 * float(want_d.abs().max()))
    got_g = torch.cat([p.grad.flatten() for p in g_params])
    want_g = torch.cat([t.flatten() for t in ref_g])
    torch.testing.assert_close(got_g, want_g, rtol=1e-4, atol=1e-4 * float(want_g.abs().max()))
    assert all(p.requires_grad for p in d_params)  # D trainable again after the generator phase
