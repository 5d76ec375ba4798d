import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import LatentFile, load_latents, save_generator, save_latents
from stylelift.cli import app
from stylelift.errors import InputError
from stylelift.generation import stored_noises
from stylelift.projector import ProjectionOptions, parse_loss_spec, project, w_statistics
from stylelift.projector.losses import VGG16_FILE, MissingWeightsError, ms_ssim, ssim
from stylelift.projector import metrics
from stylelift.projector import run as run_module
from stylelift.projector.metrics import psnr
from stylelift.devices import same_device
from stylelift.projector.schedules import lr_at, noise_regularization, normalize_noises_, w_noise_scale_at

FAST = ProjectionOptions(working_resolution=0)


# --- schedules and regularisers -----------------------------------------------------------------


def test_lr_ramps_up_then_down_with_a_cosine():
    assert lr_at(0, 1000) == 0
    assert lr_at(25, 1000) == pytest.approx(0.05)  # half-way up the 5% ramp
    assert lr_at(500, 1000) == pytest.approx(0.1)
    assert lr_at(875, 1000) == pytest.approx(0.05)  # half-way down the 25% cosine
    assert lr_at(999, 1000) < 1e-4
    assert lr_at(5, 20, rampup_min_steps=10) == pytest.approx(0.05)  # 5% of 20 steps is one: ramped over 10 instead
    assert lr_at(2, 10, rampup_min_steps=10) == pytest.approx(0.04)  # over half a run shorter than 20 steps: 5 steps
    assert lr_at(25, 1000, rampup_min_steps=10) == lr_at(25, 1000)  # 5% of 1000 is more than 10: NVIDIA's ramp
    assert lr_at(1, 20, rampup=0, rampup_min_steps=10) == pytest.approx(0.1)  # no ramp-up asked for: none


def test_w_noise_decays_quadratically_to_zero_at_three_quarters():
    assert w_noise_scale_at(0, 100, w_std=2.0) == pytest.approx(0.1)
    assert w_noise_scale_at(375, 1000, w_std=1.0) == pytest.approx(0.05 * 0.25)
    assert w_noise_scale_at(750, 1000, w_std=1.0) == 0


def test_noise_regularization_is_zero_for_uncorrelated_and_large_for_smooth_noise():
    torch.manual_seed(0)
    white = torch.randn(2, 1, 64, 64)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 1, 8, 8), size=64, mode="bilinear")
    normalize_noises_([smooth])
    w, s = noise_regularization([white]), noise_regularization([smooth])
    assert w.shape == (2,) and (w < 1e-3).all() and (s > 0.5).all()


def test_noise_regularization_equals_nvidias_map_by_map_pyramid():
    def one_map_at_a_time(noises):  # NVIDIA's projector loop, per sample
        total = 0.0
        for noise in noises:
            while True:
                for dim in (3, 2):
                    total = total + (noise * torch.roll(noise, shifts=1, dims=dim)).mean(dim=[1, 2, 3]) ** 2
                if noise.shape[2] <= 8:
                    break
                noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)
        return total

    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 1, 8, 8), size=32, mode="bilinear")
    sizes = [4, 8, 8, 16, 64, 64, 128]  # a level with no map of its own (32) and maps that skip it
    noises = [torch.randn(2, 1, s, s, dtype=torch.float64) for s in sizes] + [smooth.double()]
    noises += [torch.randn(2, 1, 40, 17, dtype=torch.float64), torch.randn(2, 1, 12, 64, dtype=torch.float64)]  # the stop rule reads the height
    expected = one_map_at_a_time(noises)
    assert expected.shape == (2,) and expected.min() > 1e-3  # the smooth map dominates: not a 0 == 0 test
    torch.testing.assert_close(noise_regularization(noises), expected, rtol=1e-12, atol=0)
    grads = [torch.autograd.grad(f(noises_).sum(), noises_) for f in (noise_regularization, one_map_at_a_time)
             for noises_ in [[n.clone().requires_grad_() for n in noises]]]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-15)


def test_normalize_noises_gives_zero_mean_unit_variance_per_sample():
    x = torch.randn(3, 1, 8, 8) * torch.tensor([1.0, 5.0, 0.1]).reshape(3, 1, 1, 1) + 4
    normalize_noises_([x])
    assert torch.allclose(x.mean(dim=[1, 2, 3]), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.square().mean(dim=[1, 2, 3]), torch.ones(3), atol=1e-4)


# --- losses --------------------------------------------------------------------------------------


def test_metrics_judge_the_projection_as_saved_clamped_to_the_image_range(monkeypatch):
    monkeypatch.setattr(metrics, "face_distance", lambda a, b: None)
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    overshoot = target.clone()
    overshoot[:, :, :4] = torch.where(target[:, :, :4] > 0, 5.0, -5.0)  # a raw output far past [-1, 1]
    clamped = overshoot.clamp(-1, 1)
    u8 = np.zeros((16, 16, 3), np.uint8)
    m = metrics.projection_metrics(target, overshoot, u8, u8)
    assert m["psnr"] == metrics.projection_metrics(target, clamped, u8, u8)["psnr"] > 0
    assert m["ssim"] == metrics.projection_metrics(target, clamped, u8, u8)["ssim"]


def test_loss_spec_parsing():
    assert parse_loss_spec("mse=1, ms-ssim=0.5,l1") == {"mse": 1.0, "ms-ssim": 0.5, "l1": 1.0}
    with pytest.raises(InputError, match="unknown loss"):
        parse_loss_spec("mse,fancy=2")
    with pytest.raises(InputError, match="number"):
        parse_loss_spec("mse=abc")
    for spec in ("mse=1,,l1=1", "mse,", ","):  # the empty item was passed over, and the spec recorded with it
        with pytest.raises(InputError, match=r"has an empty item \(a comma too many\?\)$"):
            parse_loss_spec(spec)
    with pytest.raises(InputError, match="needs at least one term"):
        parse_loss_spec(" ")


def test_a_recorded_loss_is_the_same_loss_however_spelled():
    from stylelift.projector.losses import same_loss

    for recorded, given in (("mse", "mse=1.0"), ("mse,l1=0.5", " l1=.5, mse"), ("mse=1,", "mse"), ("mse,,l1", "mse,l1")):  # ',': older versions took it
        assert same_loss(recorded, given), (recorded, given)
    for recorded, given in (("mse", "mse=2"), ("mse", "mse,l1"), ("fancy", "mse"), (",", "mse"), (None, "mse"), (1.0, "mse")):
        assert not same_loss(recorded, given), (recorded, given)


def test_ssim_and_ms_ssim_are_one_for_identical_images_and_fall_with_noise():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-4)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-4)
    y = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    assert (ms_ssim(x, y) < 0.9).all() and (ssim(x, y) < 0.9).all()


