"""The library as a researcher's script calls it: grad modes, numpy integers, the caller's random
stream, argument slips that should get a clear message."""

import numpy as np
import pytest
import torch
from PIL import Image

import stylelift
from conftest import tiny_generator
from stylelift import LatentFile, load_generator, project, save_generator, save_latents
from stylelift.editing import Direction, apply_direction, interpolation_path, lerp, load_direction, mixing_grid, resolve_direction, save_direction, sefa, truncate
from stylelift.editing.interpolation import between
from stylelift.errors import InputError
from stylelift.generation import render_ws
from stylelift.images import load_photo, save_image
from stylelift.models.encoder import new_encoder, save_encoder


def target_of(G, seed=1):
    with torch.no_grad():
        return G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))))


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_project_inside_no_grad_gives_what_it_gives_outside(mode):
    G = tiny_generator()
    target = target_of(G)
    expected = project(G, target, steps=3)
    with mode():
        got = project(G, target_of(G), steps=3)
        assert not torch.is_grad_enabled()  # the caller's mode is back after the call
    assert torch.equal(got.ws, expected.ws)
    assert got.final_loss == expected.final_loss


def test_project_inside_autocast_runs_in_float32_and_its_image_is_its_latents():
    G = tiny_generator()
    target = target_of(G)
    expected = project(G, target, steps=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = project(G, target, steps=3)
    assert got.image.dtype == torch.float32
    assert torch.equal(got.ws, expected.ws)
    assert got.final_loss == expected.final_loss
    with torch.no_grad():
        assert torch.equal(got.image, G.synthesis(got.ws, noises=got.noises))


def test_truncation_cutoff_takes_numpy_integers():
    G = tiny_generator()
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z, None)
    assert torch.equal(truncate(ws, G.w_avg, 0.5, cutoff=np.int64(2)), truncate(ws, G.w_avg, 0.5, cutoff=2))
    assert torch.equal(G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=np.int64(2)), G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2))


def test_a_cutoff_beyond_the_network_is_refused_even_at_psi_1():
    G = tiny_generator()
    with pytest.raises(InputError, match="between 0 and num_ws=6, got 100"):
        G.mapping(torch.randn(1, G.z_dim), None, truncation_psi=1, truncation_cutoff=100)
    with pytest.raises(InputError, match="whole number"):
        G.mapping(torch.randn(1, G.z_dim), None, truncation_psi=0.5, truncation_cutoff=2.5)


def test_loading_networks_and_encoders_leaves_the_callers_random_stream_alone(tmp_path):
    from stylelift.models.encoder import load_encoder, resolve_encoder_path

    save_generator(tiny_generator(), tmp_path / "tiny.pt")
    G = load_generator("mobile-ffhq")
    loads = {
        "a network file": lambda: load_generator(tmp_path / "tiny.pt"),
        "a random network by name": lambda: load_generator("random-stylegan-64"),
        "the shipped encoder": lambda: load_encoder(resolve_encoder_path("encoder"), G=G),
    }
    torch.manual_seed(123)
    expected = torch.randn(4)
    for what, load in loads.items():
        torch.manual_seed(123)
        load()
        assert torch.equal(torch.randn(4), expected), what


def test_the_face_loss_leaves_the_callers_random_stream_alone():
    from stylelift.models.dlib_resnet import convert_dlib_face_resnet, MODEL_FILE
    from stylelift.models.dlib_files import model_path

    torch.manual_seed(7)
    convert_dlib_face_resnet(model_path(MODEL_FILE))  # what the face terms build on their first use
    after = torch.randn(3)
    torch.manual_seed(7)
    assert torch.equal(after, torch.randn(3))


def test_render_ws_refuses_numpy_with_a_clear_message():
    G = tiny_generator()
    with pytest.raises(InputError, match=r"ws must be a real tensor of shape \[N, 6, 16\]"):
        render_ws(G, np.zeros([1, 6, 16], dtype=np.float32))


def test_save_generator_with_its_arguments_swapped_says_so(tmp_path):
    with pytest.raises(InputError, match="network first and the file second"):
        save_generator(tmp_path / "x.pt", tiny_generator())
    assert not list(tmp_path.iterdir())


