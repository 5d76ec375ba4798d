import warnings
import zipfile

import pytest
import torch

from conftest import tiny_config, tiny_generator
from stylelift import CheckpointError, UnsafeCheckpointError, load_generator, network_id, save_generator
from stylelift.models import Generator
from stylelift.models.checkpoint import FORMAT_TAG, NetworkNotFoundError, estimate_w_avg, sniff_format


@pytest.mark.parametrize("overrides", [{}, dict(architecture="resnet", conv_clamp=0.5), dict(architecture="orig", c_dim=3)])
def test_own_format_round_trip_gives_identical_outputs(tmp_path, overrides):
    G = tiny_generator(**overrides)
    path = tmp_path / "net.stylelift.pt"
    save_generator(G, path)
    H = load_generator(path)
    assert H.config == G.config
    assert H.source_format == "stylelift"
    z = torch.randn(2, G.z_dim)
    c = torch.eye(3)[:2] if G.c_dim else None
    assert torch.equal(H(z, c, truncation_psi=0.6), G(z, c, truncation_psi=0.6))
    assert network_id(H) == network_id(G)
    assert not any(p.requires_grad for p in H.parameters()) and not H.training


def test_own_format_holds_no_code_and_loads_with_weights_only(tmp_path):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(), path)
    data = torch.load(path, weights_only=True)
    assert data["format"] == FORMAT_TAG and isinstance(data["config"], dict)
    assert all(isinstance(v, torch.Tensor) for v in data["state_dict"].values())


def test_network_id_changes_with_the_weights():
    import copy

    assert network_id(tiny_generator(seed=0)) != network_id(tiny_generator(seed=1))
    G = tiny_generator(seed=0)
    before = network_id(G)
    twin = copy.deepcopy(G)
    assert network_id(twin) == before and network_id(G.double()) == network_id(G.float()) == before  # a copy, a round trip
    with torch.no_grad():
        next(twin.parameters()).add_(1)  # fine-tuned, say: the id was kept from before
    assert network_id(twin) != before and network_id(G) == before
    twin.load_state_dict(G.state_dict())
    assert network_id(twin) == before
    clamped = Generator(tiny_config(conv_clamp=256))  # the same weights, another network: its config is part of the id
    clamped.load_state_dict(G.state_dict())
    assert network_id(clamped) != before


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(seed=0), path)
    save_generator(tiny_generator(seed=1), path)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]
    assert network_id(load_generator(path)) == network_id(tiny_generator(seed=1))