def test_lpips_without_imagenet_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    G = tiny_generator()
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth") as e:
        project(G, torch.zeros(1, 3, 16, 16), steps=1, loss="lpips")
    assert "perceptual_weights=PATH" in str(e.value) and "--" not in str(e.value)  # the library's caller passes no options
    with pytest.raises(MissingWeightsError, match=r"^perceptual weights \S+none.pth: no such file$"):
        project(G, torch.zeros(1, 3, 16, 16), steps=1, loss="lpips", perceptual_weights=tmp_path / "none.pth")
    with pytest.raises(MissingWeightsError, match=r"^perceptual weights /dev/null: not a regular file$"):
        project(G, torch.zeros(1, 3, 16, 16), steps=1, loss="lpips", perceptual_weights="/dev/null")


def test_auto_loss_uses_lpips_when_possible_and_face_terms_only_for_aligned_faces(monkeypatch):
    from stylelift.projector import run

    monkeypatch.setattr(run, "lpips_available", lambda weights: False)
    assert run.resolve_loss("auto", None, aligned=True) == "mse=1,ms-ssim=1,face=0.1,face-id=0.1"
    assert run.resolve_loss("auto", None, aligned=False) == "mse=1,ms-ssim=1"
    assert run.resolve_loss("l1=2", None, aligned=True) == "l1=2"
    monkeypatch.setattr(run, "lpips_available", lambda weights: True)
    checked = []
    monkeypatch.setattr(run, "check_weights_for", lambda weights, explicit, otherwise: checked.append(weights))
    assert run.resolve_loss("auto", None, aligned=False) == "lpips=1"
    assert checked == [{"lpips": 1.0}]  # the weights file it chose is read before any work
    assert set(parse_loss_spec(run.OFFLINE_LOSS)) == {"mse", "ms-ssim", "face", "face-id"}


