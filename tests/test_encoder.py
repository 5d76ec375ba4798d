import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import load_latents, network_id, save_generator
from stylelift.cli import app
from stylelift.encoder_training import EncoderTrainOptions, held_out_error, train_encoder
from stylelift.errors import CheckpointError, InputError
from stylelift.images import to_tensor
from stylelift.models.encoder import load_encoder, new_encoder, save_encoder

OPTS = EncoderTrainOptions(steps=100, batch_size=8, lr=1e-3, render_resolution=32, image_loss="mse", checkpoint_every=50)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    G = tiny_generator(img_resolution=32)
    enc = new_encoder(G, input_resolution=32)
    before = held_out_error(G, enc, resolution=32)
    state = train_encoder(G, enc, OPTS)
    return G, enc, before, state


def test_an_untrained_encoder_answers_w_avg():
    G = tiny_generator()
    enc = new_encoder(G, input_resolution=32)
    ws = enc(torch.zeros(2, 3, 16, 16))
    assert ws.shape == (2, G.num_ws, G.w_dim) and torch.allclose(ws, G.w_avg.expand_as(ws))


@pytest.mark.parametrize("img, message", [
    (np.zeros((1, 3, 16, 16), np.float32), r"the encoder's input must be \[N, 3, H, W\] in \[-1, 1\], got ndarray"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "must be float in \\[-1, 1\\], got torch.uint8"),
    (torch.full((1, 3, 16, 16), 200.0), "looks like pixels in 0..255 .* the encoder takes"),
    (torch.full((1, 3, 16, 16), float("nan")), "holds NaN"),
    (torch.zeros(1, 3, 16, 12), "must be square, got 16x12"),
    (torch.zeros(0, 3, 16, 16), "holds no image"),
])
def test_the_encoder_checks_its_input_as_project_checks_a_target(img, message):
    enc = new_encoder(tiny_generator(), input_resolution=32)
    with pytest.raises(InputError, match=message):
        enc(img)


def test_an_encoder_in_bfloat16_takes_and_gives_bfloat16():
    enc = new_encoder(tiny_generator(), input_resolution=32).to(torch.bfloat16).eval()
    assert enc(torch.zeros(1, 3, 16, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_a_network_that_renders_nan_is_blamed_not_the_training(tmp_path):
    G = tiny_generator(img_resolution=32)
    with torch.no_grad():
        next(p for name, p in G.named_parameters() if name.startswith("synthesis")).fill_(float("nan"))
    with pytest.raises(InputError, match="the network renders NaN or infinite images from sampled latents: is its file damaged"):
        train_encoder(G, new_encoder(G, input_resolution=32), OPTS)


def test_training_loss_falls_and_the_encoder_beats_w_avg_on_held_out_samples(trained):
    G, enc, before, state = trained
    hist = state["history"]
    first = sum(r["loss"] for r in hist[:10]) / 10
    last = sum(r["loss"] for r in hist[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    after = held_out_error(G, enc, resolution=32)
    assert after["latent_mse_encoder"] < 0.8 * after["latent_mse_w_avg"], after
    assert after["image_mse_encoder"] < after["image_mse_w_avg"], after
    assert before["latent_mse_encoder"] == pytest.approx(before["latent_mse_w_avg"])


def test_checkpoint_round_trip_and_network_check(trained, tmp_path):
    G, enc, _, state = trained
    path = tmp_path / "enc.pt"
    save_encoder(path, enc, training=state)
    back, training = load_encoder(path, G=G)
    assert training["step"] == OPTS.steps
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert (back(x) - enc(x)).abs().max() < 2e-2  # weights stored as float16
    with pytest.raises(InputError, match="trained for network"):
        load_encoder(path, G=tiny_generator(seed=7, img_resolution=32))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_encoder(tmp_path / "bad.pt")


def test_resume_continues_the_step_count(tmp_path):
    G = tiny_generator()
    enc = new_encoder(G, input_resolution=32)
    path = tmp_path / "enc.pt"
    opts = EncoderTrainOptions(steps=4, batch_size=2, render_resolution=16, checkpoint_every=2)
    train_encoder(G, enc, opts, out=path)
    back, state = load_encoder(path, G=G)
    assert state["step"] == 4
    more = train_encoder(G, back, EncoderTrainOptions(steps=6, batch_size=2, render_resolution=16), state=state)
    assert more["step"] == 6 and len(more["history"]) == 6


def test_a_checkpoint_s_damaged_optimizer_settings_history_or_option_names_are_not_trained_on(tmp_path):
    G = tiny_generator()
    path = tmp_path / "enc.pt"
    opts = EncoderTrainOptions(steps=2, batch_size=2, render_resolution=16)
    train_encoder(G, new_encoder(G, input_resolution=32), opts, out=path)
    clean = torch.load(path, weights_only=True)

    def damaged(change):
        data = torch.load(path, weights_only=True)
        change(data["training"])
        torch.save(data, tmp_path / "bad.pt")
        return load_encoder(tmp_path / "bad.pt", G=G)

    for change in (lambda t: t["optimizer"]["param_groups"][0].update(betas=(2.0, "x")), lambda t: t["optimizer"]["param_groups"][0].update(lr=-1.0)):
        enc, state = damaged(change)  # the first raised a TypeError in the first step; lr -1 trained uphill
        more = train_encoder(G, enc, EncoderTrainOptions(steps=3, batch_size=2, render_resolution=16), state=state)
        again, clean_state = load_encoder(path, G=G)
        same = train_encoder(G, again, EncoderTrainOptions(steps=3, batch_size=2, render_resolution=16), state=clean_state)
        assert more["history"][-1] == same["history"][-1]  # the run's own lr and betas, as if the file held them right
    enc, state = damaged(lambda t: t.update(history="abc"))  # was saved back as ['a', 'b', 'c']
    with pytest.raises(CheckpointError, match="its history is not a list of step records"):
        train_encoder(G, enc, EncoderTrainOptions(steps=3, batch_size=2, render_resolution=16), state=state)
    clean["training"]["options"][1] = 2
    torch.save(clean, tmp_path / "keys.pt")
    save_generator(G, tmp_path / "net.pt")
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "keys.pt"), "--resume", "--steps", "3", "--batch-size", "2", "--input-resolution", "32"])
    assert r.exit_code == 1 and "its training options are damaged" in r.output and "Traceback" not in r.output, r.output  # "attribute name must be string"
    del clean["training"]["options"][1]
    clean["training"]["options"]["lr"] = torch.tensor([1.0, 2.0])
    torch.save(clean, tmp_path / "keys.pt")
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "keys.pt"), "--resume", "--steps", "3", "--batch-size", "2", "--input-resolution", "32"])
    assert r.exit_code == 1 and "its training options are damaged" in r.output, r.output  # "Boolean value of Tensor with more than one value is ambiguous"


