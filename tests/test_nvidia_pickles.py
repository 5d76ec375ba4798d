"""NVIDIA network pickles (PyTorch and TensorFlow): read back exactly, refuse what is not StyleGAN2."""

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)

from stylelift import load_generator
from stylelift.errors import CheckpointError
from stylelift.models.nvidia import expected_shapes, read_nvidia_pickle
from stylelift.models.stylegan2 import Generator

CONFIGS = {
    "skip": {},
    "resnet-clamped": dict(architecture="resnet", conv_clamp=0.5),
    "orig-conditional": dict(architecture="orig", c_dim=3, embed_features=5),
    "no-noise-fp16": dict(use_noise=False, num_fp16_res=2),
    "3-tap-filter": dict(resample_filter=(1, 2, 1)),
}


def rebuild(raw) -> Generator:
    G = Generator(raw.config)
    G.load_state_dict(raw.state_dict, strict=True)
    return G.eval().requires_grad_(False)


def assert_same_network(raw, G: Generator) -> None:
    assert raw.config == G.config
    assert torch.equal(pf.outputs(rebuild(raw)), pf.outputs(G))


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------------------------
# PyTorch pickles


@pytest.mark.parametrize(
    "overrides", [*CONFIGS.values(), dict(img_resolution=4, channels=(8,)), dict(architecture="resnet", c_dim=2)]
)
def test_expected_shapes_are_those_of_the_generator(overrides):
    G = Generator(pf.tiny_config(**overrides))
    assert expected_shapes(G.config) == {k: tuple(v.shape) for k, v in G.state_dict().items()}


@pytest.mark.parametrize("flavor", ["ada", "sg3"])
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_pytorch_pickle_round_trip_gives_identical_images(tmp_path, overrides, flavor):
    G = pf.random_generator(pf.tiny_config(**overrides))
    raw = read_nvidia_pickle(pf.write_nvidia_pytorch(tmp_path / "net.pkl", G, flavor=flavor))
    assert raw.format == "nvidia-pytorch" and raw.has_w_avg
    assert_same_network(raw, G)
    expected = "stylegan3 (StyleGAN2 generator)" if flavor == "sg3" else "stylegan2-ada-pytorch"
    assert raw.info["source"] == expected and raw.info["network"] == "G_ema" and raw.info["persistence_version"] == 6


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_pytorch_pickle_reads_every_protocol_and_both_numpy_names(tmp_path, protocol):
    G = pf.random_generator(pf.tiny_config(architecture="resnet"))
    path = pf.write_nvidia_pytorch(tmp_path / "net.pkl", G, protocol=protocol, numpy1=protocol != 3)
    assert_same_network(read_nvidia_pickle(path), G)


def test_pytorch_reader_takes_g_ema_drops_derived_filters_and_keeps_training_facts(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    raw = read_nvidia_pickle(pf.write_nvidia_pytorch(tmp_path / "net.pkl", G))
    assert set(raw.state_dict) == set(G.state_dict())  # no resample_filter buffers, nothing from G or D
    for k, v in G.state_dict().items():
        assert torch.equal(raw.state_dict[k], v), k
        assert raw.state_dict[k].dtype == torch.float32 and raw.state_dict[k].is_contiguous()
    assert raw.info["training_set_kwargs"]["resolution"] == 16
    assert raw.info["pickle_keys"] == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]


