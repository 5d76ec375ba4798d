"""The defensive branches of the NVIDIA network pickle readers (PyTorch and TensorFlow), each
reached by a crafted file.

Every bad file must give one line of CheckpointError (UnsafeCheckpointError where it names code),
never a traceback, never a silent misreading, never a hang.
"""

from __future__ import annotations

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)
from reader_helpers import corrupt, edit_variables, gs_kwargs, module, nvidia_refusal, snapshot, tf_networks

from stylelift.models.nvidia import read_nvidia_pickle

# ----------------------------------------------------------------------------------------------
# nvidia: PyTorch network pickles


def test_modules_nested_deeper_than_any_generator_are_refused(tmp_path):
    leaf = pf.Persistent("Leaf", {}, "")
    for i in range(17):
        leaf = pf.Persistent(f"M{i}", {"_modules": {"c": leaf}}, "")
    snap = snapshot()
    module(snap).state["_modules"]["deep"] = leaf
    e = nvidia_refusal(tmp_path, snap)
    assert corrupt(e, "net.pkl") == "net.pkl: modules nested deeper or more numerous than in any generator"


def test_module_held_twice_is_refused(tmp_path):
    snap = snapshot()
    module(snap).state["_modules"]["again"] = module(snap, "mapping")
    e = nvidia_refusal(tmp_path, snap)
    assert corrupt(e, "net.pkl").startswith("net.pkl: module ") and "is another module over again" in str(e.value)


@pytest.mark.parametrize(
    "where, key, value, said",
    [
        ("mapping", "_modules", [1], "net.pkl: module mapping has malformed submodules"),
        ("mapping", "_parameters", [1], "net.pkl: module mapping has malformed _parameters"),
        ("", "_buffers", "w", "net.pkl: module G_ema has malformed _buffers"),
    ],
)
def test_malformed_module_containers_are_refused(tmp_path, where, key, value, said):
    snap = snapshot()
    module(snap, where).state[key] = value
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == said


def test_submodule_that_is_not_a_module_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping").state["_modules"]["fc9"] = 7
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: submodule mapping.fc9 is not an NVIDIA persistent module (an int)"


def test_parameter_that_is_not_a_tensor_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping.fc0").state["_parameters"]["weight"] = 0.5
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: mapping.fc0.weight is not a tensor (a float)"


def test_empty_submodule_slots_are_skipped(tmp_path):
    snap = snapshot()
    module(snap).state["_modules"]["unused"] = None  # torch keeps None for a submodule set to None
    snap["training_set_kwargs"] = None
    raw = read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl"))
    assert raw.format == "nvidia-pytorch" and "training_set_kwargs" not in raw.info


def test_training_facts_keep_only_short_plain_values(tmp_path):
    snap = snapshot()
    snap["training_set_kwargs"] = pf.EasyDict(path="/data/x.zip", nested={"a": 1}, long="x" * 300, sizes=[1, 2])
    raw = read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl"))
    assert raw.info["training_set_kwargs"] == {"path": "/data/x.zip", "sizes": [1, 2]}


def test_missing_generator_attribute_is_refused(tmp_path):
    snap = snapshot()
    del module(snap).state["z_dim"]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: G_ema has no attribute 'z_dim'"


def test_missing_tensor_the_config_needs_is_refused(tmp_path):
    snap = snapshot()
    del module(snap, "mapping.fc0").state["_parameters"]["weight"]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: tensor mapping.fc0.weight is missing"


@pytest.mark.parametrize(
    "value, said",
    [("16", "z_dim is '16', not an integer >= 1"), ([16], "z_dim is a list, not an integer >= 1"), (0, "z_dim is 0, not an integer >= 1")],
)
def test_generator_setting_that_is_not_an_integer_is_refused(tmp_path, value, said):
    snap = snapshot()
    module(snap).state["z_dim"] = value
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == f"net.pkl: {said}"


def test_mapping_learning_rate_that_is_not_a_number_is_refused(tmp_path):
    snap = snapshot()
    for i in range(2):
        module(snap, f"mapping.fc{i}").state["bias_gain"] = float("nan")
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: mapping.fc0.bias_gain is nan, not a number"


def test_misnumbered_mapping_layers_are_refused(tmp_path):
    snap = snapshot()
    module(snap, "mapping").state["num_layers"] = 3
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: the mapping network's layers are missing or misnumbered"