def test_encoder_train_onto_an_existing_checkpoint_needs_resume_or_overwrite(tmp_path):
    save_generator(tiny_generator(), tmp_path / "net.pt")
    args = ["encoder", "train", "--network", tmp_path / "net.pt", "--out", tmp_path / "enc.pt", "--steps", "2", "--batch-size", "2", "--input-resolution", "32", "--device", "cpu"]
    invoke = lambda *extra: CliRunner().invoke(app, [str(a) for a in args] + list(extra))  # noqa: E731
    assert invoke().exit_code == 0
    first = (tmp_path / "enc.pt").read_bytes()
    r = invoke()
    assert r.exit_code == 1 and "pass --resume to continue it, --overwrite to start afresh" in r.output, r.output
    r = invoke("--resume", "--overwrite")
    assert r.exit_code == 2 and "give one" in r.output, r.output
    assert (tmp_path / "enc.pt").read_bytes() == first
    r = invoke("--overwrite", "--seed", "5")
    assert r.exit_code == 0, r.output
    _, state = load_encoder(tmp_path / "enc.pt", G=tiny_generator())
    assert state["step"] == 2 and state["options"]["seed"] == 5  # a new run of 2 steps, not the old one continued


def test_encoder_commands_and_project_init(tmp_path):
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "enc.pt"), "--steps", "3", "--batch-size", "2", "--input-resolution", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    r = CliRunner().invoke(app, ["encoder", "run", str(tmp_path / "p.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--no-align", "--outdir", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    lf = load_latents(tmp_path / "e" / "p.npz")
    assert lf.w.shape == (1, 6, 16) and lf.meta["network_id"] == network_id(G)
    enc, _ = load_encoder(tmp_path / "enc.pt", G=G)
    with torch.no_grad():
        guess = enc(to_tensor(np.full((16, 16, 3), (120, 80, 60), dtype=np.uint8))).numpy()  # the photo, centre-cropped to 16 px
    assert np.allclose(lf.w, guess, atol=1e-5)  # the encoder's own guess, not w_avg
    assert not np.allclose(guess, G.w_avg.numpy(), atol=1e-3)
    r = CliRunner().invoke(app, ["project", str(tmp_path / "p.png"), "--network", str(tmp_path / "net.pt"), "--init", str(tmp_path / "enc.pt"), "--steps", "1", "--no-align", "--loss", "mse", "--outdir", str(tmp_path / "p"), "--no-video"])
    assert r.exit_code == 0, r.output
    assert np.allclose(load_latents(tmp_path / "p" / "p.npz").w, guess, atol=1e-5)  # one step at the ramp's lr 0: the start itself
    save_generator(tiny_generator(seed=3), tmp_path / "other.pt")
    r = CliRunner().invoke(app, ["project", str(tmp_path / "p.png"), "--network", str(tmp_path / "other.pt"), "--init", str(tmp_path / "enc.pt"), "--steps", "2", "--no-align", "--outdir", str(tmp_path / "q")])
    assert r.exit_code == 1 and "trained for network" in r.output and "Traceback" not in r.output
    (tmp_path / "odd").mkdir()
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "odd" / "a\nb\x1b[31m.png", format="PNG")
    for _ in range(2):  # written, then already done
        r = CliRunner().invoke(app, ["encoder", "run", str(tmp_path / "odd"), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--no-align", "--outdir", str(tmp_path / "odd")])
        assert r.exit_code == 0 and "a\\nb\\x1b[31m.png: " in r.output and "\x1b" not in r.output and not any(line.startswith("b") for line in r.output.splitlines()), r.output  # the name as align and project print it


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    """Saved float16 weights would start the rest of the run from rounded weights; the checkpoint
    keeps float32 ones for resuming, so the losses continue exactly."""
    G = tiny_generator()
    opts = dict(batch_size=2, render_resolution=16, checkpoint_every=100, lr=1e-2)
    torch.manual_seed(0)
    whole = train_encoder(G, new_encoder(G, input_resolution=32), EncoderTrainOptions(steps=6, **opts))
    torch.manual_seed(0)
    path = tmp_path / "enc.pt"
    train_encoder(G, new_encoder(G, input_resolution=32), EncoderTrainOptions(steps=3, **opts), out=path)
    back, state = load_encoder(path, G=G)
    rest = train_encoder(G, back, EncoderTrainOptions(steps=6, **opts), state=state)
    for a, b in zip(whole["history"][3:], rest["history"][3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: d["config"].update(num_ws=-1), "num_ws must be"),
        (lambda d: d["config"].update(w_dim="x"), "w_dim must be"),
        (lambda d: d.update(state_dict={"w_avg": "x"}), "not what stylelift writes"),
        (lambda d: d["state_dict"].pop("w_avg"), "no w_avg"),
        (lambda d: d.update(training=[1]), "not what stylelift writes"),
        (lambda d: d["state_dict"].update(w_avg=torch.full_like(d["state_dict"]["w_avg"], float("nan"))), "w_avg holds NaN"),
        (lambda d: d.update(training={"step": "abc"}), "training step 'abc'"),
        (lambda d: d.update(training={"step": -3}), "training step -3"),
        (lambda d: d["state_dict"].update(w_avg=torch.zeros(1).expand(20_000)), "not a plain array"),
        (lambda d: d["state_dict"].update({"head.weight": torch.zeros(3, 3)}), r"head.weight is \[3, 3\], not \[96, 512\]"),
        (lambda d: d["state_dict"].update(extra=torch.zeros(1)), "extra is \\[1\\], not an encoder weight"),
        # a config 16384 ws of 16384 (a 550 GB head) with the file's own small weights: refused before anything is allocated
        (lambda d: (d["config"].update(num_ws=1 << 14, w_dim=1 << 14), d["state_dict"].update(w_avg=torch.zeros(1, 1, 1 << 14))), r"head.weight is \[96, 512\], not \[268435456, 512\]"),
    ],
)
def test_damaged_encoder_checkpoints_are_one_error(tmp_path, damage, match):
    G = tiny_generator()
    path = tmp_path / "enc.pt"
    save_encoder(path, new_encoder(G, input_resolution=32))
    data = torch.load(path, weights_only=True)
    damage(data)
    torch.save(data, path)
    with pytest.raises((CheckpointError, InputError), match=match):
        load_encoder(path, G=G)


def test_resuming_with_other_options_is_refused(tmp_path):
    G = tiny_generator()
    save_generator(G, tmp_path / "g.pt")
    args = ["encoder", "train", "--network", tmp_path / "g.pt", "--out", tmp_path / "e.pt", "--steps", "2", "--batch-size", "2", "--input-resolution", "32", "--device", "cpu"]
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [str(a) for a in args[:-4]] + ["--resume", "--steps", "4", "--seed", "7", "--device", "cpu"])
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1 and "other settings" in r.output and "seed" in r.output, r.output  # not "resuming" first
    r = CliRunner().invoke(app, [str(a) for a in args[:-4]] + ["--resume", "--steps", "3", "--device", "cpu"])
    assert r.exit_code == 0 and r.output.startswith(f"resuming {tmp_path / 'e.pt'} at step 2"), r.output


def test_a_fitted_face_encoder_beats_w_avg_on_new_samples_and_round_trips(tmp_path):
    from stylelift.encoder_training import FaceEncoderFitOptions, fit_face_encoder, sample_batch

    G = tiny_generator(img_resolution=32)
    enc, report = fit_face_encoder(G, FaceEncoderFitOptions(samples=240, rank=12, render_resolution=32, batch_size=48))
    assert report["samples"] == 240 and report["held_out_error"] < 0.8 and report["held_out_error_reduced"] < 0.8, report
    ws, images = sample_batch(G, 48, EncoderTrainOptions(render_resolution=32), torch.Generator().manual_seed(99))  # not fitted on
    with torch.no_grad():
        guess = enc(images)
    assert (guess - ws).square().mean() < 0.8 * (G.w_avg - ws).square().mean()
    save_encoder(tmp_path / "face.pt", enc, training={"fit": report})
    back, training = load_encoder(tmp_path / "face.pt", G=G)
    assert back.config.backbone == "dlib-face" and training["fit"]["samples"] == 240
    assert "backbone" not in "".join(back.state_dict())  # dlib's network comes from its package, not the file
    with torch.no_grad():
        assert (back(images) - guess).abs().max() < 2e-2  # head stored as float16


def test_a_fit_caps_the_heads_rank_at_what_its_samples_span():
    from stylelift.encoder_training import FaceEncoderFitOptions, fit_face_encoder

    G = tiny_generator(img_resolution=32)
    enc, report = fit_face_encoder(G, FaceEncoderFitOptions(samples=12, rank=300, render_resolution=32, batch_size=12))
    assert enc.config.head_rank == report["rank"] == 11 and enc.head[0].weight.shape[0] == 11
    assert report["held_out_error_reduced"] == pytest.approx(report["held_out_error"], rel=1e-6)  # the cut loses nothing of the full-rank fit


def test_encoder_fit_command(tmp_path):
    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    args = ["encoder", "fit", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "f.pt"), "--samples", "40", "--rank", "4", "--device", "cpu"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "held-out latent error" in r.output, r.output
    assert load_encoder(tmp_path / "f.pt", G=G)[0].config.head_rank == 4
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "exists" in r.output
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "f.pt"), "--resume", "--device", "cpu"])
    assert r.exit_code == 1 and "fitted" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "g.pt"), "--backbone", "dlib-face"])
    assert r.exit_code == 2 and "encoder fit" in r.output and not (tmp_path / "g.pt").exists()
    too_high = ["encoder", "fit", "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "h.pt"), "--rank", "2000"]  # > 1,536 features
    r = CliRunner().invoke(app, too_high)
    assert r.exit_code == 2 and "the head's rank must be 1 to 1536 (the number of features), got 2000" in " ".join(r.output.replace("│", " ").split()), r.output
    from stylelift.models.encoder import face_feature_count

    helped = " ".join(CliRunner().invoke(app, ["encoder", "fit", "--help"]).output.replace("│", " ").split())
    assert f"at most the {face_feature_count():,} features" in helped and "4096" not in helped  # the option said max 4096


def test_an_unfitted_face_encoder_answers_w_avg_and_resnet_files_keep_the_old_config(tmp_path):
    from stylelift.models.torch_files import load_torch_file

    G = tiny_generator()
    enc = new_encoder(G, backbone="dlib-face", input_resolution=32, head_rank=4)
    ws = enc(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert torch.allclose(ws, G.w_avg.expand_as(ws))
    save_encoder(tmp_path / "r.pt", new_encoder(G, input_resolution=32))
    assert "head_rank" not in load_torch_file(tmp_path / "r.pt")["config"]  # readable by versions before it
    save_encoder(tmp_path / "f.pt", enc)
    assert load_torch_file(tmp_path / "f.pt")["config"]["head_rank"] == 4


def test_the_shipped_encoder_is_for_the_bundled_network_and_named_encoder(tmp_path):
    import json
    from importlib import resources

    from PIL import Image

    from stylelift.models.encoder import resolve_encoder_path

    path = resolve_encoder_path("encoder")
    enc, training = load_encoder(path)
    shipped_for = json.loads((resources.files("stylelift") / "data" / "directions" / "age.json").read_text())["network_id"]
    assert enc.config.network_id == shipped_for and enc.config.backbone == "dlib-face"
    assert path.stat().st_size < 50e6 and training["fit"]["held_out_error_reduced"] < 0.8
    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    r = CliRunner().invoke(app, ["project", str(tmp_path / "p.png"), "--network", str(tmp_path / "net.pt"), "--init", "encoder", "--steps", "2", "--no-align", "--outdir", str(tmp_path / "q")])
    assert r.exit_code == 1 and "trained for network" in r.output and "Traceback" not in r.output


def test_encoder_training_samples_every_class_of_a_conditional_network():
    from stylelift.encoder_training import sample_batch

    G = tiny_generator(c_dim=3)
    ws, images = sample_batch(G, 6, EncoderTrainOptions(render_resolution=16, mixing_prob=0.0, truncation=(1.0, 1.0)), torch.Generator().manual_seed(0))
    assert ws.shape == (6, G.num_ws, G.w_dim) and images.shape == (6, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)  # the same draws: z first, then psi, then the classes
    z = torch.randn([2, 6, G.z_dim], generator=gen)
    torch.rand([6, 1, 1], generator=gen)
    classes = torch.randint(3, [6], generator=gen)
    assert len(set(classes.tolist())) > 1
    assert torch.allclose(ws, G.mapping(z[0], torch.nn.functional.one_hot(classes, 3).float()), atol=1e-6)


def test_an_encoder_trains_on_a_conditional_network(tmp_path):
    G = tiny_generator(c_dim=3)
    save_generator(G, tmp_path / "cnet.pt")
    r = CliRunner().invoke(app, ["encoder", "train", "--network", str(tmp_path / "cnet.pt"), "--out", str(tmp_path / "e.pt"), "--steps", "2", "--batch-size", "2", "--input-resolution", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    enc, state = load_encoder(tmp_path / "e.pt", G=G)
    assert state["step"] == 2 and enc(torch.zeros(1, 3, 16, 16)).shape == (1, G.num_ws, G.w_dim)


def test_encoder_run_keeps_a_projection_and_project_no_longer_counts_it_done(tmp_path):
    """encoder run into project's --outdir replaced NAME.npz silently, and project then said 'already done'."""
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    Image.new("RGB", (40, 40), (20, 80, 60)).save(tmp_path / "p.bmp")
    net, out = str(tmp_path / "net.pt"), str(tmp_path / "o")
    project_args = ["project", str(tmp_path / "p.png"), "--network", net, "--steps", "2", "--no-align", "--loss", "mse", "--outdir", out, "--no-video"]
    assert CliRunner().invoke(app, project_args).exit_code == 0
    projected = (tmp_path / "o" / "p.npz").read_bytes()
    run = ["encoder", "run", str(tmp_path / "p.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", net, "--no-align", "--outdir", out]
    r = CliRunner().invoke(app, run)
    assert r.exit_code == 1 and "p.npz exists; pass --overwrite" in " ".join(r.output.split()), r.output
    assert (tmp_path / "o" / "p.npz").read_bytes() == projected
    r = CliRunner().invoke(app, [*run, "--overwrite"])
    assert r.exit_code == 0 and load_latents(tmp_path / "o" / "p.npz").meta["method"] == "encoder", r.output
    encoded = (tmp_path / "o" / "p.npz").read_bytes()
    r = CliRunner().invoke(app, run)  # the same again: nothing to do
    assert r.exit_code == 0 and r.output == "p.png: already done (use --overwrite to redo)\n", r.output
    (tmp_path / "o" / "p_enc.png").unlink()
    assert CliRunner().invoke(app, run).exit_code == 1  # not done without its image: it says the file exists
    assert CliRunner().invoke(app, [*run, "--overwrite"]).exit_code == 0
    encoded = (tmp_path / "o" / "p.npz").read_bytes()
    r = CliRunner().invoke(app, [*run[:-2], "--outdir", out, "--align"])  # other options: not done, and not replaced
    assert r.exit_code == 1 and "p.npz exists; pass --overwrite" in " ".join(r.output.split()), r.output
    for outdir in (out, str(tmp_path / "fresh")):  # project onto the encoder's file, done before or not
        if outdir != out:
            assert CliRunner().invoke(app, [*run[:-1], outdir]).exit_code == 0
        r = CliRunner().invoke(app, [*project_args[:-3], "--outdir", outdir, "--no-video"])
        assert r.exit_code == 1 and "p.npz holds latents made by 'encoder', not by a projection; pass --overwrite" in " ".join(r.output.split()), r.output
    assert (tmp_path / "o" / "p.npz").read_bytes() == encoded
    assert CliRunner().invoke(app, [*project_args, "--overwrite"]).exit_code == 0
    r = CliRunner().invoke(app, [*run[:2], str(tmp_path / "p.bmp"), *run[2:], "--overwrite"])  # two photos named p
    assert r.exit_code == 1 and "p.png: its outputs would overwrite those of p.bmp" in " ".join(r.output.split()), r.output
    long = tmp_path / f"{'c' * 249}.png"  # its NAME.npz fits the file system, its NAME_enc.png does not
    Image.new("RGB", (40, 40), (120, 80, 60)).save(long)
    r = CliRunner().invoke(app, [*run[:2], str(long), str(tmp_path / "p.bmp"), *run[3:-1], str(tmp_path / "long")])
    assert r.exit_code == 1 and "is longer than the file system takes" in r.output and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "long").iterdir()) == ["p.npz", "p_enc.png"]  # the next photo was done
    r = CliRunner().invoke(app, [*run[:2], str(long), *run[3:-1], str(tmp_path / "none")])
    assert r.exit_code == 1 and not (tmp_path / "none").exists()  # no empty folder when no photo is done


def test_encoder_run_that_cannot_write_its_latent_file_keeps_the_earlier_pair(tmp_path, monkeypatch):
    import errno

    from PIL import Image

    from stylelift import latents

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    run = ["encoder", "run", str(tmp_path / "p.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--no-align", "--outdir", str(tmp_path / "o")]
    assert CliRunner().invoke(app, run).exit_code == 0
    def files():  # a file renamed onto one is a new inode
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "o").iterdir()}

    before = files()

    def full_disk(path, lf):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(latents, "save_latents", full_disk)  # written after the image
    r = CliRunner().invoke(app, [*run, "--overwrite"])
    assert r.exit_code == 1 and f"error: p.png: {tmp_path / 'o' / 'p.npz'}: No space left on device" in " ".join(r.output.split()), r.output
    assert files() == before  # the earlier pair whole: its image was not replaced alone
    monkeypatch.undo()
    assert CliRunner().invoke(app, run).output == "p.png: already done (use --overwrite to redo)\n"


def test_an_encoder_whose_guess_is_not_finite_fails_each_photo_by_name_and_writes_nothing(tmp_path):
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    enc = new_encoder(G, input_resolution=32)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.startswith("head."):
                p.fill_(3e38)  # (the head starts at zero): sums past float32's largest
    save_encoder(tmp_path / "enc.pt", enc, half=False)
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    r = CliRunner().invoke(app, ["encoder", "run", str(tmp_path / "p.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--no-align", "--outdir", str(tmp_path / "o")])
    assert r.exit_code == 1 and "error: p.png: the encoder's guess holds NaN or infinite values (is enc.pt damaged?)" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o").exists()


def test_outputs_never_replace_a_photo_of_the_run_and_earlier_outputs_are_not_photos(tmp_path):
    """encoder run (and project) into the photos' own folder replaced a photo named like an output."""
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    net = str(tmp_path / "net.pt")
    folders = {}
    for folder, names in (("pe", ("me.png", "me_enc.png")), ("pj", ("me.png", "me_proj.png")), ("pc", ("me.png",))):
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (40, 40), (120, 80, len(name))).save(tmp_path / folder / name)
        folders[folder] = {name: (tmp_path / folder / name).read_bytes() for name in names}
    pe, pj, pc = (str(tmp_path / f) for f in folders)
    r = CliRunner().invoke(app, ["encoder", "run", pe, "--encoder", str(tmp_path / "enc.pt"), "--network", net, "--no-align", "--outdir", pe])
    assert r.exit_code == 1 and "me.png: its me_enc.png would replace the photo" in " ".join(r.output.split()), r.output
    project = ["--network", net, "--steps", "1", "--no-align", "--loss", "mse", "--no-video"]
    r = CliRunner().invoke(app, ["project", pj, *project, "--outdir", pj])
    assert r.exit_code == 1 and "its me_proj.png would replace the photo" in " ".join(r.output.split()), r.output
    for folder in ("pe", "pj"):
        assert all((tmp_path / folder / name).read_bytes() == data for name, data in folders[folder].items())
    assert CliRunner().invoke(app, ["project", pc, *project, "--outdir", pc]).exit_code == 0
    r = CliRunner().invoke(app, ["project", pc, *project, "--outdir", pc])  # its outputs are not photos to project
    assert r.exit_code == 0 and "left out 2 images that stylelift wrote" in " ".join(r.output.split()), r.output
    assert r.output.splitlines()[-1] == "me.png: already done (use --overwrite to redo)" and "me_proj" not in r.output.replace("NAME_proj", "")


def test_encoder_train_gives_one_encoder_per_command_and_stops_between_steps(tmp_path, monkeypatch, sigint_raises):
    import os
    import signal

    from stylelift import encoder_training

    save_generator(tiny_generator(), tmp_path / "net.pt")
    common = ["--network", str(tmp_path / "net.pt"), "--batch-size", "2", "--input-resolution", "32", "--checkpoint-every", "100", "--device", "cpu"]
    args = ["encoder", "train", "--steps", "4", *common]
    for name in ("a.pt", "b.pt"):
        torch.manual_seed(len(name) + hash(name) % 1000)  # the caller's random state does not matter
        assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / name)]).exit_code == 0
    a, _ = load_encoder(tmp_path / "a.pt")
    b, _ = load_encoder(tmp_path / "b.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(v.dtype != torch.float16 for v in torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"].values())  # exact weights, once
    calls = []
    real = encoder_training.sample_batch

    sent = signal.SIGINT

    def interrupted(*a, **k):  # Ctrl-C during the second step
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), sent)
        return real(*a, **k)

    monkeypatch.setattr(encoder_training, "sample_batch", interrupted)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c.pt")])
    assert r.exit_code == 130 and "c.pt holds step 2 of 4; continue with --resume" in " ".join(r.output.split()) and len(calls) == 2, r.output
    sent, calls[:] = signal.SIGHUP, []
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:  # a closed terminal, a dropped ssh: the run so far was lost without a checkpoint
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d.pt")])
    finally:
        signal.signal(signal.SIGHUP, before)
    assert r.exit_code == 129 and "d.pt holds step 2 of 4" in " ".join(r.output.split()) and load_encoder(tmp_path / "d.pt")[1]["step"] == 2, r.output
    monkeypatch.setattr(encoder_training, "sample_batch", real)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c.pt"), "--resume"])
    assert r.exit_code == 0, r.output
    c, state = load_encoder(tmp_path / "c.pt")
    assert state["step"] == 4 and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))  # stopped and resumed: the same run
    before = (tmp_path / "c.pt").read_bytes()
    r = CliRunner().invoke(app, ["encoder", "train", "--steps", "3", *common, "--out", str(tmp_path / "c.pt"), "--resume", "--image-loss", "mse=1.0"])  # mse's own weight
    assert r.exit_code == 0 and "is at step 4 already; nothing to train" in " ".join(r.output.split()) and (tmp_path / "c.pt").read_bytes() == before, r.output
    r = CliRunner().invoke(app, ["encoder", "train", "--steps", "6", *common, "--out", str(tmp_path / "c.pt"), "--resume", "--image-loss", "none"])
    assert r.exit_code == 1 and "other settings (--image-loss mse)" in " ".join(r.output.split()), r.output