def test_a_full_disk_while_saving_is_an_os_error_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import builtins
    import errno

    from stylelift.models import torch_files

    path = tmp_path / "net.pt"
    save_generator(tiny_generator(seed=0), path)

    def full_disk(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        if "w" in mode:
            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk reports a write
            f.write = write
        return f

    monkeypatch.setattr(torch_files, "open", full_disk, raising=False)  # torch.save's own writer said "unexpected pos 43840 vs 43792"
    with pytest.raises(OSError) as e:
        save_generator(tiny_generator(seed=1), path)
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"] and network_id(load_generator(path)) == network_id(tiny_generator(seed=0))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"hello, not a network", "not a network file"),
        (b"PK\x03\x04garbage", "damaged"),
    ],
)
def test_garbage_files_are_a_one_line_checkpoint_error(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


def test_truncated_own_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_own_file_with_mismatched_weights_is_refused(tmp_path):
    path = tmp_path / "net.pt"
    G = tiny_generator()
    save_generator(G, path)
    data = torch.load(path, weights_only=True)
    data["config"]["img_resolution"] = 32
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_generator(path)


@pytest.mark.parametrize("key", ["mapping.w_avg", "synthesis.b4.conv1.weight"])
def test_own_file_with_non_finite_weights_is_refused(tmp_path, key):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(), path)
    data = torch.load(path, weights_only=True)
    assert key in data["state_dict"], sorted(data["state_dict"])[:8]
    data["state_dict"][key].view(-1)[0] = float("nan")
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=f"{key} holds NaN"):
        load_generator(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(NetworkNotFoundError, match="no network file"):
        load_generator(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="folder"):
        load_generator(tmp_path)


def test_sniffing_looks_at_bytes_not_names(tmp_path):
    path = tmp_path / "looks_like.pkl"
    save_generator(tiny_generator(), path)
    assert sniff_format(path) == "torch-zip"
    assert zipfile.is_zipfile(path)
    assert load_generator(path).source_format == "stylelift"


def test_w_avg_estimate_is_the_mean_of_mapped_samples_and_reproducible():
    G = tiny_generator()
    a = estimate_w_avg(G, n=2000, seed=3)
    assert torch.equal(a, estimate_w_avg(G, n=2000, seed=3))
    assert not torch.equal(a, estimate_w_avg(G, n=2000, seed=4))  # the seed chooses the samples
    z = torch.randn(20000, G.z_dim)
    assert torch.allclose(a, G.mapping(z)[:, 0].mean(0), atol=0.05 * G.mapping(z)[:, 0].std())


def _stylelift_file_with(tmp_path, **changes):
    path = tmp_path / "net.pt"
    save_generator(tiny_generator(), path)
    data = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if key == "meta":
            data["meta"] = value
        else:
            data["config"][key] = value
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"z_dim": 200_000}, "z_dim must be an integer from 1 to 16384"),
        ({"channels": [float("inf"), 16, 16]}, "channels must be whole numbers"),  # an OverflowError traceback
        ({"channels": [16.7, 16, 16]}, "channels must be whole numbers"),  # was taken as 16
        ({"w_dim": 2.5}, "w_dim must be an integer"),
        ({"channel_base": -64}, "channel_base must be an integer"),
        ({"mapping_layers": 10**9}, "mapping_layers must be an integer"),
        ({"z_dim": 4000}, "the weights do not fit"),  # plausible, but not what the weights are: refused before building
        ({"meta": 7}, "meta is an int"),
        ({"resample_filter": ["a"]}, "resample_filter must list"),
        ({"resample_filter": []}, "resample_filter must list"),
        ({"resample_filter": [1, 1e30, 1]}, "resample_filter must list 1 to 16 numbers, each 0 or within"),
        ({"resample_filter": [1e-300, 0, 0, 0]}, "resample_filter must list 1 to 16 numbers, each 0 or within"),  # rendered NaN, blamed on the latents
        ({"resample_filter": [1, -1 + 1e-9]}, "with a sum as large"),
        ({"mapping_lr_multiplier": 1e300}, "mapping_lr_multiplier must be a number above 0 and at most 100"),
        ({"mapping_lr_multiplier": "abc"}, "mapping_lr_multiplier must be a number above 0"),
        ({"mapping_lr_multiplier": float("nan")}, "mapping_lr_multiplier must be a number above 0"),
        ({"conv_clamp": "x"}, "conv_clamp must be a positive number"),
        ({"use_noise": "no"}, "use_noise must be true or false"),
        ({"channels": [1, 1, 4096]}, r"4096 channels at 16x16 px make one image's feature map 4 MiB, beyond any real network's \(1 MiB at most"),  # (limit lowered below)
        ({"channel_base": 1 << 22, "channel_max": 1 << 14}, "16384 channels at 16x16 px make one image's feature map 16 MiB"),
    ],
)
def test_stylelift_file_config_is_checked_before_anything_is_built(tmp_path, changes, message, monkeypatch):
    monkeypatch.setattr("stylelift.models.base.MAX_FEATURE_MAP_BYTES", 1 << 20)  # as 1 GiB is to 1024 px, 1 MiB is to the tiny net's 16 px
    path = _stylelift_file_with(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


def test_real_networks_feature_maps_pass_and_absurd_widths_are_refused_in_both_generations():
    from stylelift.models.stylegan import StyleGANConfig
    from stylelift.models.stylegan2 import StyleGAN2Config

    StyleGAN2Config(img_resolution=1024, channel_base=65536)  # twice NVIDIA's config-f widths: 256 MiB at 1024 px
    StyleGANConfig()  # NVIDIA's FFHQ StyleGAN at 1024 px
    wide = (1,) * 8 + (2048,)  # a 162 MB file that asked for 8 GiB per image: rendering one ran past 8 GB
    for make in (lambda: StyleGAN2Config(img_resolution=1024, channels=wide), lambda: StyleGANConfig(channels=wide)):
        with pytest.raises(ValueError, match="2048 channels at 1024x1024 px make one image's feature map 8,192 MiB"):
            make()
    with pytest.raises(ValueError, match="1024 channels at 1024x1024 px make one image's feature map 4,096 MiB"):  # the 512-px block's, up-sampled unfused
        StyleGANConfig(channels=(1,) * 7 + (1024, 1), fused_min_resolution=2048)


def test_a_stylelift_file_of_integer_weights_is_refused(tmp_path):
    path = _stylelift_file_with(tmp_path)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["mapping.fc0.weight"] = data["state_dict"]["mapping.fc0.weight"].to(torch.uint8)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="^net.pt: tensor mapping.fc0.weight holds uint8, not floating-point numbers$"):
        load_generator(path)


def test_a_stylelift_file_of_another_format_version_is_refused(tmp_path):
    from stylelift.models.checkpoint import FORMAT_VERSION

    path = _stylelift_file_with(tmp_path)
    data = torch.load(path, weights_only=True)
    data["version"] = FORMAT_VERSION + 1  # written by a later stylelift
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=f"net.pt has stylelift format version {FORMAT_VERSION + 1}; this stylelift reads {FORMAT_VERSION}"):
        load_generator(path)