def test_synthesis_blocks_that_do_not_match_the_resolution_are_refused(tmp_path):
    snap = snapshot()
    module(snap).state["img_resolution"] = 32
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: the synthesis blocks do not match img_resolution=32"


def test_activation_other_than_lrelu_is_refused(tmp_path):
    snap = snapshot()
    module(snap, "synthesis.b8.conv1").state["activation"] = "relu"
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: activations ['lrelu', 'relu'] are not supported (only lrelu)"


def test_unhashable_setting_is_one_line_error(tmp_path):
    snap = snapshot()
    module(snap, "synthesis.b8.conv1").state["activation"] = ["lrelu"]
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text == "net.pkl: unexpected network layout (TypeError: unhashable type: 'list')"


def test_unexpected_extra_weight_is_reported(tmp_path):
    snap = snapshot()
    module(snap, "mapping.fc0").state["_parameters"]["scale"] = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text == "net.pkl: the weights do not fit a StyleGAN2 generator: unexpected mapping.fc0.scale"


def test_resample_filter_from_the_settings_is_checked(tmp_path):
    snap = snapshot()
    module(snap).state["_init_kwargs"]["synthesis_kwargs"]["resample_filter"] = [1, "3", 3, 1]
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: a resample_filter tap is '3', not an integer >= 0"