def test_a_direction_that_requires_grad_is_saved(tmp_path):
    v = torch.randn(1, 16, requires_grad=True)
    save_direction(tmp_path / "d.npy", Direction(v, {"method": "mine"}))
    expected = v.detach().numpy()
    assert np.allclose(load_direction(tmp_path / "d.npy").vector, expected / np.linalg.norm(expected))  # read back as a unit normal


def test_a_batch_projections_noise_maps_are_refused_with_the_way_out(tmp_path):
    G = tiny_generator()
    r = project(G, torch.cat([target_of(G, 1), target_of(G, 2)]), steps=1)
    with pytest.raises(InputError, match=r"one per latent.*save one file per latent"):
        save_latents(tmp_path / "x.npz", LatentFile(w=r.ws, noises=dict(enumerate(r.noises)), meta={}))
    save_latents(tmp_path / "x0.npz", LatentFile(w=r.ws[:1], noises={k: n[:1] for k, n in enumerate(r.noises)}, meta={}))
    assert not (tmp_path / "x.npz").exists()


def test_mixing_grid_names_the_dtypes_that_differ():
    ws = torch.randn(3, 6, 16)
    with pytest.raises(InputError, match=r"float32 \[3, 6, 16\] and Tensor torch.float64 \[2, 6, 16\]"):
        mixing_grid(ws, torch.randn(2, 6, 16, dtype=torch.float64), [0, 1])