def test_training_that_diverges_stops_before_its_checkpoint_and_a_bad_optimizer_state_is_refused(tmp_path):
    G = tiny_generator()
    path = tmp_path / "enc.pt"
    opts = EncoderTrainOptions(steps=2, batch_size=2, render_resolution=16, checkpoint_every=1)
    train_encoder(G, new_encoder(G, input_resolution=32), opts, out=path)
    before = path.read_bytes()
    enc, state = load_encoder(path, G=G)
    with torch.no_grad():
        next(enc.head.parameters()).fill_(float("nan"))
    with pytest.raises(InputError, match="training diverged at step 3 .*enc.pt keeps its checkpoint of step 2"):
        train_encoder(G, enc, EncoderTrainOptions(steps=4, batch_size=2, render_resolution=16, checkpoint_every=1), out=path, state=state)
    assert path.read_bytes() == before
    for key, value in (("exp_avg", torch.zeros(3)), ("exp_avg_sq", None), ("step", torch.tensor(float("nan")))):
        enc, state = load_encoder(path, G=G)
        moments = state["optimizer"]["state"][0]
        moments[key] = -moments[key].abs() - 1 if value is None else value
        with pytest.raises(CheckpointError, match=f"cannot be resumed .*its {key}"):
            train_encoder(G, enc, EncoderTrainOptions(steps=4, batch_size=2, render_resolution=16), state=state)
    enc, state = load_encoder(path, G=G)
    G.requires_grad_(True)
    with pytest.raises(CheckpointError, match="cannot be resumed \\(OverflowError"):  # (it escaped as a traceback)
        train_encoder(G, enc, EncoderTrainOptions(steps=4, batch_size=2, render_resolution=16), state={**state, "step": float("inf")})
    assert all(p.requires_grad for p in G.parameters()) and not enc.training  # a failed resume leaves the network as it was