def test_pytorch_pickle_without_w_avg_says_so(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    raw = read_nvidia_pickle(pf.write_nvidia_pytorch(tmp_path / "net.pkl", G, w_avg=False))
    assert not raw.has_w_avg and "mapping.w_avg" not in raw.state_dict
    H = Generator(raw.config)
    H.load_state_dict(dict(raw.state_dict, **{"mapping.w_avg": G.mapping.w_avg}), strict=True)


def test_module_source_in_the_pickle_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    G = pf.random_generator(pf.tiny_config())
    src = f"{pf.python_touch(marker)}\nraise SystemExit('module_src was executed')\n"
    raw = read_nvidia_pickle(pf.write_nvidia_pytorch(tmp_path / "net.pkl", G, module_src=src))
    assert_same_network(raw, G)
    assert not marker.exists()


def test_stylegan3_generator_is_refused_in_one_line(tmp_path):
    path = pf.dump(pf.stylegan3_snapshot(), tmp_path / "sg3.pkl")
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    assert (
        one_line(e)
        == "sg3.pkl holds a StyleGAN3 generator (training.networks_stylegan3); stylelift reads StyleGAN2 and StyleGAN (v1) generators, not StyleGAN3"
    )


def test_pickle_without_g_ema_or_with_another_class_is_refused(tmp_path):
    snapshot = pf.nvidia_pytorch_snapshot(pf.random_generator(pf.tiny_config()))
    with pytest.raises(CheckpointError, match="no 'G_ema' network"):
        read_nvidia_pickle(pf.dump({"G": snapshot["G"]}, tmp_path / "g.pkl"))
    with pytest.raises(CheckpointError, match="'Discriminator', not a StyleGAN2 generator"):
        read_nvidia_pickle(pf.dump(dict(snapshot, G_ema=snapshot["D"]), tmp_path / "d.pkl"))
    with pytest.raises(CheckpointError, match="not an NVIDIA network pickle: .* found a list"):
        read_nvidia_pickle(pf.dump([1, 2, 3], tmp_path / "list.pkl"))


def test_weights_that_do_not_fit_their_generator_are_reported(tmp_path):
    snapshot = pf.nvidia_pytorch_snapshot(pf.random_generator(pf.tiny_config()))
    b8 = snapshot["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    del b8.state["_modules"]["conv1"].state["_parameters"]["bias"]
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(pf.dump(snapshot, tmp_path / "net.pkl"))
    assert one_line(e) == "net.pkl: the weights do not fit a StyleGAN2 generator: missing synthesis.b8.conv1.bias"


def test_layers_that_disagree_on_a_setting_are_reported(tmp_path):
    snapshot = pf.nvidia_pytorch_snapshot(pf.random_generator(pf.tiny_config(conv_clamp=256)))
    b8 = snapshot["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    b8.state["_modules"]["conv1"].state["conv_clamp"] = 128
    with pytest.raises(CheckpointError, match="layers disagree on conv_clamp"):
        read_nvidia_pickle(pf.dump(snapshot, tmp_path / "net.pkl"))


def test_legacy_torch_file_is_handed_to_the_rosinality_reader(tmp_path):
    G = pf.random_generator(pf.rosinality_config())
    path = pf.write_torch(tmp_path / "old.pt", pf.rosinality_converted_checkpoint(G), legacy=True)
    raw = read_nvidia_pickle(path)
    assert raw.format == "rosinality"
    assert_same_network(raw, G)


# ----------------------------------------------------------------------------------------------
# TensorFlow pickles

TF_CASES = {
    "v4-skip": (4, {}),
    "v4-orig": (4, dict(architecture="orig")),
    "v4-resnet": (4, dict(architecture="resnet")),
    "v5-conditional-clamped": (5, dict(c_dim=3, embed_features=5, conv_clamp=256, num_fp16_res=2)),
    "v5-conditional-embed-default": (5, dict(c_dim=2)),
    "v5-no-noise-resnet": (5, dict(use_noise=False, architecture="resnet")),
}


@pytest.mark.parametrize("version,overrides", TF_CASES.values(), ids=TF_CASES.keys())
def test_tensorflow_pickle_round_trip_gives_identical_images(tmp_path, version, overrides):
    G = pf.random_generator(pf.tiny_config(**overrides))
    raw = read_nvidia_pickle(pf.write_nvidia_tf(tmp_path / "net.pkl", G, version=version))
    assert raw.format == "nvidia-tensorflow" and raw.has_w_avg
    assert raw.info["network"] == "Gs" and raw.info["network_version"] == version
    assert_same_network(raw, G)
    for k, v in G.state_dict().items():  # exactly Gs's weights, not G's
        assert torch.equal(raw.state_dict[k], v), k


def test_tensorflow_fixture_follows_nvidia_conversion_rules():
    """The facts of NVIDIA's legacy.py, checked on the writer (the round trip then checks the reader)."""
    G = pf.random_generator(pf.tiny_config(architecture="resnet"))
    sd, v = G.state_dict(), pf.tf_variables(G)
    conv0, tf_conv0 = sd["synthesis.b8.conv0.weight"], v["synthesis/8x8/Conv0_up/weight"]  # [O,I,3,3] vs [3,3,I,O]
    conv1, tf_conv1 = sd["synthesis.b8.conv1.weight"], v["synthesis/8x8/Conv1/weight"]
    for o, i, y, x in [(0, 0, 0, 0), (1, 2, 0, 2), (3, 1, 2, 1)]:
        assert conv0[o, i, y, x].item() == tf_conv0[2 - y, 2 - x, i, o]  # flipped in space
        assert conv1[o, i, y, x].item() == tf_conv1[y, x, i, o]  # not flipped
    assert np.array_equal(v["mapping/Dense1/weight"], sd["mapping.fc1.weight"].numpy().T)
    assert np.array_equal(v["synthesis/4x4/Const/const"], sd["synthesis.b4.const"].numpy()[None])
    assert np.array_equal(v["synthesis/16x16/Conv1/mod_bias"] + 1, sd["synthesis.b16.conv1.affine.bias"].numpy())
    assert np.array_equal(v["synthesis/16x16/ToRGB/mod_weight"], sd["synthesis.b16.torgb.affine.weight"].numpy().T)
    for k, layer in enumerate(["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]):
        assert np.array_equal(v[f"synthesis/noise{k}"][0, 0], sd[f"synthesis.{layer}.noise_const"].numpy())
    assert "synthesis/4x4/ToRGB/weight" not in v and "synthesis/16x16/Skip/weight" in v


def test_conditional_stylegan2_tensorflow_network_is_refused(tmp_path):
    G = pf.random_generator(pf.tiny_config(c_dim=3))
    path = pf.write_nvidia_tf(tmp_path / "cond.pkl", G, version=4, label="concat")
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    assert one_line(e).startswith("cond.pkl is a conditional StyleGAN2 TensorFlow network (label_size=3)")


def test_odd_mixtures_of_stylegan_and_stylegan2_tensorflow_networks_are_refused(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    v1 = pf.nvidia_tf_networks(G)
    for net in v1:
        net._state["version"] = 3  # StyleGAN's network version around StyleGAN2's synthesis
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(pf.dump(v1, tmp_path / "karras2019.pkl", protocol=3))
    assert one_line(e) == "karras2019.pkl: a StyleGAN (v1) network built by 'G_main', not G_style"
    for net in v1:
        net._state["build_func_name"] = "G_style"  # and StyleGAN's builder around StyleGAN2's synthesis
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(pf.dump(v1, tmp_path / "karras2019.pkl", protocol=3))
    assert one_line(e) == (
        "karras2019.pkl: a StyleGAN network built by other functions than G_mapping / G_synthesis "
        "(mapping 'G_mapping', synthesis 'G_synthesis_stylegan2')"
    )
    path = pf.write_nvidia_tf(tmp_path / "config-d.pkl", G, synthesis_func="G_synthesis_stylegan_revised")
    with pytest.raises(CheckpointError, match="'G_synthesis_stylegan_revised' is not supported"):
        read_nvidia_pickle(path)
    path = pf.write_nvidia_tf(tmp_path / "config-a.pkl", G, synthesis_func="G_synthesis")  # StyleGAN's synthesis by name, StyleGAN2's variables
    with pytest.raises(CheckpointError, match="config-a.pkl: a StyleGAN \\(v1\\) network built by 'G_main', not G_style"):
        read_nvidia_pickle(path)


def test_unknown_tensorflow_setting_is_refused(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    kwargs = dict(pf.tf_static_kwargs(G.config, 4), fmap_mystery=3)
    with pytest.raises(CheckpointError, match="unknown TensorFlow network setting 'fmap_mystery'"):
        read_nvidia_pickle(pf.write_nvidia_tf(tmp_path / "net.pkl", G, static_kwargs=kwargs))


def test_tensorflow_architecture_must_match_the_variables(tmp_path):
    G = pf.random_generator(pf.tiny_config(architecture="resnet"))
    kwargs = dict(pf.tf_static_kwargs(G.config, 4), architecture="skip")
    with pytest.raises(CheckpointError, match="architecture 'skip' does not match"):
        read_nvidia_pickle(pf.write_nvidia_tf(tmp_path / "net.pkl", G, static_kwargs=kwargs))


# ----------------------------------------------------------------------------------------------
# Through stylelift's front door


@pytest.mark.parametrize("fmt", ["pytorch", "tensorflow"])
def test_load_generator_reads_nvidia_pickles(tmp_path, fmt):
    G = pf.random_generator(pf.tiny_config(c_dim=2))
    write = pf.write_nvidia_pytorch if fmt == "pytorch" else pf.write_nvidia_tf
    path = write(tmp_path / "net.pkl", G, **({} if fmt == "pytorch" else {"version": 5}))
    H = load_generator(path)
    assert H.source_format == f"nvidia-{fmt}"
    assert torch.equal(pf.outputs(H), pf.outputs(G))


def test_tensorflow_weights_that_are_not_floating_point_are_refused(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    nets = pf.nvidia_tf_networks(G)
    synthesis = nets[2]._state["components"]["synthesis"]
    synthesis._state["variables"] = [(k, v.astype(np.complex64) if k == "8x8/Conv1/bias" else v) for k, v in synthesis._state["variables"]]
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(pf.dump(nets, tmp_path / "complex.pkl", protocol=3))
    assert one_line(e) == "complex.pkl: TensorFlow variable synthesis/8x8/Conv1/bias holds complex64, not floating-point numbers"
