import pytest
import torch

from stylelift.models.stylegan2 import Generator, StyleGAN2Config


def tiny_config(**overrides) -> StyleGAN2Config:
    base = dict(z_dim=16, w_dim=16, img_resolution=16, channel_base=128, channel_max=16, mapping_layers=2)
    base.update(overrides)
    return StyleGAN2Config(**base)


def tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A small StyleGAN2 with every weight random (noise strengths, biases and w_avg too)."""
    torch.manual_seed(seed)
    G = Generator(tiny_config(**overrides))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "affine" in name else 0.0))
        G.mapping.w_avg.copy_(torch.randn(G.w_dim) * 0.5)
    return G.eval().requires_grad_(False)


@pytest.fixture
def G():
    return tiny_generator()


# Tiny networks run fastest on one thread, and two threads fight when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture
def sigint_raises():
    """SIGINT handled as Python does by default, for tests that send it: a CI script's background
    job (`pytest &`) starts with it ignored, and stylelift leaves an ignored signal ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)  # (None: set outside Python)