def test_interpolation_ends_exactly_on_its_keys_in_float64_too():
    a, b = torch.randn(6, 16, dtype=torch.float64), torch.randn(6, 16, dtype=torch.float64)
    path = lerp(a, b, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    t = 1 / 3  # not a float32 number: a float64 path is as exact as float64
    assert (between(a, b, t) - (a + (b - a) * t)).abs().max() < 1e-14
    keys = torch.randn(3, 2, 4, dtype=torch.float64)
    assert torch.equal(interpolation_path(keys, 5)[[0, 2, 4]], keys)


def test_sefa_fixes_each_directions_sign():
    d, _ = sefa(tiny_generator(), k=4)
    largest = d[np.arange(4), np.abs(d).argmax(1)]
    assert (largest > 0).all()


def test_apply_direction_takes_a_list_of_strengths():
    ws, d = torch.randn(3, 6, 16), torch.randn(1, 16)
    expected = apply_direction(ws, d, torch.tensor([0.0, 1.0, -2.0]))
    assert torch.equal(apply_direction(ws, d, [0.0, 1.0, -2.0]), expected)
    assert torch.equal(apply_direction(ws, d, [torch.tensor(0.0), np.float32(1), np.array(-2)]), expected)
    assert torch.equal(apply_direction(ws, d, [torch.tensor(0, dtype=torch.int16), 1, -2]), expected)
    for bad in ([np.array(1 + 2j), 1, 2], [np.array("1"), 1, 2], [np.array(True), 1, 2], [1, 2], [float("nan")] * 3, [10**400, 1, 2], 10**400):
        with pytest.raises(InputError, match="strength must be"):
            apply_direction(ws, d, bad)


def test_shipped_directions_are_found_by_name_from_the_editing_package():
    G = load_generator("mobile-ffhq")
    age = resolve_direction("age", G)
    assert age.vector.shape == (1, G.w_dim) and age.default_layers == "middle,fine"
    assert stylelift.editing.resolve_direction is resolve_direction


def test_a_network_loaded_in_inference_mode_is_refused_by_project_in_one_line():
    with torch.inference_mode():
        G = tiny_generator()
        target = target_of(G)
    with pytest.raises(InputError, match="loaded inside torch.inference_mode"):
        project(G, target, steps=1)


def test_interpolating_float32_and_float64_keys_gives_float64():
    a, b = torch.randn(4), torch.randn(4, dtype=torch.float64)
    assert torch.allclose(lerp(a, b, torch.tensor([0.3]))[0], a.double() + (b - a.double()) * 0.3)
    assert all(between(a, b, t).dtype == torch.float64 for t in (0, 0.3, 1))


def test_a_profile_too_large_for_a_png_reader_is_not_written(tmp_path):
    from PIL import Image

    from stylelift.images import load_photo, photo_profile

    huge = bytes(16) + b"RGB " + bytes(1_200_000)
    Image.new("RGB", (8, 8)).save(tmp_path / "p.jpg", icc_profile=huge)
    assert photo_profile(load_photo(tmp_path / "p.jpg")) is None


def test_numpy_seeds_work_and_seeds_past_what_torch_takes_are_refused():
    from stylelift.editing import pca_directions, w_std_along

    G = tiny_generator()
    target = target_of(G)
    assert torch.equal(project(G, target, steps=1, seed=np.int64(3)).ws, project(G, target, steps=1, seed=3).ws)
    assert np.array_equal(pca_directions(G, samples=20, k=1, seed=np.int64(0))[0], pca_directions(G, samples=20, k=1, seed=0)[0])
    assert w_std_along(G, np.ones(G.w_dim), samples=20, seed=np.uint32(5)) == w_std_along(G, np.ones(G.w_dim), samples=20, seed=5)
    with pytest.raises(InputError, match="seed must be a whole number from 0 to 2"):
        project(G, target, steps=1, seed=2**64)


def test_latent_files_keep_numbers_from_numpy_and_torch_as_numbers(tmp_path):
    from stylelift import load_latents

    meta = {"loss": torch.tensor(0.25), "psnr": np.float32(31.5), "steps": np.int64(3), "bad": float("nan"), "q": np.arange(2), 7: "seven"}
    save_latents(tmp_path / "a.npz", LatentFile(w=torch.zeros(1, 6, 16, dtype=torch.bfloat16), noises={0: torch.ones(4, 4, dtype=torch.bfloat16)}, meta=meta))
    back = load_latents(tmp_path / "a.npz")
    assert back.meta == {"loss": 0.25, "psnr": 31.5, "steps": 3, "bad": None, "q": [0, 1], "7": "seven"}
    assert back.w.dtype == np.float32 and back.noises[0].sum() == 16
    for twice in ({1: "a", "1": 2}, {"1": "a", 1: 2}):  # the message names the key that is not a string
        with pytest.raises(InputError, match="the key '1' twice \\(as int and as a string\\)"):
            save_latents(tmp_path / "b.npz", LatentFile(w=np.zeros((1, 6, 16)), meta=twice))
    loop = {"a": 1}
    loop["self"] = loop
    with pytest.raises(InputError, match="holds itself"):
        save_latents(tmp_path / "b.npz", LatentFile(w=np.zeros((1, 6, 16)), meta=loop))
    assert not (tmp_path / "b.npz").exists()
    from stylelift.fileio import to_json

    assert to_json({np.bool_(True): 1, 2: np.bool_(False)}) == '{"2": false, "true": 1}'  # numpy's bools as JSON's
    assert to_json({torch.tensor([1, 2]): 1}) == '{"tensor([1, 2])": 1}'  # a key of several numbers: its str (a RuntimeError)


def test_parse_layers_takes_none_as_every_layer_and_mixing_nothing_is_refused():
    from stylelift.editing import mix_styles, parse_layers

    G = tiny_generator()
    assert parse_layers(None, G.layer_resolutions) == list(range(G.num_ws))  # a direction without layers of its own
    assert parse_layers([3, 1, 1], G.layer_resolutions) == [1, 3]
    ws = torch.zeros(2, G.num_ws, G.w_dim)
    with pytest.raises(InputError, match="layers is empty"):
        mix_styles(ws, ws + 1, [])


def test_render_ws_takes_single_noise_maps_as_synthesis_does():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    maps = [torch.randn(layer.resolution, layer.resolution, generator=torch.Generator().manual_seed(k)) for k, layer in enumerate(G.synthesis.noise_layers())]
    with torch.no_grad():
        expected = G.synthesis(ws, noises=maps)
    got = np.stack(list(render_ws(G, ws, noises=maps)))
    assert np.array_equal(got, stylelift.images.to_uint8(expected))
    assert np.array_equal(np.stack(list(render_ws(G, ws, noises=[m[None] for m in maps]))), got)
    with pytest.raises(InputError, match="noise map"):  # [K, r, r]: not one map, so not reshaped into one (a RuntimeError)
        list(render_ws(G, ws, noises=[m.expand(2, -1, -1) for m in maps]))


def test_lerp_and_slerp_refuse_arrays_and_latents_of_two_shapes():
    from stylelift.editing.interpolation import slerp

    for f in (lerp, slerp):
        with pytest.raises(InputError, match="takes two tensors, got ndarray"):
            f(np.zeros(16), np.ones(16), [0.5])
        with pytest.raises(InputError, match=r"one shape, got \[16\] and \[6, 16\]"):
            f(torch.zeros(16), torch.ones(6, 16), torch.linspace(0, 1, 6))


def test_random_noise_is_drawn_from_each_images_seed_not_from_the_global_stream(tmp_path):
    """noise_mode "random" in generation: seed s (a latent file's latent i, image k of render_ws)
    gives the same image every time, whatever the batch and whatever torch's global stream holds."""
    from stylelift.generation import iter_latent_file_images, iter_seed_images, seeded_noises

    G = tiny_generator()
    torch.manual_seed(0)
    first = list(iter_seed_images(G, [4, 5], noise_mode="random"))
    torch.manual_seed(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, iter_seed_images(G, [4, 5], noise_mode="random")))
    assert not np.array_equal(first[0], list(iter_seed_images(G, [4]))[0])  # not the constant maps
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(2))).detach()
    one_by_one = np.stack(list(render_ws(G, ws, noise_mode="random", batch_size=1)))
    assert np.array_equal(np.stack(list(render_ws(G, ws, noise_mode="random", batch_size=3))), one_by_one)
    with torch.no_grad():
        assert np.array_equal(one_by_one[2], stylelift.images.to_uint8(G.synthesis(ws[2:], noises=seeded_noises(G, 2, "cpu")))[0])
    save_latents(tmp_path / "l.npz", LatentFile(w=ws[:2].numpy()))
    count, images = iter_latent_file_images(G, tmp_path / "l.npz", noise_mode="random")
    assert count == 2 and all(np.array_equal(a, b) for a, b in zip(images, one_by_one[:2]))


