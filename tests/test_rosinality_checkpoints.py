"""rosinality/stylegan2-pytorch checkpoints: read back exactly, with torch.load(weights_only=True) only."""

import argparse
import zipfile

import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)

from stylelift import load_generator
from stylelift.errors import CheckpointError, UnsafeCheckpointError
from stylelift.models.rosinality import read_rosinality
from stylelift.models.stylegan2 import Generator


def rebuild(raw, w_avg=None) -> Generator:
    G = Generator(raw.config)
    state = dict(raw.state_dict)
    if w_avg is not None:
        state["mapping.w_avg"] = w_avg
    G.load_state_dict(state, strict=True)
    return G.eval().requires_grad_(False)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_training_checkpoint_round_trip_gives_identical_images(tmp_path, legacy):
    G = pf.random_generator(pf.rosinality_config())
    raw = read_rosinality(pf.write_torch(tmp_path / "080000.pt", pf.rosinality_training_checkpoint(G), legacy=legacy))
    assert raw.format == "rosinality" and raw.config == G.config
    assert not raw.has_w_avg and "mapping.w_avg" not in raw.state_dict  # training checkpoints keep no latent_avg
    assert raw.config.mapping_lr_multiplier == 0.01
    assert torch.equal(pf.outputs(rebuild(raw, w_avg=G.mapping.w_avg)), pf.outputs(G))
    assert raw.info["checkpoint"] == "training" and raw.info["iter"] == 800000 and raw.info["ada_aug_p"] == 0.125


@pytest.mark.parametrize(
    "overrides", [{}, dict(img_resolution=32, channels=(12, 12, 10, 6), mapping_layers=3), dict(resample_filter=(1, 2, 1))]
)
def test_converted_checkpoint_round_trip_keeps_latent_avg(tmp_path, overrides):
    G = pf.random_generator(pf.rosinality_config(**overrides))
    raw = read_rosinality(pf.write_torch(tmp_path / "ffhq.pt", pf.rosinality_converted_checkpoint(G)))
    assert raw.has_w_avg and raw.config == G.config
    assert torch.equal(raw.state_dict["mapping.w_avg"], G.mapping.w_avg)
    assert torch.equal(pf.outputs(rebuild(raw)), pf.outputs(G))
    assert raw.info["checkpoint"] == "converted"


def test_bare_generator_state_dict_is_read(tmp_path):
    G = pf.random_generator(pf.rosinality_config())
    raw = read_rosinality(pf.write_torch(tmp_path / "g_ema.pt", pf.rosinality_state_dict(G)))
    assert torch.equal(pf.outputs(rebuild(raw, w_avg=G.mapping.w_avg)), pf.outputs(G))