def test_encoder_run_and_project_init_redo_a_photo_when_the_encoder_file_changed(tmp_path):
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / "p.png")
    net = str(tmp_path / "net.pt")
    run = ["encoder", "run", str(tmp_path / "p.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", net, "--no-align", "--outdir", str(tmp_path / "o")]
    project = ["project", str(tmp_path / "p.png"), "--network", net, "--init", str(tmp_path / "enc.pt"), "--steps", "1", "--no-align", "--loss", "mse", "--outdir", str(tmp_path / "p"), "--no-video"]
    for args in (run, project):
        assert CliRunner().invoke(app, args).exit_code == 0
        assert "already done" in CliRunner().invoke(app, args).output
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32, seed=5), training={"step": 1})  # retrained under its name
    r = CliRunner().invoke(app, run)
    assert r.exit_code == 1 and "p.npz exists; pass --overwrite" in " ".join(r.output.split()), r.output
    r = CliRunner().invoke(app, project)
    assert r.exit_code == 1 and "done earlier with another content of that --init file" in " ".join(r.output.split()), r.output
    r = CliRunner().invoke(app, ["info", str(tmp_path / "enc.pt")])
    assert r.exit_code == 1 and "enc.pt is a stylelift encoder, not a network" in " ".join(r.output.split()), r.output