def test_resample_filter_from_the_settings_is_used(tmp_path):
    snap = snapshot(resample_filter=(1, 2, 1))
    module(snap).state["_init_kwargs"]["synthesis_kwargs"]["resample_filter"] = [1, 2, 1]
    for block in ("b4", "b8", "b16"):  # no stored kernel: the settings alone say
        del module(snap, f"synthesis.{block}").state["_buffers"]["resample_filter"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.resample_filter == (1, 2, 1)


def test_missing_resample_filter_means_nvidias_default(tmp_path):
    snap = snapshot()
    del module(snap, "synthesis.b4").state["_buffers"]["resample_filter"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.resample_filter == (1, 3, 3, 1)


def test_fp16_layers_are_counted_when_the_settings_do_not_say(tmp_path):
    snap = snapshot(num_fp16_res=2)
    del module(snap).state["_init_kwargs"]["synthesis_kwargs"]["num_fp16_res"]
    assert read_nvidia_pickle(pf.dump(snap, tmp_path / "net.pkl")).config.num_fp16_res == 2


def test_conv_clamp_that_is_not_a_number_is_refused(tmp_path):
    snap = snapshot(conv_clamp=256)
    for name in ("b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb"):
        module(snap, f"synthesis.{name}").state["conv_clamp"] = "big"
    assert corrupt(nvidia_refusal(tmp_path, snap), "net.pkl") == "net.pkl: conv_clamp is 'big', not a number"


def test_unknown_architecture_is_refused(tmp_path):
    snap = snapshot()
    for block in ("b4", "b8", "b16"):
        module(snap, f"synthesis.{block}").state["architecture"] = "wavelet"
    text = corrupt(nvidia_refusal(tmp_path, snap), "net.pkl")
    assert text.startswith("net.pkl: unsupported generator settings (architecture must be one of") and "'wavelet'" in text


# ----------------------------------------------------------------------------------------------
# nvidia: TensorFlow network pickles


@pytest.mark.parametrize(
    "change, said",
    [
        (dict(version=6), "TensorFlow network version 6 is not supported (4 and 5 are)"),
        (dict(static_kwargs=None), "the TensorFlow network Gs has no static_kwargs or components"),
        (dict(components=[]), "the TensorFlow network Gs has no static_kwargs or components"),
    ],
    ids=["version", "no-kwargs", "components-list"],
)
def test_malformed_tensorflow_gs_is_refused(tmp_path, change, said):
    nets = tf_networks()
    nets[2]._state.update(change)
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"


@pytest.mark.parametrize(
    "setting, said",
    [
        (dict(mapping_func="G_mapping_v2"), "TensorFlow mapping network 'G_mapping_v2' is not supported"),
        (dict(normalize_latents=False), "networks without latent normalisation are not supported"),
        (dict(nonlinearity="relu"), "activations ['lrelu', 'relu'] are not supported (only lrelu)"),
        (dict(label_size=3), "a conditional network (label_size=3) without a label embedding"),
        (dict(latent_size=11), "latent_size does not match the mapping network's weights"),
        (dict(resolution=24), "resolution 24 is not a power of two"),
        (dict(resolution=32), "the synthesis variables do not match resolution=32"),
        (dict(use_noise=False), "use_noise=False does not match the network's variables"),
        (dict(resample_kernel="1331"), "bad resample_kernel '1331'"),
        (dict(resample_kernel=[]), "bad resample_kernel a list"),
        (dict(conv_clamp="big"), "conv_clamp is 'big', not a number"),
        (dict(mapping_lrmul=0.0), "unsupported generator settings (mapping_lr_multiplier must be a number above 0"),
        (dict(label_size=-1), "label_size is -1, not an integer >= 0"),
    ],
    ids=lambda x: "-".join(map(str, x)) if isinstance(x, dict) else None,
)
def test_tensorflow_settings_that_do_not_fit_are_refused(tmp_path, setting, said):
    nets = tf_networks()
    gs_kwargs(nets).update(setting)
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith(f"net.pkl: {said}"), text


@pytest.mark.parametrize(
    "component, change, said",
    [
        ("mapping", lambda v: [v.pop(k) for k in list(v) if k.startswith("Dense")], "the TensorFlow mapping network has no Dense layers"),
        ("synthesis", lambda v: v.pop("4x4/Const/const"), "TensorFlow variable synthesis/4x4/Const/const is missing"),
        ("synthesis", lambda v: v.update({"4x4/Const/const": np.zeros([1, 7, 4, 4], np.float32)}), "a constant input of 7 channels feeding 12"),
        ("synthesis", lambda v: v.update(lod=np.float32(0)), "a progressive-growing StyleGAN2 network (configs A-D) is not supported"),
        ("synthesis", lambda v: v.update({"4x4/Conv/bias": "zeros"}), "TensorFlow variable synthesis/4x4/Conv/bias is not an array"),
        ("synthesis", lambda v: v.update({"4x4/ToRGB/bias": v["4x4/Conv/bias"]}), "TensorFlow variables "),  # one array, pickled once, under two names
    ],
    ids=["no-dense", "no-const", "const-width", "lod", "text-variable", "shared-array"],
)
def test_tensorflow_variables_that_do_not_fit_are_refused(tmp_path, component, change, said):
    nets = tf_networks()
    edit_variables(nets, component, change)
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith(f"net.pkl: {said}"), text


@pytest.mark.parametrize(
    "variables, said",
    [
        ({"a": 1}, "malformed variables in TensorFlow network mapping/"),
        ([("Dense0/weight", np.zeros([2, 2], np.float32), "extra")], "malformed variable in TensorFlow network mapping/"),
        ([(0, np.zeros([2, 2], np.float32))], "malformed variable in TensorFlow network mapping/"),
    ],
    ids=["dict", "triple", "unnamed"],
)
def test_malformed_tensorflow_variable_lists_are_refused(tmp_path, variables, said):
    nets = tf_networks()
    nets[2]._state["components"]["mapping"]._state["variables"] = variables
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"


def test_tensorflow_array_never_filled_is_not_an_array(tmp_path):
    nets = tf_networks()  # an ArrayRecord stays empty when `_reconstruct` is not followed by its BUILD
    nets[2]._state["variables"].append(("lod2", pf.Reduce(pf._legacy_reconstruct, np.ndarray, (0,), b"b")))
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text == "net.pkl: TensorFlow variable lod2 is not an array"


def test_tensorflow_components_nested_too_deep_are_refused(tmp_path):
    nets = tf_networks()
    inner = pf.tf_network("leaf", "f", {}, {})
    for i in range(5):
        inner = pf.tf_network(f"n{i}", "f", {}, {}, components={"c": inner})
    nets[2]._state["components"]["extra"] = inner
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text == "net.pkl: TensorFlow networks nested deeper than StyleGAN2's"


def test_tensorflow_component_held_twice_is_refused(tmp_path):
    nets = tf_networks()
    nets[2]._state["components"]["again"] = nets[2]._state["components"]["mapping"]
    text = corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl")
    assert text.startswith("net.pkl: TensorFlow network ") and text.endswith("is another component over again")


@pytest.mark.parametrize("key, value, said", [("extra", 5, "malformed component 'extra' of TensorFlow network Gs"), (7, None, "malformed component 7 of TensorFlow network Gs")])
def test_tensorflow_component_that_is_not_a_network_is_refused(tmp_path, key, value, said):
    nets = tf_networks()
    nets[2]._state["components"][key] = value if value is not None else nets[2]._state["components"]["mapping"]
    assert corrupt(nvidia_refusal(tmp_path, nets, protocol=3), "net.pkl") == f"net.pkl: {said}"