def test_a_network_in_another_precision_or_inputs_on_another_device_are_one_clear_error():
    # torch said "expected m1 and m2 to have the same dtype" / "Tensor on device cpu is not on the
    # expected device meta!" (the meta device stands in for a GPU here)
    G = tiny_generator()
    z = torch.randn(2, G.z_dim)
    with pytest.raises(InputError, match=r"weights are float64; stylelift computes in float32: convert it with G.float\(\)"):
        project(tiny_generator().double(), target_of(G), steps=1)
    with pytest.raises(InputError, match="weights are float16"):
        tiny_generator().half()(z)
    ws = G.mapping(z)
    for call, said in (
        (lambda: G.mapping(z.to("meta")), "z is on meta but the network is on cpu"),
        (lambda: G.synthesis(ws.to("meta")), "ws is on meta but the network is on cpu"),
        (lambda: G.synthesis(ws, noises=[None, torch.zeros(8, 8, device="meta"), None, None, None]), r"noises\[1\] is on meta"),
    ):
        with pytest.raises(InputError, match=said):
            call()


def test_a_slip_in_what_is_passed_as_the_generator_is_named():
    G = tiny_generator()
    target = target_of(G)
    for call in (lambda: project(G.synthesis, target, steps=1), lambda: project(target, G, steps=1)):
        with pytest.raises(InputError, match=r"project\(G, target\): G is a generator \(what load_generator returns\), got (SynthesisNetwork|Tensor)"):
            call()
    with pytest.raises(InputError, match="load_generator takes a file, a URL or a known name, got Generator"):
        load_generator(G)  # was "File name too long: 'Generator(\n  resolution=16, ..."
    with pytest.raises(InputError, match="network_id"):
        stylelift.network_id(G.mapping)


