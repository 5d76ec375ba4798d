import io
import zipfile

import numpy as np
import pytest

from stylelift import InputError, latents, LatentFile, load_latents, save_latents


def test_round_trip_with_noise_and_meta(tmp_path):
    lf = LatentFile(w=np.random.randn(2, 6, 16).astype(np.float32), noises={0: np.ones([4, 4]), 1: np.zeros([8, 8])}, meta={"seed": 3})
    save_latents(tmp_path / "a.npz", lf)
    back = load_latents(tmp_path / "a.npz")
    assert np.array_equal(back.w, lf.w) and back.meta == {"seed": 3} and sorted(back.noises) == [0, 1]
    for w in (np.zeros(16), np.full([1, 6, 16], np.nan)):  # what load_latents would refuse is not written
        with pytest.raises(InputError, match="w must be finite values"):
            save_latents(tmp_path / "b.npz", LatentFile(w=w))
    w = np.zeros([1, 6, 16], np.float32)
    for bad, why in ((LatentFile(w=w, noises={0: np.full([4, 4], np.nan)}), "noise map 0 holds NaN"),
                         (LatentFile(w=w, noises={0: np.zeros([4, 5])}), r"is \[4, 5\], not one square noise map"),
                         (LatentFile(w=w.astype(np.complex64)), "w must hold real numbers"), (LatentFile(w=w, noises={"x": np.ones([4, 4])}), "noise maps"), (LatentFile(w=w, meta=None), "meta must be a dict")):
        with pytest.raises(InputError, match=why):
            save_latents(tmp_path / "b.npz", bad)
    assert not (tmp_path / "b.npz").exists()


def test_tensors_are_saved_as_they_come_from_the_projector(tmp_path):
    import torch

    w = torch.randn(1, 6, 16, requires_grad=True)  # numpy refuses these (as it refuses GPU tensors) without detach().cpu()
    save_latents(tmp_path / "t.npz", LatentFile(w=w * 1, noises={0: torch.ones(4, 4, requires_grad=True)}))
    back = load_latents(tmp_path / "t.npz")
    assert np.array_equal(back.w, w.detach().numpy()) and np.array_equal(back.noises[0], np.ones([1, 4, 4]))


def test_noise_maps_are_stored_as_one_map_whatever_shape_they_come_in(tmp_path):
    w = np.zeros([1, 6, 16], np.float32)
    maps = {0: np.full([4, 4], 1.0), 1: np.full([1, 8, 8], 2.0), 2: np.full([1, 1, 8, 8], 3.0)}  # project() returns [1, 1, r, r]
    save_latents(tmp_path / "n.npz", LatentFile(w=w, noises=maps))
    with np.load(tmp_path / "n.npz") as data:
        assert {k: data[f"noise_{k}"].shape for k in maps} == {0: (1, 4, 4), 1: (1, 8, 8), 2: (1, 8, 8)}
        assert [float(data[f"noise_{k}"].mean()) for k in maps] == [1.0, 2.0, 3.0]


def test_nvidia_style_file_with_only_w_loads(tmp_path):
    np.savez(tmp_path / "projected_w.npz", w=np.zeros([1, 18, 512], np.float32))
    assert load_latents(tmp_path / "projected_w.npz").w.shape == (1, 18, 512)