def test_rosinality_fixture_follows_the_reference_layout():
    """The facts of rosinality's model.py, checked on the writer (the round trip then checks the reader)."""
    G = pf.random_generator(pf.rosinality_config())
    sd, ros = G.state_dict(), pf.rosinality_state_dict(G)
    assert ros["input.input"].shape == (1, 12, 4, 4) and ros["to_rgb1.bias"].shape == (1, 3, 1, 1)
    assert ros["convs.2.conv.weight"].shape == (1, 6, 10, 3, 3)  # b16.conv0: [1, O, I, k, k]
    assert ros["conv1.noise.weight"].shape == (1,)
    for k, layer in enumerate(["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]):
        assert torch.equal(ros[f"noises.noise_{k}"][0, 0], sd[f"synthesis.{layer}.noise_const"])
    assert torch.equal(ros["style.2.weight"], sd["mapping.fc1.weight"])  # style.0 is the pixel norm
    assert torch.equal(ros["to_rgbs.1.conv.modulation.bias"], sd["synthesis.b16.torgb.affine.bias"])
    assert torch.allclose(ros["convs.0.conv.blur.kernel"], torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 16)


def test_only_weights_only_torch_load_is_used(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    G = pf.random_generator(pf.rosinality_config())
    read_rosinality(pf.write_torch(tmp_path / "ckpt.pt", pf.rosinality_training_checkpoint(G)))
    assert calls == [True]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_checkpoint_asking_to_run_code_is_refused_without_side_effects(tmp_path, legacy):
    marker = tmp_path / "ran"
    G = pf.random_generator(pf.rosinality_config())
    ckpt = dict(pf.rosinality_converted_checkpoint(G), extra=pf.Reduce(__import__("os").system, pf.touch_command(marker)))
    path = pf.write_torch(tmp_path / "evil.pt", ckpt, legacy=legacy)
    with pytest.raises(UnsafeCheckpointError) as e:
        read_rosinality(path)
    assert str(e.value) == "refusing to load evil.pt: it asks to run code (posix.system)"
    assert not marker.exists()


def test_global_that_torch_would_refuse_is_refused_first_by_the_scan(tmp_path):
    G = pf.random_generator(pf.rosinality_config())
    ckpt = dict(pf.rosinality_converted_checkpoint(G), when=pf.Reduce(complex, 1, 2))
    with pytest.raises(UnsafeCheckpointError, match=r"\(__builtin__.complex\)$"):  # protocol 2 keeps Python 2's name
        read_rosinality(pf.write_torch(tmp_path / "odd.pt", ckpt))


def test_damaged_or_foreign_torch_files_give_one_line_errors(tmp_path):
    G = pf.random_generator(pf.rosinality_config())
    good = pf.write_torch(tmp_path / "good.pt", pf.rosinality_converted_checkpoint(G)).read_bytes()
    cases = {
        "truncated.pt": good[: len(good) // 2],
        "empty.pt": b"",
        "zip-without-pickle.pt": None,
    }
    with zipfile.ZipFile(tmp_path / "zip-without-pickle.pt", "w") as zf:
        zf.writestr("archive/readme.txt", "hello")
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            read_rosinality(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(FileNotFoundError):
        read_rosinality(tmp_path / "missing.pt")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(CheckpointError, match="cannot read folder.pt"):
        read_rosinality(tmp_path / "folder.pt")


def test_checkpoints_that_are_not_stylegan2_generators_are_refused(tmp_path):
    G = pf.random_generator(pf.rosinality_config())
    swagan = pf.rosinality_training_checkpoint(G)
    swagan["args"] = argparse.Namespace(arch="swagan", size=16)
    with pytest.raises(CheckpointError, match="architecture 'swagan' is not supported"):
        read_rosinality(pf.write_torch(tmp_path / "swagan.pt", swagan))
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        read_rosinality(pf.write_torch(tmp_path / "d.pt", {"d": {"w": torch.ones(1)}}))
    bad_avg = dict(pf.rosinality_converted_checkpoint(G), latent_avg=torch.zeros(3))
    with pytest.raises(CheckpointError, match=r"latent_avg has shape \[3\], expected \[12\]"):
        read_rosinality(pf.write_torch(tmp_path / "avg.pt", bad_avg))
    extra = pf.rosinality_converted_checkpoint(G)
    extra["g_ema"]["convs.0.conv.extra"] = torch.ones(1)
    with pytest.raises(CheckpointError, match="unexpected tensors in g_ema: convs.0.conv.extra"):
        read_rosinality(pf.write_torch(tmp_path / "extra.pt", extra))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_load_generator_reads_rosinality_checkpoints(tmp_path, legacy):
    G = pf.random_generator(pf.rosinality_config())
    H = load_generator(pf.write_torch(tmp_path / "ffhq.pt", pf.rosinality_converted_checkpoint(G), legacy=legacy))
    assert H.source_format == "rosinality"
    assert torch.equal(pf.outputs(H), pf.outputs(G))


def test_zip_entries_torch_save_never_writes_are_refused(tmp_path):
    """A compressed entry could be a zip bomb, and a memory-mapped load would read its compressed
    bytes as weights; torch.save stores every entry as it is."""
    good = tmp_path / "good.pt"
    pf.write_torch(good, pf.rosinality_converted_checkpoint(pf.random_generator(pf.rosinality_config())))
    read_rosinality(good)  # the stored original reads
    bad = tmp_path / "deflated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(CheckpointError, match="compressed or encrypted"):
        read_rosinality(bad)


def test_tensor_repeating_a_tiny_storage_is_refused_before_any_copy(tmp_path):
    path = tmp_path / "expanded.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1).expand(40_000, 40_000)}}, path)
    with pytest.raises(CheckpointError, match="its tensors add up to 6,400,000,000 bytes from a file of"):
        read_rosinality(path)


def test_integer_weights_are_refused_in_one_line(tmp_path):
    sd = pf.rosinality_state_dict(pf.random_generator(pf.rosinality_config()))
    sd["conv1.activate.bias"] = sd["conv1.activate.bias"].round().to(torch.int64)
    with pytest.raises(CheckpointError) as e:
        read_rosinality(pf.write_torch(tmp_path / "g_ema.pt", sd))
    assert str(e.value) == "g_ema.pt: tensor conv1.activate.bias holds int64, not floating-point numbers"


def test_a_g_ema_that_is_not_a_state_dict_is_named_as_such(tmp_path):
    torch.save({"g_ema": 5, "latent_avg": torch.zeros(4)}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"^odd.pt is a torch file but not a rosinality StyleGAN2 checkpoint: its 'g_ema' holds int, not a state dict$"):
        read_rosinality(tmp_path / "odd.pt")


def test_a_torch_file_of_another_kind_is_named_with_its_type(tmp_path):
    torch.save(7, tmp_path / "number.pt")
    with pytest.raises(CheckpointError, match=r"\(it holds an int\)$"):
        read_rosinality(tmp_path / "number.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"\(it holds a list\)$"):
        read_rosinality(tmp_path / "list.pt")