@pytest.mark.parametrize("term", ["lpips", "vgg16"])
def test_perceptual_terms_load_local_vgg_weights_and_pass_gradients(tmp_path, term):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)  # stand-in for ImageNet weights
    G = tiny_generator(img_resolution=32)
    target = G.synthesis(G.mapping(torch.randn(1, G.z_dim)))
    r = project(G, target, steps=3, loss=f"{term}=1", perceptual_weights=path, options=FAST)
    assert len(r.history) == 3 and math.isfinite(r.history[-1][term]) and r.history[0][term] > 0

    from stylelift.models.perceptual import VGG16Features
    from stylelift.projector.losses import REGISTRY, LossContext, unit_channels, load_lpips

    ctx = LossContext(device=torch.device("cpu"), perceptual_weights=path)
    synth = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    value = REGISTRY[term](target, ctx)(synth)
    (grad,) = torch.autograd.grad(value.sum(), synth)
    assert value.item() > 0 and grad.abs().sum() > 0  # the distance reaches the image it is given
    state = torch.load(path, weights_only=True)
    convs = [state[f"features.{i}.weight"] for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    if term == "lpips":  # its backbone is the file's VGG16, conv for conv, not a random one
        backbone = [m.weight for m in load_lpips(ctx).net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(backbone) == 13 and all(torch.equal(a, b) for a, b in zip(backbone, convs))
        from stylelift.models.perceptual import build_lpips

        whole = build_lpips(state, "cpu")  # a whole state dict (the classifier too), as VGG16Features takes one
        assert all(torch.equal(a, b) for a, b in zip([m.weight for m in whole.net.modules() if isinstance(m, torch.nn.Conv2d)], convs))
    else:  # NVIDIA's distance: channel-normalised features, squared, averaged over pixels, summed
        net = VGG16Features(state)
        expected = sum((unit_channels(f) - unit_channels(t)).square().mean(dim=[2, 3]).sum(dim=1) for f, t in zip(net(synth), net(target)))
        assert torch.allclose(value, expected, rtol=1e-5)
    import stylelift.projector.losses as losses

    reads = []
    original = losses._load_vgg16_state
    losses._load_vgg16_state = lambda p: reads.append(p) or original(p)
    try:  # a term for each new target (encoder training builds one every step): the network is built once
        for _ in range(3):
            REGISTRY[term](target, ctx)(synth)
        assert reads == []
        torch.save(state, path)  # the file changed: read again
        os.utime(path, ns=(10**9, 10**9))  # (whatever the file system's clock resolution)
        REGISTRY[term](target, ctx)
        assert len(reads) == 1
    finally:
        losses._load_vgg16_state = original


def test_vgg16_features_are_torchvisions_layers_with_its_state_dict():
    import torchvision

    from stylelift.models.perceptual import VGG16Features

    torch.manual_seed(1)
    ref = torchvision.models.vgg16(weights=None)
    net = VGG16Features(ref.state_dict())
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    expected = ref.features[:30](((x + 1) / 2 - net.mean) / net.std)  # relu5_3
    assert torch.equal(net(x)[-1], expected)


# --- the projector --------------------------------------------------------------------------------


def generated_target(G, seed=5, n=1):
    torch.manual_seed(seed)
    ws = G.mapping(torch.randn(n, G.z_dim), truncation_psi=0.7)
    return ws, G.synthesis(ws)


def test_a_short_run_from_a_good_start_never_ends_worse_than_it_started():
    """Refining a finished projection for a few steps, the learning rate ramping up again, ended far
    below where it started (the last step's state was returned); each target's best state is."""
    G = tiny_generator(img_resolution=32)
    ws, target = generated_target(G, n=2)
    target = torch.cat([target[:1], target[1:] * 0.5])  # the second is not the start's image: its steps do help
    opts = dict(steps=6, init=ws, loss="mse", optimize_noise=False)
    last = project(G, target, **opts, options=ProjectionOptions(lr=0.3, lr_rampup_min_steps=0, keep_best=False))  # NVIDIA's
    best = project(G, target, **opts, options=ProjectionOptions(lr=0.3, lr_rampup_min_steps=0))
    assert torch.equal(best.ws[0], ws[0]) and float(best.final_loss[0]) < 1e-10  # every step made the first worse: its start is kept
    assert float(last.final_loss[0]) > 1e-3 and float(psnr(last.image, target)[0]) < float(psnr(best.image, target)[0])
    start_1 = float(((G.synthesis(ws[1:2]) - target[1:2]) ** 2).mean())
    assert not torch.equal(best.ws[1], ws[1]) and float(best.final_loss[1]) < start_1  # the second moved on, to something better
    losses = [float(((G.synthesis(w[None]) - t[None]) ** 2).mean()) for w, t in zip(best.ws, target)]
    assert np.allclose(best.final_loss.numpy(), losses, rtol=1e-4, atol=1e-9)  # final_loss is the returned state's
    with pytest.raises(InputError, match="keep_best must be True or False"):
        ProjectionOptions(keep_best="yes")

    # with the noise maps: a projection's own maps given back (init_noises) are its start too, and
    # states are ranked by their distance, not by the noise regulariser (1e5 x autocorrelation)
    maps = [torch.randn(1, 1, layer.resolution, layer.resolution, generator=torch.Generator().manual_seed(k)) for k, layer in enumerate(G.synthesis.noise_layers())]
    own = G.synthesis(ws[:1], noises=maps)
    options = ProjectionOptions(lr=0.3, lr_rampup_min_steps=0)
    again = project(G, own, steps=6, init=ws[:1], init_noises=maps, loss="mse", options=options)
    assert torch.equal(again.ws, ws[:1]) and all(torch.equal(a, b) for a, b in zip(again.noises, maps)) and float(again.final_loss[0]) < 1e-10
    fresh = project(G, own, steps=6, init=ws[:1], loss="mse", options=options)  # random maps: the start is not the image
    assert float(fresh.final_loss[0]) > 1e-4
    with pytest.raises(InputError, match="with optimize_noise=False there is none"):
        project(G, own, steps=1, init=ws[:1], init_noises=maps, optimize_noise=False)
    with pytest.raises(InputError, match="^init_noises: noise map 0 must be a float tensor"):
        project(G, own, steps=1, init=ws[:1], init_noises=[m[..., :2] for m in maps])
    with pytest.raises(InputError, match="^init_noises: noises must be a list of 0 maps"):  # was taken silently
        project(tiny_generator(img_resolution=32, use_noise=False), own, steps=1, init=ws[:1], init_noises="garbage")


def test_w_plus_projection_recovers_a_generated_image():
    G = tiny_generator()
    _, target = generated_target(G)
    r = project(G, target, space="w+", steps=300, optimize_noise=False, loss="mse", options=FAST)
    assert float(psnr(r.image, target)[0]) > 28
    assert r.history[-1]["loss"] < r.history[0]["loss"] / 20
    assert {type(v) for k, v in r.history[-1].items() if k != "step"} == {float}  # numbers, not tensors: history goes to JSON


def test_w_projection_recovers_an_image_made_from_one_w():
    G = tiny_generator()
    _, target = generated_target(G)
    r = project(G, target, space="w", steps=150, optimize_noise=False, loss="mse", options=FAST)
    assert torch.equal(r.ws, r.ws[:, :1].expand_as(r.ws))  # one w for every layer
    assert float(psnr(r.image, target)[0]) > 30


def test_saved_latent_and_noise_rerender_the_reconstruction_exactly(tmp_path):
    G = tiny_generator()
    _, target = generated_target(G)
    r = project(G, target, steps=20, loss="mse", options=FAST)
    assert r.noises is not None and len(r.noises) == len(G.synthesis.noise_layers())
    again = G.synthesis(r.ws, noises=r.noises)
    assert torch.equal(again, r.image)


def test_a_batch_gives_what_one_by_one_gives():
    G = tiny_generator()
    _, targets = generated_target(G, n=3)
    batch = project(G, targets, steps=15, loss="mse=1,ms-ssim=0.5", seed=3, options=FAST)
    alone = project(G, targets[1:2], steps=15, loss="mse=1,ms-ssim=0.5", seed=3, options=FAST)
    assert (batch.ws[1:2] - alone.ws).abs().max() < 1e-4
    assert (batch.image[1:2] - alone.image).abs().max() < 1e-4


def test_the_generator_is_not_modified():
    G = tiny_generator()
    G.synthesis.b8.conv1.weight.requires_grad_(True)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    _, target = generated_target(G)
    project(G, target, steps=5, loss="mse", options=FAST)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert G.synthesis.b8.conv1.weight.requires_grad and not G.synthesis.b8.conv0.weight.requires_grad
    assert G.synthesis.b8.conv1.weight.grad is None
    assert not [m for m in G.modules() if getattr(m, "_frozen_cache", None) is not None]  # no copy of the weights left on it


def test_w_statistics_follow_changes_to_the_mapping_weights():
    from stylelift.projector.project import w_statistics

    G = tiny_generator()
    avg, std = w_statistics(G, samples=500)
    assert w_statistics(G, samples=500)[1] == std  # cached
    with torch.no_grad():
        G.mapping.fc1.weight.mul_(3)
    avg3, std3 = w_statistics(G, samples=500)
    assert std3 != pytest.approx(std, rel=1e-3) and not torch.allclose(avg3, avg)
    G.mapping.fc1.weight.data.div_(3)  # through .data, which torch does not count as a change
    assert w_statistics(G, samples=500)[1] == pytest.approx(std, rel=1e-5)


def test_weights_written_through_data_are_what_the_next_projection_uses():
    G = tiny_generator()
    _, target = generated_target(G)
    ws = G.mapping(torch.randn(1, G.z_dim)).requires_grad_(True)
    G.synthesis(ws)  # a user's own optimisation step through the frozen network
    G.synthesis.b16.conv1.weight.data.mul_(-1)  # weight surgery: torch does not count it as a change
    a, b = (project(G, target, steps=5, loss="mse", options=FAST) for _ in range(2))
    fresh = tiny_generator()
    fresh.load_state_dict(G.state_dict())
    c = project(fresh, target, steps=5, loss="mse", options=FAST)
    assert torch.equal(a.ws, b.ws) and torch.allclose(a.ws, c.ws, atol=1e-6)


def test_init_from_latents_and_bad_shapes():
    G = tiny_generator()
    ws, target = generated_target(G)
    r = project(G, target, steps=1, init=ws, optimize_noise=False, loss="mse", options=ProjectionOptions(lr=0.0, working_resolution=0))
    assert torch.allclose(r.ws, ws, atol=1e-6)
    r = project(G, target, steps=1, init=ws.tolist(), optimize_noise=np.bool_(False), loss="mse", options=ProjectionOptions(lr=0.0, working_resolution=0))
    assert torch.allclose(r.ws, ws, atol=1e-6)  # a nested list, as from JSON
    with pytest.raises(InputError, match="init latents"):
        project(G, target, steps=1, init=torch.zeros(1, 5, G.w_dim))
    with pytest.raises(InputError, match="target must be"):
        project(G, torch.zeros(1, 1, 16, 16), steps=1)
    pixels = ((target + 1) * 127.5).clamp(0, 255)  # a photo's 0..255 values, not [-1, 1]
    for bad, why in ((pixels.to(torch.uint8), "must be float"), (target * float("nan"), "NaN or infinite"), (target[:0], "no image")):
        with pytest.raises(InputError, match=why):
            project(G, bad, steps=1)
    with pytest.raises(InputError, match="init latents hold NaN"):
        project(G, target, steps=1, init=ws * float("nan"))
    with pytest.raises(InputError, match="space"):
        project(G, target, steps=1, space="z")
    with pytest.raises(InputError, match="generator is on cpu, but projection was asked on cuda$"):
        project(G, target, steps=1, device="cuda")  # (on a machine with a GPU too: G is on the CPU)
    options = {  # each refused before any step, in words
        "init": ("encoder", "init must be 'avg' or latents"),
        "steps": ("5", "steps must be a whole number"),
        "seed": (1.5, "seed must be a whole number"),
        "loss": ({"mse": 1}, "loss is a spec"),
        "options": (None, "options must be a ProjectionOptions"),
        "optimize_noise": ("no", "optimize_noise must be True or False"),
        "callback": (5, "callback must be a function"),
        "device": ("gpu", "unknown device 'gpu': use 'cpu', 'cuda' or 'cuda:N'"),
    }
    for name, (value, why) in options.items():
        with pytest.raises(InputError, match=why):
            project(G, target, **{"steps": 1, name: value})


def test_a_device_without_an_index_means_any_of_its_kind():
    # `--device cuda` once refused a generator that load_generator had put on cuda:0 (found on a GPU)
    assert same_device(torch.device("cuda:0"), "cuda") and same_device(torch.device("cuda", 1), torch.device("cuda"))
    assert same_device(torch.device("cuda:1"), "cuda:1") and same_device(torch.device("cpu"), "cpu")
    assert not same_device(torch.device("cuda:1"), "cuda:0") and not same_device(torch.device("cpu"), "cuda")
    assert not same_device(torch.device("cuda:0"), "cpu")


def test_projection_takes_any_name_of_the_generators_device_and_refuses_mps():
    G = tiny_generator()
    _, target = generated_target(G)
    for name in ("cpu", "cpu:0", torch.device("cpu")):  # tensors on 'cpu:0' report 'cpu'
        assert project(G, target, steps=1, loss="mse", device=name).ws.device == torch.device("cpu")
    with pytest.raises(InputError, match="^device 'mps': stylelift does not run on Apple's MPS"):
        project(G, target, steps=1, loss="mse", device="mps")


def test_w_noise_is_added_only_when_asked_for():
    G = tiny_generator()
    ws, target = generated_target(G)

    def first_image(**kw):
        seen = []
        project(G, target, steps=2, optimize_noise=False, loss="mse", callback=lambda step, synth, rec: seen.append(synth), **kw)
        return seen[0]  # step 0 renders w_opt + noise, before any update

    nvidia = ProjectionOptions(working_resolution=0, initial_noise_factor=0.05)
    untouched = G.synthesis(ws)  # (projection runs the modulated convs in another, equivalent form)
    assert torch.allclose(first_image(init=ws, options=FAST), untouched, atol=1e-5)  # the given latents, no noise
    assert float(psnr(first_image(init=ws, options=nvidia), target)[0]) < 40  # asked for explicitly, the noise is there
    w_avg = w_statistics(G)[0].reshape(1, 1, -1).expand_as(ws)  # the projector's start (a 10,000-sample mean)
    assert torch.allclose(first_image(options=FAST), G.synthesis(w_avg), atol=1e-5)  # none from w_avg either
    assert not torch.allclose(first_image(options=nvidia), G.synthesis(w_avg), atol=1e-3)  # NVIDIA's noise, asked for
    for bad in (-1.0, float("nan"), "0.05"):
        with pytest.raises(InputError, match="initial_noise_factor"):
            ProjectionOptions(initial_noise_factor=bad)
    assert ProjectionOptions(initial_noise_factor=None).initial_noise_factor == 0.0  # older versions' "by the start"


def test_loss_is_computed_at_the_working_resolution():
    G = tiny_generator(img_resolution=32)
    _, target = generated_target(G)
    seen = []
    r = project(G, target, steps=3, loss="mse", options=ProjectionOptions(working_resolution=16), callback=lambda s, img, rec: seen.append((img, rec["loss"])))
    assert [img.shape for img, _ in seen] == [(1, 3, 16, 16)] * 3
    small = torch.nn.functional.interpolate(target, size=(16, 16), mode="area")  # the target, area-downsampled
    for img, loss in seen:  # the loss is that image's distance to it
        assert abs(loss - float((img - small).square().mean())) < 1e-5 * max(1.0, loss)
    result_small = torch.nn.functional.interpolate(r.image, size=(16, 16), mode="area")
    assert torch.allclose(r.final_loss, (result_small - small).square().mean().reshape(1), rtol=1e-4)  # the returned state's (was the last step's, before its update)


def test_noise_maps_are_regularised_and_renormalised_every_step():
    G = tiny_generator(img_resolution=32)
    _, target = generated_target(G, n=2)
    r = project(G, target, steps=4, loss="mse", options=ProjectionOptions(working_resolution=16))
    for maps in r.noises:  # each sample's map: zero mean, unit variance, after every step
        assert torch.allclose(maps.mean(dim=[1, 2, 3]), torch.zeros(2), atol=1e-5)
        assert torch.allclose(maps.square().mean(dim=[1, 2, 3]), torch.ones(2), atol=1e-4)
    assert all(rec["noise_reg"] > 0 for rec in r.history)
    unregularised = project(G, target, steps=4, loss="mse", options=ProjectionOptions(working_resolution=16, noise_reg_weight=0.0))
    assert not all(torch.allclose(a, b) for a, b in zip(r.noises, unregularised.noises))  # the regulariser is in what is optimised


def test_projection_refuses_a_target_that_is_not_square_and_an_init_of_another_size():
    G = tiny_generator(img_resolution=32)
    _, target = generated_target(G, n=2)
    with pytest.raises(InputError, match="target must be square, got 32x16"):
        project(G, target[..., :16], steps=1, loss="mse")
    init = G.mapping(torch.randn(3, G.z_dim))
    with pytest.raises(InputError, match="init holds 3 latents for 2 targets"):
        project(G, target, steps=1, loss="mse", init=init)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def photo_dir(tmp_path):
    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    _, target = generated_target(G, n=2)
    d = tmp_path / "photos"
    d.mkdir()
    for i, img in enumerate((target.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()):
        Image.fromarray(img).resize((40, 40)).save(d / f"p{i}.png")
    (d / "broken.png").write_text("not a png")
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, ["project", *map(str, args)])


def test_project_init_from_a_latent_file_starts_from_its_noise_maps_too(photo_dir, caplog):
    """A few more steps from a finished projection: its w and its noise maps are the start (the maps
    started random, so the start was another image, and a short refinement ended below the first run)."""
    photo, net = photo_dir / "photos" / "p0.png", photo_dir / "net.pt"
    common = ("--network", net, "--no-align", "--loss", "mse", "--no-video")
    assert run(photo, *common, "--steps", "40", "--outdir", photo_dir / "a").exit_code == 0
    first = json.loads((photo_dir / "a" / "p0_metrics.json").read_text())
    r = run(photo, *common, "--steps", "2", "--init", photo_dir / "a" / "p0.npz", "--outdir", photo_dir / "b")
    assert r.exit_code == 0, r.output
    again = json.loads((photo_dir / "b" / "p0_metrics.json").read_text())
    assert again["psnr"] >= first["psnr"] - 0.01, (first, again)  # at least where it started
    start, result = load_latents(photo_dir / "a" / "p0.npz"), load_latents(photo_dir / "b" / "p0.npz")
    assert sorted(result.noises) == sorted(start.noises) and len(start.noises) > 0
    G = tiny_generator()
    foreign = {k: np.zeros([1, r, r], np.float32) for k, r in enumerate((4, 4, 8, 8, 16, 16))}  # a StyleGAN's six maps; this network has five
    save_latents(photo_dir / "foreign.npz", LatentFile(w=start.w, noises=foreign, meta={}))
    assert len(G.synthesis.noise_layers()) == 5
    r = run(photo, *common, "--steps", "2", "--init", photo_dir / "foreign.npz", "--outdir", photo_dir / "c")
    said = "foreign.npz: its noise maps do not fit this network's noise inputs; the projection starts from random ones"
    assert r.exit_code == 0 and said in caplog.text, r.output  # its w is a start all the same (it was refused, with advice for generate)


def test_a_damaged_vgg16_file_is_found_before_any_work_or_costs_only_the_lpips_metric(photo_dir, monkeypatch):
    photos, out = photo_dir / "photos", photo_dir / "out"
    torch.save({"weight": torch.zeros(2)}, photo_dir / "notvgg.pth")
    base = (photos / "p0.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--no-video")
    args = (*base, "--loss", "mse", "--outdir", out)
    r = run(*args, "--perceptual-weights", photo_dir / "notvgg.pth")  # asked for, so an error, though the loss is mse
    assert r.exit_code == 1 and r.output.startswith("error: ") and "notvgg.pth is not a torchvision VGG16 state dict" in r.output, r.output
    assert not out.exists()
    monkeypatch.setenv("TORCH_HOME", str(photo_dir / "torch"))  # torch's cache, where a download was cut short
    cached = photo_dir / "torch" / "hub" / "checkpoints" / VGG16_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 cut short")
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert f"no LPIPS in the metrics: cannot read VGG16 weights {cached}: a damaged zip" in r.output
    assert (out / "p0.npz").exists() and "lpips" not in json.loads((out / "p0_metrics.json").read_text())
    r = run(*base, "--loss", "auto", "--outdir", out / "auto")  # auto takes LPIPS only from a file it can read
    assert r.exit_code == 0 and "no LPIPS in the metrics or the loss: cannot read VGG16 weights" in r.output and "loss mse=1,ms-ssim=1" in r.output, r.output


def test_an_unexpected_error_preparing_one_photo_fails_that_photo_alone(photo_dir, monkeypatch):
    real = run_module.prepare

    def trips_on_p0(path, *args, **kwargs):
        if path.name == "p0.png":
            raise IndexError("list index out of range")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(run_module, "prepare", trips_on_p0)
    out = photo_dir / "out"
    r = run(photo_dir / "photos" / "p0.png", photo_dir / "photos" / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--outdir", out, "--loss", "mse", "--no-video")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "error: p0.png: unexpected IndexError: list index out of range" in r.output
    assert (out / "p1.npz").exists() and not (out / "p0.npz").exists()


def test_project_command_writes_every_file_and_skips_done_photos(photo_dir):
    out = photo_dir / "out"
    args = (photo_dir / "photos", "--network", photo_dir / "net.pt", "--steps", "12", "--no-align", "--outdir", out, "--loss", "mse", "--batch-size", "2")
    r = run(*args)
    assert r.exit_code == 1, r.output  # broken.png failed, the others were done
    assert "broken.png is not an image (in no format Pillow reads)" in r.output and "Traceback" not in r.output
    for stem in ("p0", "p1"):
        for suffix in (".npz", "_target.png", "_proj.png", "_proj.mp4", "_metrics.json"):
            assert (out / f"{stem}{suffix}").exists(), stem + suffix
    lf = load_latents(out / "p0.npz")
    assert lf.w.shape == (1, 6, 16) and lf.meta["steps"] == 12 and lf.meta["loss"] == "mse" and lf.meta["seed"] == 0 and lf.meta["w_noise"] == 0
    G = tiny_generator()
    image = G.synthesis(torch.from_numpy(lf.w), noises=stored_noises(G, lf.noises, "cpu"))
    saved = np.asarray(Image.open(out / "p0_proj.png"))
    assert np.array_equal((image.permute(0, 2, 3, 1)[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy(), saved)
    import json

    metrics = json.loads((out / "p0_metrics.json").read_text())
    from stylelift.images import to_tensor
    from stylelift.projector.losses import ssim
    from stylelift.projector.metrics import psnr

    target_png, proj_png = (to_tensor(Image.open(out / f"p0_{name}.png")) for name in ("target", "proj"))
    assert metrics["psnr"] == pytest.approx(float(psnr(target_png, proj_png)[0]), abs=0.05)  # the pair that was written (to 8-bit rounding)
    assert metrics["ssim"] == pytest.approx(float(ssim(target_png, proj_png)[0]), abs=2e-3)
    assert f"p0.png: done -> {out / 'p0.npz'} (PSNR {metrics['psnr']:.1f} dB, SSIM {metrics['ssim']:.3f})" in r.output
    mtime = (out / "p0.npz").stat().st_mtime_ns
    r = run(*args)
    assert "already done" in r.output and (out / "p0.npz").stat().st_mtime_ns == mtime
    other_photo = photo_dir / "elsewhere" / "p0.png"  # another photo of the same name
    other_photo.parent.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(other_photo)
    changed = {  # a finished photo is done only for the options it was done with
        "steps": (("--steps", "13"), "done earlier with steps 12 (now 13)"),
        "loss": (("--loss", "mse=1,l1=1"), "with loss 'mse' (now 'mse=1,l1=1')"),
        "loss spelled otherwise": (("--loss", "mse=1.0"), None),  # the same loss: done
        "space": (("--space", "w"), "with space 'w+' (now 'w')"),
        "seed": (("--seed", "1"), "with seed 0 (now 1)"),
        "no video": (("--no-video",), None),  # fewer files: still done
        "video": (("--video",), None),
    }
    for name, (extra, said) in changed.items():
        r = run(*args, *extra)
        if said is None:
            assert "p0.png: already done" in r.output, (name, r.output)
        else:
            assert r.exit_code == 1 and said in r.output and "pass --overwrite" in r.output, (name, r.output)
        assert (out / "p0.npz").stat().st_mtime_ns == mtime, name
    r = run(other_photo, *args[1:])
    assert r.exit_code == 1 and "done earlier from another photo of that name (p0.png)" in r.output, r.output
    shutil.copy(photo_dir / "photos" / "p0.png", other_photo)  # the same photo elsewhere: done
    r = run(other_photo, *args[1:])
    assert r.exit_code == 0 and "already done" in r.output, r.output
    r = run(*args, "--overwrite")
    assert (out / "p0.npz").stat().st_mtime_ns != mtime
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    (out / "p1_proj.mp4").unlink()
    r = run(photo_dir / "photos" / "p1.png", *args[1:])
    assert r.exit_code == 1 and "done earlier without p1_proj.mp4" in r.output, r.output
    np.savez(out / "p1.npz", w=np.zeros([1, 10, 100], np.float32))  # no meta (as NVIDIA's projector writes), another network's shape
    (out / "p1_proj.mp4").write_bytes(b"")
    r = run(photo_dir / "photos" / "p1.png", *args[1:])
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "p1.png: done earlier but its p1.npz does not fit this network (w [1, 10, 100], not [N, 6, 16]); pass --overwrite" in said, said  # was "already done"
    # redone without a video: the earlier run's video goes, else the next run with one took it as its own
    r = run(photo_dir / "photos" / "p0.png", *args[1:], "--steps", "13", "--no-video", "--overwrite")
    assert r.exit_code == 0 and not (out / "p0_proj.mp4").exists() and "removed the earlier run's p0_proj.mp4" in r.output, r.output
    r = run(photo_dir / "photos" / "p0.png", *args[1:], "--steps", "13")
    assert r.exit_code == 1 and "done earlier without p0_proj.mp4" in r.output, r.output


def test_project_command_bad_inputs(photo_dir, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(photo_dir / "torch-home"))  # no ImageNet weights cached there
    r = run(photo_dir / "photos" / "p0.png", "--network", photo_dir / "net.pt", "--init", photo_dir / "nope.npz", "--no-align")
    assert r.exit_code == 1 and "nope.npz" in r.output and "Traceback" not in r.output
    r = run(photo_dir / "photos" / "p0.png", "--network", photo_dir / "net.pt", "--loss", "fancy", "--no-align")
    assert r.exit_code == 2 and "unknown loss" in r.output
    for loss in ("lpips", "mse=1,vgg16=0.5"):  # weights that are not here: said once, before any photo is read
        r = run(photo_dir / "photos", "--network", photo_dir / "net.pt", "--loss", loss, "--no-align", "--outdir", photo_dir / "o")
        assert r.exit_code == 1 and r.output.count("error:") == 1 and "ImageNet VGG16 weights" in r.output, r.output
        assert "broken.png" not in r.output and not (photo_dir / "o").exists()


def test_running_out_of_gpu_memory_fails_that_batch_in_one_line_and_the_others_go_on(photo_dir, monkeypatch):
    from stylelift.projector import run as run_module

    real = run_module._project_batch

    def first_batch_too_big(G, batch, *args, **kwargs):
        if batch[0].path.name == "p0.png":  # as _project_batch passes on an optimisation's failure
            raise run_module._OptimisationFailed(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))  # a RuntimeError, not a MemoryError
        return real(G, batch, *args, **kwargs)

    monkeypatch.setattr(run_module, "_project_batch", first_batch_too_big)
    photos, out = photo_dir / "photos", photo_dir / "out"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out)
    assert r.exit_code == 1 and "p0.png: out of memory, even for one photo at a time" in r.output and "Traceback" not in r.output
    assert (out / "p1.npz").exists() and not (out / "p0.npz").exists()
    calls = []

    def batches_of_two_too_big(G, batch, *args, **kwargs):
        calls.append([item.path.name for item in batch])
        if len(batch) > 1:
            raise run_module._OptimisationFailed(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB"))
        return real(G, batch, *args, **kwargs)

    monkeypatch.setattr(run_module, "_project_batch", batches_of_two_too_big)
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", photo_dir / "o2", "--batch-size", "2")
    assert r.exit_code == 0 and "a batch of 2 photos failed (out of memory); projecting them one at a time" in r.stderr, r.output
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == ["p0.png", "p1.png"], r.stdout  # results on stdout; notes, as that one and the loss, on stderr
    assert "loss mse" in r.stderr and "loss" not in r.stdout
    assert calls == [["p0.png", "p1.png"], ["p0.png"], ["p1.png"]] and (photo_dir / "o2" / "p0.npz").exists() and (photo_dir / "o2" / "p1.npz").exists()

    def bug(G, batch, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(run_module, "_project_batch", bug)  # not every RuntimeError is a photo's failure
    r = run(photos / "p0.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", photo_dir / "out2")
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "a bug"


def test_a_folder_in_the_way_of_one_output_fails_that_photo_before_any_work(photo_dir):
    out = photo_dir / "out"
    (out / "p0_proj.png").mkdir(parents=True)
    photos = photo_dir / "photos"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out)
    assert r.exit_code == 1 and "p0_proj.png is a folder" in r.output, r.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("p0")) == ["p0_proj.png"]  # nothing of p0 written
    assert (out / "p1.npz").exists() and (out / "p1_metrics.json").exists()  # the other photo was done


@pytest.mark.parametrize("bad", [dict(lr=-0.1), dict(lr=float("nan")), dict(noise_ramp=0), dict(lr_rampdown=float("inf")), dict(lr_rampup=-1), dict(noise_reg_weight=-1), dict(working_resolution=2.5), dict(working_resolution=-1), dict(lr="0.1")])
def test_projection_options_are_checked_when_made(bad):
    with pytest.raises(InputError, match=next(iter(bad))):  # not a ZeroDivisionError or a torch error steps later
        ProjectionOptions(**bad)


def test_to_tensor_is_the_inverse_of_to_uint8_and_refuses_other_arrays():
    from stylelift.images import to_tensor, to_uint8

    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = to_tensor(pixels)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(to_uint8(t), pixels)  # every uint8 value comes back exactly
    grey = Image.fromarray(pixels[0]).convert("L")  # a PIL image of another mode is read as RGB
    assert np.array_equal(to_uint8(to_tensor(grey)), np.repeat(np.asarray(grey)[None, ..., None], 3, axis=-1))
    for bad in (pixels.astype(np.float32), pixels[..., :2], pixels[0, 0]):
        with pytest.raises(InputError, match="uint8"):
            to_tensor(bad)


def test_the_loss_is_the_weighted_sum_of_its_terms_at_every_step():
    G = tiny_generator(img_resolution=32)
    _, target = generated_target(G)
    r = project(G, target, steps=4, loss="mse=2,l1=0.5,ms-ssim=0.25", options=FAST)
    for rec in r.history:
        assert rec["loss"] == pytest.approx(2 * rec["mse"] + 0.5 * rec["l1"] + 0.25 * rec["ms-ssim"], rel=1e-5)
    from stylelift.projector.losses import CombinedLoss, LossContext

    synth = torch.rand_like(target) * 2 - 1
    loss = CombinedLoss({"mse": 3.0, "l1": 0.5}, target, LossContext(device=torch.device("cpu")))
    expected = 3 * (synth - target).square().mean(dim=[1, 2, 3]) + 0.5 * (synth - target).abs().mean(dim=[1, 2, 3])
    assert torch.allclose(loss(synth), expected)


def test_a_rerun_with_another_paste_region_pastes_again_without_projecting(tmp_path):
    """NAME_pasted.png says which region it pasted; asking for the other one pastes the earlier
    projection again (a file without the note, from before the choice, pasted the whole square)."""
    from pathlib import Path

    from stylelift.projector.files import PASTE_REGION_KEY

    save_generator(tiny_generator(), tmp_path / "net.pt")
    photo_path = Path(__file__).parents[1] / "examples" / "astronaut.png"
    args = (photo_path, "--network", tmp_path / "net.pt", "--loss", "mse", "--no-video", "--steps", "2", "--paste-back", "--outdir", tmp_path)
    assert run(*args).exit_code == 0
    pasted, latent = tmp_path / "astronaut_pasted.png", tmp_path / "astronaut.npz"
    mtime = latent.stat().st_mtime_ns
    face = np.asarray(Image.open(pasted))
    assert Image.open(pasted).text[PASTE_REGION_KEY] == "face"
    r = run(*args, "--paste-region", "square")
    assert r.exit_code == 0 and "already done; pasted its projection into the photo" in r.output, r.output
    assert Image.open(pasted).text[PASTE_REGION_KEY] == "square" and not np.array_equal(np.asarray(Image.open(pasted)), face)
    r = run(*args, "--paste-region", "square")
    assert r.exit_code == 0 and "already done (use --overwrite to redo)" in r.output, r.output
    pasted.write_bytes(pasted.read_bytes()[:100])  # damaged: pasted again
    r = run(*args, "--paste-region", "square")
    assert r.exit_code == 0 and "already done; pasted its projection into the photo" in r.output, r.output
    Image.open(pasted).save(pasted)  # as an earlier version wrote it: no note, the whole square
    r = run(*args, "--paste-region", "square")
    assert r.exit_code == 0 and "already done (use --overwrite to redo)" in r.output, r.output
    r = run(*args)
    assert r.exit_code == 0 and "already done; pasted its projection into the photo" in r.output, r.output
    assert np.abs(np.asarray(Image.open(pasted)).astype(int) - face).max() <= 1  # the file's quad is rounded to 1/1000 px
    assert latent.stat().st_mtime_ns == mtime  # never projected again
    no_paste = [a for a in args if a != "--paste-back"]
    r = run(*no_paste, "--seed", "1", "--overwrite")  # redone without a paste: the earlier one goes with the earlier projection
    assert r.exit_code == 0 and not pasted.exists(), r.output
    r = run(*args, "--seed", "1")
    assert r.exit_code == 0 and "already done; pasted its projection into the photo" in r.output, r.output


def test_project_pastes_back_records_the_alignment_and_starts_from_a_latent_file(tmp_path):
    from pathlib import Path

    from stylelift.align import align_face

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    photo_path = Path(__file__).parents[1] / "examples" / "astronaut.png"
    photo = Image.open(photo_path).convert("RGB")
    args = ("--network", tmp_path / "net.pt", "--loss", "mse", "--no-video")
    r = run(photo_path, *args, "--steps", "3", "--paste-back", "--outdir", tmp_path / "a")
    assert r.exit_code == 0, r.output
    lf = load_latents(tmp_path / "a" / "astronaut.npz")
    face = align_face(photo, size=G.img_resolution)
    assert np.allclose(lf.meta["alignment"]["quad"], face.transform_meta()["quad"])  # where the face sits in the photo
    pasted = np.asarray(Image.open(tmp_path / "a" / "astronaut_pasted.png").convert("RGB")).astype(int)
    assert pasted.shape == (photo.height, photo.width, 3)
    x0, y0, x1, y1 = face.box
    assert np.array_equal(pasted[:5, :5], np.asarray(photo)[:5, :5])  # outside the face: the photo itself
    assert np.abs(pasted - np.asarray(photo))[y0:y1, x0:x1].mean() > 1  # inside it: the projection
    profile = photo.info["icc_profile"]  # the astronaut photo's sRGB profile: what is written from the photo keeps it
    for name in ("astronaut_pasted.png", "astronaut_target.png", "astronaut_proj.png"):
        assert Image.open(tmp_path / "a" / name).info.get("icc_profile") == profile, name
    r = run(photo_path, *args, "--steps", "3", "--outdir", tmp_path / "c")  # --paste-back asked for later
    mtime = (tmp_path / "c" / "astronaut.npz").stat().st_mtime_ns
    r = run(photo_path, *args, "--steps", "3", "--paste-back", "--outdir", tmp_path / "c")
    assert r.exit_code == 0 and "already done; pasted its projection into the photo" in r.output, r.output
    assert (tmp_path / "c" / "astronaut.npz").stat().st_mtime_ns == mtime  # not projected again
    again = Image.open(tmp_path / "c" / "astronaut_pasted.png")
    (tmp_path / "c" / "astronaut_pasted.png").rename(tmp_path / "c" / "kept.png")
    (tmp_path / "c" / "astronaut_pasted.png").mkdir()  # a folder in the way: not "already done"
    r = run(photo_path, *args, "--steps", "3", "--paste-back", "--outdir", tmp_path / "c")
    assert r.exit_code == 1 and "astronaut.png: pasting its earlier projection" in r.output, r.output
    again = Image.open(tmp_path / "c" / "kept.png")
    assert np.abs(np.asarray(again.convert("RGB")).astype(int) - pasted).max() <= 1  # the file's quad is rounded to 1/1000 px
    assert again.info.get("icc_profile") == profile
    r = run(photo_path, *args, "--steps", "1", "--init", tmp_path / "a" / "astronaut.npz", "--outdir", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert np.allclose(load_latents(tmp_path / "b" / "astronaut.npz").w, lf.w, atol=1e-6)  # one step at lr 0: the file's ws


def test_a_video_that_cannot_be_written_fails_its_photo_and_the_others_go_on(photo_dir, monkeypatch):
    ffmpeg = photo_dir / "ffmpeg"
    ffmpeg.write_text("#!/bin/sh\necho 'no encoder' >&2\nexit 1\n")
    ffmpeg.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(ffmpeg))
    photos, out = photo_dir / "photos", photo_dir / "out"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out)
    assert r.exit_code == 1 and r.output.count("ffmpeg could not write") == 2 and "Traceback" not in r.output, r.output  # both were tried
    ffmpeg.write_text("#!/bin/sh\ncat > /dev/null; echo 'Error closing file: No space left on device' >&2\nexit 1\n")
    r = run(photos / "p0.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out)
    assert r.exit_code == 1 and r.output.strip().endswith(f"error: p0.png: {out / 'p0_proj.mp4'}: No space left on device"), r.output  # named the set's hidden temporary file


def test_photos_are_held_as_their_targets_and_one_changed_mid_run_fails_alone(photo_dir, monkeypatch):
    from stylelift.projector import run as run_module

    prepared, real_prepare, real_project = [], run_module.prepare, run_module.project

    def keep(*args, **kwargs):
        prepared.append(real_prepare(*args, **kwargs))
        return prepared[-1]

    def p0_replaced_meanwhile(G, target, **kwargs):  # p0 rewritten in place while the run goes on (same inode and size), its time set back
        path = photo_dir / "photos" / "p0.png"
        before = os.stat(path)
        with open(path, "r+b") as f:
            f.seek(before.st_size // 2)
            byte = f.read(1)
            f.seek(before.st_size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # (`touch -r`; the ctime it cannot set back)
        return real_project(G, target, **kwargs)

    monkeypatch.setattr(run_module, "prepare", keep)
    monkeypatch.setattr(run_module, "project", p0_replaced_meanwhile)
    photos, out = photo_dir / "photos", photo_dir / "out"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--no-video", "--outdir", out)
    assert r.exit_code == 1 and "p0.png changed while the run went on; project it again" in r.output and "p1.png: done" in r.output, r.output
    assert not (out / "p0.npz").exists() and (out / "p1.npz").exists()
    # a folder of 24 MP photos held whole until the end filled memory (1.3 GB for one, 2.8 GB for twelve)
    assert prepared and not any(isinstance(v, Image.Image) for item in prepared for v in vars(item).values())


def test_a_photo_whose_loss_overflows_in_a_batch_fails_alone(photo_dir, monkeypatch):
    from stylelift.projector import run as run_module

    real = run_module._project_batch

    def p1_diverges(G, batch, *args, **kwargs):
        if any(item.path.name == "p1.png" for item in batch):  # as project() says it, for the whole batch
            raise run_module._OptimisationFailed(InputError("the loss of target 2 of 2 became inf at step 3 (loss mse=1)"))
        return real(G, batch, *args, **kwargs)

    monkeypatch.setattr(run_module, "_project_batch", p1_diverges)
    photos, out = photo_dir / "photos", photo_dir / "out"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out, "--batch-size", "2")
    assert r.exit_code == 1 and "error: p1.png: the loss" in r.output and "error: p0.png" not in r.output, r.output
    assert (out / "p0.npz").exists() and not (out / "p1.npz").exists()


def test_the_library_names_the_target_whose_loss_overflows():
    G = tiny_generator()
    _, target = generated_target(G, n=2)
    target[1] = 1e20  # finite, but its squared error is not, in float32
    with pytest.raises(InputError, match=r"the loss of target 2 of 2 became inf at step 1 \(loss mse=1\)"):
        project(G, target, steps=3, loss="mse")


def test_a_photo_whose_files_cannot_be_written_fails_alone_in_its_batch(photo_dir, monkeypatch):
    """Its batch-mates were written and are done; the batch is not redone."""
    from stylelift.errors import VideoError
    from stylelift.projector import run as run_module

    real = run_module.write_projection

    def p1_unwritable(files, **kwargs):
        if files.stem == "p1":
            raise VideoError("ffmpeg could not write p1_proj.mp4: disk full")
        return real(files, **kwargs)

    monkeypatch.setattr(run_module, "write_projection", p1_unwritable)
    photos, out = photo_dir / "photos", photo_dir / "out"
    r = run(photos / "p0.png", photos / "p1.png", "--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out, "--batch-size", "2")
    assert r.exit_code == 1 and "p0.png: done" in r.output and "error: p1.png: ffmpeg could not write p1_proj.mp4" in r.output, r.output
    assert "error: p0.png" not in r.output and "one at a time" not in r.output and (out / "p0.npz").exists()


def test_project_face_index_projects_another_face_of_a_group_photo(tmp_path):
    from pathlib import Path

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    photo = Image.open(Path(__file__).parents[1] / "examples" / "astronaut.png").convert("RGB")
    head = photo.crop((100, 0, 350, 250))  # the astronaut's head
    two = Image.new("RGB", (600, 300))
    two.paste(head.resize((180, 180)), (360, 60))  # the smaller face: index 1
    two.paste(head, (0, 0))
    two.save(tmp_path / "two.png")
    args = ("--network", tmp_path / "net.pt", "--loss", "mse", "--no-video", "--steps", "1", "--outdir", tmp_path / "out")
    r = run(tmp_path / "two.png", *args, "--face-index", "1", "--paste-back")
    assert r.exit_code == 0 and "two.png (face 1 of the 2 found): done -> " in r.output, r.output
    alignment = load_latents(tmp_path / "out" / "two.npz").meta["alignment"]
    assert alignment["face_index"] == 1 and alignment["faces_found"] == 2 and alignment["box"][0] >= 300
    pasted = np.asarray(Image.open(tmp_path / "out" / "two_pasted.png").convert("RGB")).astype(int)
    changed = np.abs(pasted - np.asarray(two)).sum(axis=2) > 0
    assert changed[:, 300:].any() and not changed[:, :300].any()  # the face pasted where the smaller head is
    r = run(tmp_path / "two.png", *args)
    assert r.exit_code == 1 and "done earlier for face 1 of the photo (now 0)" in r.output, r.output
    r = run(tmp_path / "two.png", *args, "--face-index", "5", "--overwrite")
    assert r.exit_code == 1 and "2 face(s); face index 5 does not exist" in r.output, r.output
    r = run(tmp_path / "two.png", *args, "--face-index", "1", "--no-align")
    assert r.exit_code == 2 and "needs --align" in r.output, r.output


def test_an_earlier_runs_unwritten_outputs_are_stale_but_never_a_photo_of_the_run(tmp_path):
    from stylelift.fileio import file_id
    from stylelift.projector.files import ProjectionFiles

    files = ProjectionFiles(tmp_path, "bob")
    for name in ("bob_proj.mp4", "bob_pasted.png"):
        (tmp_path / name).write_bytes(b"x")
    assert files.stale(video=False, pasted=False) == ()  # no earlier projection: they are the user's own files
    save_latents(tmp_path / "bob.npz", LatentFile(w=np.zeros([1, 2, 3]), meta={"method": "encoder"}))
    assert files.stale(video=False, pasted=False) == ()  # nor beside an encoder's latent file
    save_latents(tmp_path / "bob.npz", LatentFile(w=np.zeros([1, 2, 3]), meta={"network_id": "x"}))
    assert files.stale(video=False, pasted=False) == (tmp_path / "bob_proj.mp4", tmp_path / "bob_pasted.png")
    assert files.stale(video=True, pasted=False) == (tmp_path / "bob_pasted.png",)
    assert files.stale(video=False, pasted=False, photos=frozenset({file_id(tmp_path / "bob_pasted.png")})) == (tmp_path / "bob_proj.mp4",)


def test_a_redo_that_fails_part_way_leaves_the_earlier_set_whole(photo_dir, monkeypatch):
    """project --overwrite wrote file by file: stopped at its pictures (a full disk, Ctrl-C), the
    earlier NAME.npz was already the new one, beside the old pictures, and the metrics gone."""
    import errno

    from stylelift.projector import files as files_module

    photos, out = photo_dir / "photos", photo_dir / "out"
    args = ("--network", photo_dir / "net.pt", "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out)
    assert run(photos / "p0.png", *args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = files_module.save_image

    def disk_full_at_the_projection(array, path, **kwargs):
        if "_proj" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(array, path, **kwargs)

    monkeypatch.setattr(files_module, "save_image", disk_full_at_the_projection)
    r = run(photos / "p0.png", *args, "--seed", "7", "--overwrite")
    assert r.exit_code == 1 and "No space left on device" in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the same files, byte for byte, and no temporary ones
    monkeypatch.undo()
    r = run(photos / "p0.png", *args, "--seed", "7", "--overwrite")
    assert r.exit_code == 0 and {p.name for p in out.iterdir()} == set(before) and (out / "p0.npz").read_bytes() != before["p0.npz"]


def test_project_with_a_full_stderr_still_projects(photo_dir):
    """Its first note (the network, the loss) on 2>/dev/full ended the run before any work."""
    import subprocess
    import sys

    out = photo_dir / "out"
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "stylelift", "project", str(photo_dir / "photos" / "p0.png"), "--network", str(photo_dir / "net.pt"),
                            "--steps", "1", "--no-align", "--loss", "mse", "--no-video", "--outdir", str(out)], stdout=subprocess.PIPE, stderr=full, timeout=300)
    assert p.returncode == 0 and p.stdout.decode().startswith("p0.png: done"), p.stdout
    assert (out / "p0.npz").is_file() and (out / "p0_metrics.json").is_file()