def test_image_helpers_write_what_they_are_given_or_refuse_it(tmp_path):
    from PIL import Image

    from stylelift.images import make_grid, save_image, write_video

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = rgba[..., 3] = 255  # opaque red: it was written as red and yellow pixels
    save_image(rgba, tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == "RGBA" and np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), rgba)
    for call in (  # a float image was cast to black, or raised Pillow's "Cannot handle this data type"
        lambda: make_grid([np.full((2, 2, 3), 0.9, np.float32)]),
        lambda: save_image(np.zeros((8, 8, 3), np.float32), tmp_path / "y.png"),
        lambda: write_video(tmp_path / "v.gif", [np.zeros((8, 8, 3), np.float32)]),
        lambda: write_video(tmp_path / "v.gif", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)]),
    ):
        with pytest.raises(InputError, match=r"is a uint8 \[H, W, C\] array"):
            call()
    with pytest.raises(InputError, match=r"a video is written as .mp4 \(or .m4v, .mov, .mkv\) or .gif, not .avi"):
        write_video(tmp_path / "v.avi", [np.zeros((8, 8, 3), np.uint8)])  # was H.264 in an .avi
    assert not [p.name for p in tmp_path.iterdir() if p.name != "x.png"]
    rgba[..., 3] = 128  # half-transparent red: pink on white
    save_image(rgba, tmp_path / "x.jpg")  # a JPEG has no alpha: composited on white (Pillow refused RGBA)
    assert Image.open(tmp_path / "x.jpg").mode == "RGB" and np.abs(np.asarray(Image.open(tmp_path / "x.jpg")).astype(int) - [255, 127, 127]).max() < 8
    grey, half = np.full((8, 8, 1), 200, np.uint8), np.zeros((8, 8, 4), np.uint8)
    half[..., 3] = 128  # black at half opacity: grey-ish on white
    for name in ("v.gif", "v.mp4", "v.mkv"):  # a 1- or 4-channel network's frames
        write_video(tmp_path / name, [grey, half, grey])
        assert (tmp_path / name).stat().st_size > 0
    import imageio.v3 as iio

    for name, close in (("v.mp4", 10), ("v.gif", 2)):  # the same pictures in either
        frames = iio.imread(tmp_path / name)[..., :3]
        assert frames.shape[:3] == (3, 8, 8) and abs(int(frames[0].mean()) - 200) < close and abs(int(frames[1].mean()) - 127) < close, name


def test_a_target_of_0_to_255_values_and_a_bad_z_for_mapped_z_are_named():
    from stylelift.generation import mapped_z

    G = tiny_generator()
    with pytest.raises(InputError, match=r"target looks like pixels in 0..255 \(all >= 0, the largest 255\); project takes \[-1, 1\]"):
        project(G, torch.full((1, 3, 16, 16), 255.0), steps=1)  # it ran, to a loss of 22,700
    assert project(G, target_of(G) * 3, steps=1).ws.shape == (1, G.num_ws, G.w_dim)  # overshooting on both sides is a network's image
    with pytest.raises(InputError, match="z must be a tensor"):
        mapped_z(G, np.zeros((2, G.z_dim), np.float32))
    with pytest.raises(InputError, match="batch_size must be a whole number >= 1"):
        mapped_z(G, torch.zeros(2, G.z_dim), batch_size=0)


def test_complex_ws_are_refused_as_complex_z_is():
    G = tiny_generator()
    ws = G.mapping(torch.randn(1, G.z_dim))
    with pytest.raises(InputError, match=r"ws must be a real tensor of shape \[N, 6, 16\] for this network, got a complex tensor"):
        G.synthesis(ws.to(torch.complex64))  # its imaginary part was dropped with only a torch warning
    assert {"NoFaceError", "MissingWeightsError", "NetworkNotFoundError"} <= set(stylelift.__all__)