class _Touch:
    """Unpickling this creates the file it names: evidence that a pickle was run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    np.savez(tmp_path / "evil.npz", w=np.array([_Touch(marker)], dtype=object))
    with pytest.raises(InputError, match="'w' holds Python objects, not numbers"):
        load_latents(tmp_path / "evil.npz")
    assert not marker.exists()  # refused before anything was unpickled


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros(3)}, "no 'w'"),
        ({"w": np.zeros(3)}, "shape"),
        ({"w": np.full([1, 2, 3], np.nan)}, "NaN"),
        ({"w": np.zeros([1, 2, 3]), "noise_0": np.full([1, 4, 4], np.inf)}, "noise_0"),
        ({"w": np.zeros([1, 2, 3], "timedelta64[s]")}, "'w' holds timedelta64"),  # an integer to numpy, not a number to us
        ({"w": np.zeros([1, 2, 3]), "noise_0": np.zeros([1, 4, 4], np.complex64)}, "'noise_0' holds complex64"),
        ({"w": np.zeros([1, 2, 3]), "noise_0": np.zeros([2, 4, 4])}, "not one square noise map"),
    ],
)
def test_bad_contents(tmp_path, arrays, match):
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(InputError, match=match):
        load_latents(tmp_path / "b.npz")


def test_meta_that_is_not_a_json_object_is_refused(tmp_path):
    for meta in ("{not json", "[1, 2]"):  # it would name the network the codes belong to
        np.savez(tmp_path / "m.npz", w=np.zeros([1, 2, 3], np.float32), meta=np.array(meta))
        with pytest.raises(InputError, match="'meta' is not the JSON object"):
            load_latents(tmp_path / "m.npz")


def test_an_array_claiming_more_data_than_it_holds_is_refused_before_allocating(tmp_path, monkeypatch):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 18, 512)})  # 3.7 GB
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.writestr("w.npy", f.getvalue() + np.zeros(6, np.float32).tobytes())
    with pytest.raises(InputError, match="claims 3,686,400,000 bytes of data but holds"):
        load_latents(tmp_path / "lie.npz")
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<U1", "fortran_order": False, "shape": (10**11,)})
    with zipfile.ZipFile(tmp_path / "hugemeta.npz", "w") as z:
        z.writestr("w.npy", _npy(np.zeros([1, 2, 3], np.float32)))
        z.writestr("meta.npy", f.getvalue() + b"{}")
    with pytest.raises(InputError, match="its 'meta' is 100,000,000,000 characters, where a latent file's record is a few thousand"):
        load_latents(tmp_path / "hugemeta.npz")

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 18, 512)})
    with zipfile.ZipFile(tmp_path / "twins.npz", "w") as z:  # np.load reads the entry named `w`; the check looked at `w.npy`
        z.writestr("w.npy", _npy(np.zeros([1, 2, 3], np.float32)))
        z.writestr("w", f.getvalue() + np.zeros(6, np.float32).tobytes())
    with pytest.raises(InputError, match=r"twins.npz: two arrays are named 'w' \('w' and 'w.npy'\); keep one"):
        load_latents(tmp_path / "twins.npz")

    with zipfile.ZipFile(tmp_path / "far.npz", "w") as z:
        z.writestr("w.npy", _npy(np.zeros([1, 2, 3], np.float32)))
        z.writestr("noise_" + "9" * 5000 + ".npy", _npy(np.zeros([1, 4, 4], np.float32)))
    with pytest.raises(InputError, match=r"far.npz: 'noise_99999999999999\.\.\.' numbers a noise map beyond any network's"):  # was int()'s "Exceeds the limit (4300 digits)"
        load_latents(tmp_path / "far.npz")

    header = "{'descr': '<f4', 'fortran_order': False, 'shape': print(1), }"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    with zipfile.ZipFile(tmp_path / "code.npz", "w") as z:
        z.writestr("w.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64))
    with pytest.raises(InputError, match=r"^code.npz is not a readable .npz latent file \(a damaged array header\)$"):  # was ast's "<ast.Call object at 0x...>"
        load_latents(tmp_path / "code.npz")

    # deflated: the entry's stated size is a claim too, bounded by deflate's largest ratio (zeros
    # reach 1027x with zlib); a forged size is beyond what this test can write, so the bound is lowered
    with zipfile.ZipFile(tmp_path / "zeros.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", _npy(np.zeros([20, 18, 512], np.float32)))
    assert load_latents(tmp_path / "zeros.npz").w.shape == (20, 18, 512)
    monkeypatch.setattr(latents, "DEFLATE_MAX_RATIO", 100)
    with pytest.raises(InputError, match="'w' claims"):
        load_latents(tmp_path / "zeros.npz")
    monkeypatch.undo()
    # within deflate's bound, but a small file that inflates to hundreds of MB is no latent file
    monkeypatch.setattr(latents, "INFLATE_LIMIT", (64, 1 << 19))  # 512 kB, not 256 MB: the test stays small
    with pytest.raises(InputError, match=r"'w' inflates from [\d,]+ bytes to 737,280, more than any latent file does"):
        load_latents(tmp_path / "zeros.npz")
    with zipfile.ZipFile(tmp_path / "maps.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:  # each map under the limit, all together over it
        z.writestr("w.npy", _npy(np.ones([1, 18, 512], np.float32)))
        for i in range(4):
            z.writestr(f"noise_{i}.npy", _npy(np.zeros([1, 1, 256, 256], np.float32)))
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda *a: pytest.fail("an array was read before all were checked"))
    with pytest.raises(InputError, match="'noise_1' inflates from"):
        load_latents(tmp_path / "maps.npz")
    monkeypatch.undo()
    monkeypatch.setattr(latents, "INFLATE_LIMIT", (64, 1 << 19))
    with zipfile.ZipFile(tmp_path / "w.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:  # W-space latents (one w repeated): 16x
        z.writestr("w.npy", _npy(np.repeat(np.random.default_rng(0).normal(size=[20, 1, 512]).astype(np.float32), 18, axis=1)))
    assert load_latents(tmp_path / "w.npz").w.shape == (20, 18, 512)


def _npy(array: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


def test_compressed_latent_files_load(tmp_path):
    w = np.random.default_rng(0).normal(size=[3, 4, 8]).astype(np.float32)
    np.savez_compressed(tmp_path / "c.npz", w=w, meta=np.array('{"network_id": "x"}'))
    got = load_latents(tmp_path / "c.npz")
    assert np.array_equal(got.w, w) and got.meta == {"network_id": "x"}
    np.savez(tmp_path / "obj.npz", w=np.array([1, 2, 3] * 10, dtype=object))
    with pytest.raises(InputError, match="holds Python objects"):
        load_latents(tmp_path / "obj.npz")


def test_not_an_npz(tmp_path):
    (tmp_path / "c.npz").write_text("hello")
    with pytest.raises(InputError, match="not a readable"):
        load_latents(tmp_path / "c.npz")
    import torch

    torch.save({"x": torch.ones(2)}, tmp_path / "net.pt")  # a zip too: its 1,000 characters of entry names were the message
    with pytest.raises(InputError, match=r"^net.pt is a torch file, not a latent .npz$"):
        load_latents(tmp_path / "net.pt")
    np.savez(tmp_path / "many.npz", **{f"k{i}": np.zeros(1) for i in range(7)})
    with pytest.raises(InputError, match=r"^many.npz has no 'w' array \(keys: k0, k1, k2, k3, k4, ... \(7 in all\)\)$"):
        load_latents(tmp_path / "many.npz")


def _npz_entry(path, compression, w):
    buffer = io.BytesIO()
    np.save(buffer, w)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("w.npy", buffer.getvalue())
    return bytearray(path.read_bytes())


def _set_in_both_headers(data: bytearray, offset: int, value: bytes) -> bytearray:
    """Patch a field of the one entry's local header and central directory record alike
    (offset in the local header; the central record has the same field 2 bytes later)."""
    data[offset : offset + len(value)] = value
    central = data.index(b"PK\x01\x02")
    data[central + offset + 2 : central + offset + 2 + len(value)] = value
    return data


def test_a_damaged_compressed_or_encrypted_entry_is_one_line(tmp_path):
    # each gave a traceback (zlib.error, LZMAError, RuntimeError, NotImplementedError)
    w = np.ones([1, 23, 512], np.float32)
    deflated = _npz_entry(tmp_path / "d.npz", zipfile.ZIP_DEFLATED, w)
    deflated[40:80] = bytes(40)
    header = _npz_entry(tmp_path / "h.npz", zipfile.ZIP_DEFLATED, w)
    header[100:140] = bytes(40)  # inflates to an array header numpy's parser fails on (tokenize.TokenError)
    lzma = _npz_entry(tmp_path / "l.npz", zipfile.ZIP_LZMA, np.random.default_rng(0).normal(size=[1, 23, 512]).astype(np.float32))
    lzma[200:240] = bytes(40)
    stored = _npz_entry(tmp_path / "s.npz", zipfile.ZIP_STORED, w)
    cases = {
        "deflate.npz": (deflated, "Error -3 while decompressing data"),
        "header.npz": (header, "a damaged array header"),
        "lzma.npz": (lzma, "Corrupt input data"),
        "encrypted.npz": (_set_in_both_headers(bytearray(stored), 6, b"\x01\x00"), "is encrypted, password required"),
        "method99.npz": (_set_in_both_headers(bytearray(stored), 8, b"\x63\x00"), "compression method is not supported"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(InputError, match=rf"^{name} is not a readable .npz latent file \(.*{why}") as e:
            load_latents(tmp_path / name)
        assert "\n" not in str(e.value), name


def test_check_fits():
    for shape in ([1, 14, 512], [1, 18, 256]):  # another num_ws, another w_dim
        with pytest.raises(InputError, match=r"needs \[N, 18, 512\]"):
            LatentFile(w=np.zeros(shape)).check_fits(18, 512)
    LatentFile(w=np.zeros([3, 18, 512])).check_fits(18, 512)


def test_a_single_code_without_its_batch_axis_is_read_as_one_latent(tmp_path):
    w = np.random.default_rng(0).normal(size=[4, 8]).astype(np.float32)
    np.savez(tmp_path / "one.npz", w=w)  # [num_ws, w_dim], as some tools write one code
    assert np.array_equal(load_latents(tmp_path / "one.npz").w, w[None])


def test_stored_noise_maps_must_be_one_map_of_the_layer_size():
    from stylelift.generation import stored_noises

    from conftest import tiny_generator

    G = tiny_generator()
    sizes = [layer.resolution for layer in G.synthesis.noise_layers()]
    good = {k: np.zeros([1, r, r], np.float32) for k, r in enumerate(sizes)}
    assert [tuple(t.shape) for t in stored_noises(G, good, "cpu")] == [(1, 1, r, r) for r in sizes]
    for bad in (np.zeros([2, sizes[0], sizes[0]], np.float32), np.zeros([sizes[0]], np.float32), np.zeros([1, 3, 3], np.float32)):
        with pytest.raises(InputError, match="noise map 0"):
            stored_noises(G, {**good, 0: bad}, "cpu")


def test_a_fifo_is_refused_not_read_forever(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(InputError, match="not a regular file"):
        load_latents(tmp_path / "pipe.npz")


def test_a_long_file_name_gets_a_short_temporary_one(tmp_path):
    name = "x" * 246 + ".npz"  # 250 bytes: allowed, but not with '.tmp-PID' added
    save_latents(tmp_path / name, LatentFile(w=np.zeros([1, 2, 3], np.float32)))
    assert load_latents(tmp_path / name).w.shape == (1, 2, 3) and [p.name for p in tmp_path.iterdir()] == [name]


def test_two_arrays_naming_one_noise_map_are_refused(tmp_path):
    np.savez(tmp_path / "two.npz", w=np.zeros([1, 6, 16], np.float32), noise_0=np.zeros([4, 4], np.float32), noise_00=np.ones([4, 4], np.float32))
    with pytest.raises(InputError, match="two arrays name noise map 0"):
        load_latents(tmp_path / "two.npz")


def test_arrays_are_counted_at_the_size_they_take_once_read_as_float32(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    w = np.zeros(18 * 512 * 10, np.int8)  # int8 w inflated 57x was never counted, and became float32 4x bigger
    picked = rng.choice(w.size, w.size // 8, replace=False)
    w[picked] = rng.integers(-100, 100, picked.size)
    np.savez_compressed(tmp_path / "i8.npz", w=w.reshape(-1, 18, 512))
    with zipfile.ZipFile(tmp_path / "i8.npz") as z:
        info = z.getinfo("w.npy")
    assert 3 < info.file_size / info.compress_size < 8 < 4 * info.file_size / info.compress_size  # under the ratio as int8, over it as float32
    monkeypatch.setattr(latents, "INFLATE_LIMIT", (8, 1000))
    with pytest.raises(InputError, match=r"'w' inflates from [\d,]+ bytes to 368,640"):
        load_latents(tmp_path / "i8.npz")


def test_a_meta_record_is_kept_to_a_million_characters_and_noise_maps_to_what_networks_have(tmp_path):
    w = np.zeros([1, 6, 16], np.float32)
    np.savez_compressed(tmp_path / "bomb.npz", w=w, meta=np.array("[" * 10 + "{}," * 400_000 + "{}" + "]" * 10))  # 1.2 MB of JSON in a few KB
    with pytest.raises(InputError, match=r"bomb.npz: its 'meta' is 1,200,022 characters, where a latent file's record is a few thousand"):
        load_latents(tmp_path / "bomb.npz")
    np.savez(tmp_path / "many.npz", w=w, **{f"noise_{k}": np.zeros([1, 1, 1], np.float32) for k in range(65)})
    with pytest.raises(InputError, match=r"many.npz: 'noise_64' numbers a noise map beyond any network's"):
        load_latents(tmp_path / "many.npz")
    np.savez(tmp_path / "many.npz", w=w, **{f"noise_{'0' * z}{k}": np.zeros([1, 1, 1], np.float32) for k in range(10) for z in range(7)})
    with pytest.raises(InputError, match=r"many.npz holds 70 noise maps, more than any network has"):
        load_latents(tmp_path / "many.npz")
    for bad, why in (({"x": "a" * (1 << 20)}, "meta is 1,048,585 characters as JSON"), ({"noises": {64: np.zeros([4, 4])}}, r"from 0 to 63\), got 64")):  # written, then refused
        with pytest.raises(InputError, match=why):
            save_latents(tmp_path / "s.npz", LatentFile(w=w, **({"meta": bad} if "x" in bad else bad)))
    np.savez(tmp_path / "big.npz", w=w, noise_0=np.full([1, 4, 4], 1e300))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" was printed before the error line
        with pytest.raises(InputError, match="'noise_0' contains NaN or infinite values"):
            load_latents(tmp_path / "big.npz")


def test_a_recorded_network_id_that_is_empty_zero_or_false_is_not_taken_for_none(monkeypatch):
    from stylelift.latents import made_for_another

    assert made_for_another({}, "net-1") is None and made_for_another({"network_id": None}, "net-1") is None
    assert made_for_another({"network_id": "net-1"}, "net-1") is None
    assert [made_for_another({"network_id": v}, "net-1") for v in ("", 0, False, "  ", "net-2")] == ['""', "0", "false", '"  "', "net-2"]  # were passed as "no network"
    lf = LatentFile(w=np.zeros([1, 6, 16], np.float32), meta={"network_id": ""})

    class G:  # what check_made_for reads
        num_ws, w_dim = 6, 16

    monkeypatch.setattr("stylelift.models.checkpoint.network_id", lambda G: "net-1")
    with pytest.raises(InputError, match=r'latent file was made for network "" \(this one is net-1\)'):
        lf.check_made_for(G())