def test_resampling_filters_are_read_as_integer_taps_or_refused():
    from stylelift.models.nvidia import taps_from_kernel

    taps = torch.tensor([1.0, 3, 3, 1])
    assert taps_from_kernel("f", torch.outer(taps, taps) / 64 * 7) == (1, 3, 3, 1)  # any scale
    bump = torch.zeros(4, 4)
    bump[:2, :2] = torch.tensor([[1.0, -1], [-1, 1]])  # keeps every row and column sum
    with pytest.raises(CheckpointError, match="cannot express as integer taps"):
        taps_from_kernel("f", torch.outer(taps, taps) + bump)  # rows sum as 1,3,3,1, but not separable
    with pytest.raises(CheckpointError, match="cannot express as integer taps"):
        taps_from_kernel("f", torch.outer(torch.tensor([1.0, 2.5, 1]), torch.tensor([1.0, 2.5, 1])))  # not integer
    with pytest.raises(CheckpointError, match="not a square 2-D kernel"):
        taps_from_kernel("f", torch.ones(3, 4))


def test_torch_files_that_are_not_or_no_longer_archives_say_so(tmp_path):
    from stylelift.models.encoder import load_encoder
    from stylelift.models.torch_files import load_torch_file

    torch.save({"x": torch.zeros(3)}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:300])  # a download cut short
    (tmp_path / "text.pt").write_text("hello, I am text")
    for name, why in (("cut.pt", "a damaged zip archive"), ("text.pt", "not a torch file")):
        with pytest.raises(CheckpointError, match=why):
            load_torch_file(tmp_path / name)
        with pytest.raises(CheckpointError, match=why):  # not "the pickle uses persistent ids"
            load_encoder(tmp_path / name)
    assert load_torch_file(tmp_path / "ok.pt")["x"].shape == (3,)
    save_generator(tiny_generator(), tmp_path / "net.pt")
    data = torch.load(tmp_path / "net.pt", weights_only=True)
    del data["config"]
    torch.save(data, tmp_path / "noconfig.pt")
    with pytest.raises(CheckpointError, match="has no config"):
        load_generator(tmp_path / "noconfig.pt")


@pytest.mark.parametrize(
    "make",
    [lambda: torch.zeros(3, dtype=torch.complex64), lambda: torch.zeros(3, dtype=torch.float8_e4m3fn), lambda: torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8)],
    ids=["complex", "float8", "quantised"],
)
def test_tensors_of_a_type_networks_are_not_stored_in_are_not_called_code(tmp_path, make):
    """torch data types outside the allow-list are named as such, not as a file asking to run code."""
    save_generator(tiny_generator(), tmp_path / "net.pt")
    data = torch.load(tmp_path / "net.pt", weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates making quantised tensors; files of them exist
        data["state_dict"]["mapping.fc0.weight"] = make()
    torch.save(data, tmp_path / "odd.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"^refusing to load odd.pt: it names a tensor type stylelift does not read \(torch\.") as e:
        load_generator(tmp_path / "odd.pt")
    assert "run code" not in str(e.value)


def test_a_device_torch_cannot_use_here_is_one_clear_error(tmp_path):
    from stylelift.errors import InputError
    from stylelift.models.dlib_resnet import load_dlib_face_resnet
    from stylelift.models.encoder import load_encoder

    loaders = {
        "load_generator": lambda device: load_generator("random-stylegan2-64", device=device),
        "load_encoder": lambda device: load_encoder(tmp_path / "absent.pt", device=device),  # the device is checked first
        "load_dlib_face_resnet": lambda device: load_dlib_face_resnet(tmp_path / "absent.dat", device=device),
    }
    for device, why in (("gpu", "unknown device 'gpu': use 'cpu', 'cuda' or 'cuda:N'"), (None, "unknown device None"), ("mps", "MPS"), ("cuda:7", "CUDA GPU")):
        if device == "cuda:7" and torch.cuda.device_count() > 7:
            continue
        for name, load in loaders.items():
            with pytest.raises(InputError, match=why):
                load(device)


def test_an_img_resolution_that_is_not_a_whole_number_is_refused_in_one_line(tmp_path):
    # inf was an OverflowError, a tensor a TypeError in network_id, 16.0 read as a network of "16.0x16.0" px
    save_generator(tiny_generator(), tmp_path / "net.pt")
    data = torch.load(tmp_path / "net.pt", weights_only=True)
    for value in (float("inf"), torch.tensor(16), 16.0, True):
        data["config"]["img_resolution"] = value
        torch.save(data, tmp_path / "odd.pt")
        with pytest.raises(CheckpointError, match=r"img_resolution must be a whole number \(a power of two from 4 to 1024\), got ") as e:
            load_generator(tmp_path / "odd.pt")
        assert "\n" not in str(e.value)
    import numpy as np

    from stylelift import StyleGAN2Config, StyleGANConfig

    for config in (StyleGAN2Config, StyleGANConfig):  # numpy's ints are whole numbers (as the other fields take them)
        assert type(config(img_resolution=np.int64(1024)).img_resolution) is int
        with pytest.raises(ValueError, match="^img_resolution must be a power of two from 4 to 1024, got 48$"):
            config(img_resolution=np.int64(48))


def test_a_home_folder_of_a_user_this_machine_lacks_is_no_such_file():
    with pytest.raises(NetworkNotFoundError, match=r"^no network file ~no-such-user-here/x.pt \(known names: "):
        load_generator("~no-such-user-here/x.pt")  # Path.expanduser raised a RuntimeError