def test_helpers_default_to_the_networks_device_and_an_empty_label_is_taken_from_anywhere():
    # the meta device stands in for a GPU: device="cpu" defaults met it with "z is on cpu"
    from stylelift.generation import mapped_z, network_device

    G = tiny_generator().to("meta")
    assert network_device(G, None).type == "meta" and network_device(G, "cpu").type == "cpu"  # (latents_for_items, iter_seed_images, learn_direction)
    assert mapped_z(G, torch.zeros(3, G.z_dim)).device.type == "meta"
    assert G.mapping(torch.zeros(2, G.z_dim, device="meta"), torch.zeros([2, 0])).shape == (2, G.num_ws, G.w_dim)  # NVIDIA's empty label, made on the CPU


def test_a_damaged_w_avg_is_not_blamed_on_the_truncation_psi():
    G = tiny_generator()
    G.mapping.w_avg[3] = float("nan")
    ws = G.mapping(torch.randn(2, G.z_dim), truncation_psi=0.7)  # NaN, for whoever reads the ws to name; not "ask for a psi nearer 0"
    assert torch.isnan(ws).any()


def test_something_other_than_a_network_given_to_save_generator_is_named(tmp_path):
    with pytest.raises(InputError, match=r"save_generator\(G, path\): G is a generator \(what load_generator returns\), got .*str"):
        save_generator("x", tmp_path / "x.pt")


@pytest.mark.parametrize("call", [
    lambda p: stylelift.load_latents(p),
    lambda p: save_latents(p, LatentFile(w=np.zeros((1, 2, 3), np.float32))),
    lambda p: load_direction(p),
    lambda p: save_direction(p, Direction(np.ones(4), {})),
    lambda p: load_photo(p),
    lambda p: save_image(np.zeros((4, 4, 3), np.uint8), p),
    lambda p: save_encoder(p, new_encoder(tiny_generator(), input_resolution=32)),
])
@pytest.mark.parametrize("path", [None, 3])
def test_a_path_argument_that_is_no_path_is_refused_in_one_line(call, path):
    with pytest.raises(InputError, match=f"is named by a path \\(a str or a Path\\), got {type(path).__name__}"):
        call(path)