def test_an_interrupt_that_a_file_writer_turns_into_its_own_error_still_stops_as_an_interrupt():
    import typer

    from stylelift.cli import user_errors

    @user_errors
    def writes():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None

    with pytest.raises(typer.Exit) as stopped:
        writes()
    assert stopped.value.exit_code == 130

    @user_errors
    def terminated():
        try:
            raise SystemExit(143)
        except SystemExit:
            raise OSError(5, "Input/output error")

    with pytest.raises(SystemExit) as stopped:
        terminated()
    assert stopped.value.code == 143


def test_a_photo_named_like_an_output_with_its_own_latent_file_is_still_a_photo(tmp_path):
    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    ph = tmp_path / "ph"
    ph.mkdir()
    for name in ("a.png", "a_target.png"):
        Image.new("RGB", (40, 40), (120, 80, len(name))).save(ph / name)
    run = ["encoder", "run", str(ph), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--no-align", "--outdir", str(ph)]
    assert CliRunner().invoke(app, run).exit_code == 0
    r = CliRunner().invoke(app, run)  # encoder run writes no _target: a_target.png is a photo, done before
    assert r.exit_code == 0 and "a_target.png: already done" in r.output and "left out 2 images" in " ".join(r.output.split()), r.output
    glob = ["encoder", "run", str(ph / "*.png"), *run[3:]]
    r = CliRunner().invoke(app, glob)  # a glob leaves out the outputs as a folder does
    assert r.exit_code == 0 and "left out 2 images" in " ".join(r.output.split()) and "_enc.png:" not in r.output, r.output


def test_a_fresh_run_that_diverges_says_nothing_was_written_and_a_second_sigterm_is_sigterm(tmp_path):
    import signal

    from stylelift.cli_encoder import stop_between_steps

    G = tiny_generator()
    enc = new_encoder(G, input_resolution=32)
    with torch.no_grad():
        next(enc.head.parameters()).fill_(float("nan"))
    with pytest.raises(InputError, match="diverged at step 1 .*fresh.pt was not written"):
        train_encoder(G, enc, EncoderTrainOptions(steps=2, batch_size=2, render_resolution=16), out=tmp_path / "fresh.pt")
    (tmp_path / "old.pt").write_bytes(b"an earlier run's")
    with pytest.raises(InputError, match="old.pt is left as it was"):
        train_encoder(G, enc, EncoderTrainOptions(steps=2, batch_size=2, render_resolution=16), out=tmp_path / "old.pt")
    stop = stop_between_steps()
    stop._asked(signal.SIGTERM, None)
    assert stop() and stop.exit_code == 143
    with pytest.raises(SystemExit) as again:
        stop._asked(signal.SIGTERM, None)
    assert again.value.code == 143


def test_encoder_run_takes_a_face_index_and_says_which_face(tmp_path):
    from pathlib import Path

    from PIL import Image

    G = tiny_generator()
    save_generator(G, tmp_path / "net.pt")
    save_encoder(tmp_path / "enc.pt", new_encoder(G, input_resolution=32))
    photo = Image.open(Path(__file__).parents[1] / "examples" / "astronaut.png").convert("RGB")
    head = photo.crop((100, 0, 350, 250))
    two = Image.new("RGB", (600, 300))
    two.paste(head.resize((180, 180)), (360, 60))
    two.paste(head, (0, 0))
    two.save(tmp_path / "two.png")
    run = ["encoder", "run", str(tmp_path / "two.png"), "--encoder", str(tmp_path / "enc.pt"), "--network", str(tmp_path / "net.pt"), "--outdir", str(tmp_path / "o")]
    r = CliRunner().invoke(app, [*run, "--face-index", "1"])
    assert r.exit_code == 0 and "two.png (face 1 of the 2 found):" in r.output, r.output
    assert load_latents(tmp_path / "o" / "two.npz").meta["alignment"]["face_index"] == 1
    assert "already done" in CliRunner().invoke(app, [*run, "--face-index", "1"]).output
    r = CliRunner().invoke(app, run)  # the other face: not done, and not replaced unasked
    assert r.exit_code == 1 and "two.npz exists; pass --overwrite" in " ".join(r.output.split()), r.output
    r = CliRunner().invoke(app, [*run, "--face-index", "1", "--no-align"])
    assert r.exit_code == 2 and "it needs --align" in " ".join(r.output.replace("│", " ").split()), r.output


def test_training_s_signal_handling_works_where_there_is_no_sighup(monkeypatch, sigint_raises):
    import signal

    from stylelift.cli_encoder import stop_between_steps
    from stylelift.fileio import signals_deferred, stopping_signals

    monkeypatch.delattr(signal, "SIGHUP")  # Windows: the list of signals to stop on raised AttributeError
    assert signal.SIGINT in stopping_signals() and len(stopping_signals()) == 2
    with stop_between_steps() as stop, signals_deferred():
        assert not stop()
