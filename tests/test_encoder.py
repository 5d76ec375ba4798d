import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_generator
from stylelift import load_latents, network_id, save_generator
from stylelift.cli import app
from stylelift.encoder_training import EncoderTrainOptions, held_out_error, train_encoder
from stylelift.errors import CheckpointError, InputError
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
    r = CliRunner().invoke(app, ["project", str(tmp_path / "p.png"), "--network", str(tmp_path / "net.pt"), "--init", str(tmp_path / "enc.pt"), "--steps", "2", "--no-align", "--loss", "mse", "--outdir", str(tmp_path / "p"), "--no-video"])
    assert r.exit_code == 0, r.output
    save_generator(tiny_generator(seed=3), tmp_path / "other.pt")
    r = CliRunner().invoke(app, ["project", str(tmp_path / "p.png"), "--network", str(tmp_path / "other.pt"), "--init", str(tmp_path / "enc.pt"), "--steps", "2", "--no-align", "--outdir", str(tmp_path / "q")])
    assert r.exit_code == 1 and "trained for network" in r.output and "Traceback" not in r.output