def test_writing_onto_a_folder_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "out.pt").mkdir()
    with pytest.raises(InputError, match="out.pt is a folder; name the file to write"):
        save_generator(tiny_generator(), tmp_path / "out.pt")
    with pytest.raises(InputError, match="is a folder; name the file to write"):
        save_latents(tmp_path, LatentFile(w=np.zeros((1, 2, 3), np.float32)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"] and not any((tmp_path / "out.pt").iterdir())


def test_a_missing_file_is_a_stylelift_error_and_a_file_not_found_error(tmp_path):
    for call in (stylelift.load_latents, load_direction, load_photo, stylelift.load_generator):
        with pytest.raises(stylelift.MissingFileError) as e:
            call(tmp_path / "absent.npz")
        assert isinstance(e.value, stylelift.StyleliftError) and isinstance(e.value, FileNotFoundError)
        assert "absent.npz" in str(e.value)


def test_noise_maps_of_the_wrong_shape_for_one_image_name_one_batch_size():
    G = tiny_generator()
    bad = [torch.zeros(1, 1, 3, 3)] * len(G.synthesis.noise_layers())
    with pytest.raises(InputError, match=r"noise map 0 must be a float tensor \[1, 1, 4, 4\], got"):
        G.synthesis(G.mapping(torch.randn(1, G.z_dim)), noises=bad)


def test_every_public_name_resolves_and_the_command_line_starts_without_torch():
    import subprocess
    import sys

    for name in stylelift.__all__:
        assert getattr(stylelift, name).__name__ == name
    assert stylelift.images.to_uint8 is not None  # a submodule, imported when asked for
    assert stylelift.models.stylegan2.Generator is stylelift.Generator  # a subpackage's too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stylelift.nope
    assert not any(hasattr(stylelift, name) for name in ("a.b", "", "models.nope")) and not hasattr(stylelift.models, "nope")
    # `stylelift --help` and the commands' own checks do not wait for torch to import (2-4 s)
    code = "import sys, stylelift.cli; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'stylelift' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run([sys.executable, "-c", "import stylelift.models as m; m.stylegan2.Generator"], check=True)  # a submodule not imported yet
    help_text = subprocess.run([sys.executable, "-m", "stylelift", "align", "--help"], check=True, capture_output=True, text=True).stdout
    assert "4096" in help_text  # align's --size range, a constant of the align module


def test_library_calls_refuse_bad_arguments_in_one_line_before_any_work(tmp_path):
    from stylelift.editing.learn import learn_direction
    from stylelift.generation import class_label, iter_latent_file_images, iter_seed_images
    from stylelift.images import write_video

    G = tiny_generator()
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        iter_seed_images(G, [0], device="gpu")
    with pytest.raises(InputError, match="noise_mode"):  # now, not at the first image
        iter_seed_images(G, [0], noise_mode="loud")
    with pytest.raises(InputError, match="outside 0..4294967295"):
        iter_seed_images(G, [2**33])
    save_latents(tmp_path / "a.npz", LatentFile(w=G.mapping(torch.zeros(1, G.z_dim)).detach().numpy()))
    with pytest.raises(InputError, match="noise_mode"):
        iter_latent_file_images(G, tmp_path / "a.npz", noise_mode="loud")
    conditional = tiny_generator(c_dim=3)
    with pytest.raises(InputError, match="not a class of this network: 0..2"):
        class_label(conditional, 1.5, "cpu")
    for bad in ({"batch_size": 0}, {"samples": 2.5}, {"first_seed": -1}, {"labels_csv": 3}):
        with pytest.raises(InputError, match=next(iter(bad))[:6].replace("_", ".")):
            learn_direction(G, attribute="age", **bad)
    with pytest.raises(stylelift.MissingFileError, match="no labels file"):  # a str names a file as a Path does
        learn_direction(G, attribute="age", labels_csv=str(tmp_path / "none.csv"))
    for fps in (0, -5, float("nan"), True):
        with pytest.raises(InputError, match="fps must be"):
            write_video(tmp_path / "v.gif", frames, fps=fps)
    from stylelift.editing import pca_directions, w_std_along

    for call in (lambda: sefa(G.synthesis), lambda: pca_directions(G.synthesis), lambda: w_std_along(None, np.ones(G.w_dim))):
        with pytest.raises(InputError, match=r"\(G.*\): G is a generator"):  # (AttributeError deep inside)
            call()
    from stylelift.editing.interpolation import slerp

    a, b = torch.randn(2, 4), torch.randn(2, 4)
    for args, says in (((a, b, "0.5"), "t is a number or a list of numbers, got str"), ((a.long(), b.long(), 0.5), "needs float latents"),
                       ((a, b.to("meta"), 0.5), "two latents on one device, got cpu and meta")):
        for f in (lerp, slerp):
            with pytest.raises(InputError, match=says):  # (torch's TypeError, NotImplementedError, RuntimeError)
                f(*args)
    for name in ("x.json", "x.JSON"):  # the vector's file and its sidecar's would be one
        with pytest.raises(InputError, match="name the direction file NAME.npy; its sidecar is NAME.json"):
            save_direction(tmp_path / name, Direction(np.ones([1, G.w_dim]), {}))
    with pytest.raises(InputError, match="expected a float image batch"):  # (a plain ValueError, not stylelift's)
        stylelift.images.to_uint8(torch.zeros(3, 4, 4))
    sixteen_bit = Image.fromarray(np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (2, 1)))  # mode I;16
    assert torch.allclose(stylelift.images.to_tensor(sixteen_bit)[0, 0, 0, [0, 128, 255]], torch.tensor([-1.0, 1 / 255, 1.0]), atol=0.01)  # was 99.6% at +1
    clear = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert (stylelift.images.to_tensor(clear) == 1).all()  # over white, as load_photo reads it (was black)
    with pytest.raises(InputError, match="a GIF frame lasts at most 655.35 s"):
        write_video(tmp_path / "v.gif", frames, fps=0.001)  # (struct.error: a delay beyond GIF's 16 bits)
    for name, says in (("picture", "file without a suffix"), ("picture.foo", ".foo")):
        with pytest.raises(InputError, match=f"Pillow writes no {says}"):
            save_image(frames[0], tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # nothing else written, no temporary left
