"""Fault injection for the video layer: real broken files made in tmp_path must read or raise a MediaError naming the file."""

import av
import numpy as np
import pytest
import torch

import snps3.data.video as V
from snps3.data.video import MediaError, load_clip, media_info, read_frames, write_video

RNG = np.random.default_rng(0)


def frames(n=16, h=32, w=40):
    "Random RGB frames [T,H,W,3]."
    return RNG.integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def faststart_mp4(path, fr, fps=8):
    "An mp4 whose index (moov) comes first, like web downloads: a cut file keeps its first frames."
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = fr.shape[1:3]
        s.pix_fmt, s.codec_context.gop_size = "yuv420p", 4
        for f in fr: c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def assert_names_file(excinfo, path):
    "The MediaError message starts with the file path and says what to do."
    msg = str(excinfo.value)
    assert msg.startswith(str(path)), msg
    assert ";" in msg and len(msg.split(";", 1)[1].strip()) > 10, msg


@pytest.fixture
def good(tmp_path):
    return write_video(tmp_path / "good.mp4", frames())


def test_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(MediaError, match="file not found") as e: read_frames(p, [0])
    assert_names_file(e, p)
    with pytest.raises(MediaError): load_clip(p, 4, 1, 16, False, np.random.default_rng(0))


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.mp4"; p.write_bytes(b"")
    with pytest.raises(MediaError, match="zero-byte") as e: read_frames(p, [0])
    assert_names_file(e, p)


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"; p.write_text("this is not a video\n" * 100)
    for call in (lambda: read_frames(p, [0]), lambda: media_info(p), lambda: load_clip(p, 2, 1, 16, True, np.random.default_rng(0))):
        with pytest.raises(MediaError, match="not a readable video") as e: call()
        assert_names_file(e, p)


def test_directory_named_mp4(tmp_path):
    p = tmp_path / "dir.mp4"; p.mkdir()
    with pytest.raises(MediaError, match="not a regular file"): read_frames(p, [0])


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_mp4_index_at_end(tmp_path, good, keep):
    "The default mp4 layout keeps the index at the end: a cut file has no index and cannot be read at all."
    data = good.read_bytes()
    p = tmp_path / "cut.mp4"; p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaError) as e: read_frames(p, [0, 5])
    assert_names_file(e, p)


def test_truncated_mp4_index_first(tmp_path):
    "A cut faststart file keeps its first frames: reading works, frames past the cut repeat the last good one."
    fr = frames(32)
    full = faststart_mp4(tmp_path / "full.mp4", fr)
    data = full.read_bytes()
    p = tmp_path / "cut.mp4"; p.write_bytes(data[: len(data) * 2 // 3])
    assert media_info(p).num_frames == 32                      # the index still promises 32 frames
    out = read_frames(p, [0, 3, 31])
    assert out.shape == (3, 32, 40, 3)
    ref = read_frames(full, [0, 3])
    assert np.abs(out[:2].astype(int) - ref.astype(int)).mean() < 1  # the frames before the cut are the real ones
    x = load_clip(p, 4, 2, 16, True, np.random.default_rng(0))
    assert x.shape == (4, 2, 3, 16, 16) and torch.isfinite(x).all()


def test_truncated_mp4_no_frames_left(tmp_path):
    "A faststart file cut right after its header has an index but no decodable frame: MediaError."
    full = faststart_mp4(tmp_path / "full.mp4", frames(32))
    data = full.read_bytes()
    moov_end = data.index(b"mdat") + 4
    p = tmp_path / "header_only.mp4"; p.write_bytes(data[: moov_end + 16])
    with pytest.raises(MediaError) as e: read_frames(p, [0, 10])
    assert_names_file(e, p)


def test_grayscale_video(tmp_path):
    g = RNG.integers(0, 255, (8, 24, 40), dtype=np.uint8)
    p = write_video(tmp_path / "gray.mp4", g, codec="ffv1", pix_fmt="gray")
    for backend in ("auto", "av"):
        out = read_frames(p, [1, 6], backend=backend)
        assert out.shape == (2, 24, 40, 3)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert np.abs(out[0, ..., 0].astype(int) - g[1]).max() <= 2
    assert load_clip(p, 2, 1, 16, False, np.random.default_rng(0)).shape == (2, 1, 3, 16, 16)


@pytest.mark.parametrize("codec,pix_fmt", [("ffv1", "yuv444p"), ("libx264", "yuv444p"), ("mpeg4", "yuv420p")])
def test_odd_frame_sizes(tmp_path, codec, pix_fmt):
    p = write_video(tmp_path / f"odd_{codec}.mp4", frames(8, 17, 33), codec=codec, pix_fmt=pix_fmt)
    assert media_info(p).height == 17 and media_info(p).width == 33
    for backend in ("auto", "av"):
        assert read_frames(p, [0, 7], backend=backend).shape == (2, 17, 33, 3)
        assert read_frames(p, [0, 7], size=9, backend=backend).shape == (2, 9, 17, 3)
    x = load_clip(p, 3, 1, 15, True, np.random.default_rng(0))
    assert x.shape == (3, 1, 3, 15, 15)


def test_odd_sizes_rejected_by_yuv420_x264(tmp_path):
    with pytest.raises(ValueError, match="even frame sizes"): write_video(tmp_path / "x.mp4", frames(2, 17, 33))


def test_images(tmp_path):
    from PIL import Image
    Image.fromarray(RNG.integers(0, 255, (17, 33), dtype=np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(RNG.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "c.jpg", quality=90)
    assert read_frames(tmp_path / "g.png", [0, 0, 0]).shape == (3, 17, 33, 3)
    assert load_clip(tmp_path / "c.jpg", 4, 2, 16, True, np.random.default_rng(0)).shape == (1, 1, 3, 16, 16)
    data = (tmp_path / "c.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as e: read_frames(tmp_path / "cut.jpg", [0])
    assert_names_file(e, tmp_path / "cut.jpg")


def smooth_frames(n=16, h=32, w=40):
    "Low-frequency random frames (natural-image-like) [T,H,W,3]."
    small = torch.from_numpy(RNG.integers(0, 255, (n, 3, 4, 5)).astype(np.float32))
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return big.clamp(0, 255).byte().permute(0, 2, 3, 1).numpy().copy()


@pytest.mark.parametrize("size,tol", [(None, 0.5), (24, 4.0)])
def test_fallback_matches_decord(tmp_path, size, tol):
    "The PyAV path returns the frames decord returns: same shape; same pixels at native size, close ones when resized at decode."
    p = write_video(tmp_path / "smooth.mp4", smooth_frames())
    idx = [15, 0, 7, 7, 3]
    a, b = read_frames(p, idx, size=size, backend="decord"), read_frames(p, idx, size=size, backend="av")
    assert a.shape == b.shape == (5, *{None: (32, 40), 24: (24, 30)}[size], 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < tol  # resized at decode: both bicubic, chroma scaled differently


def test_without_decord(good, monkeypatch):
    "decord not installed: everything goes through PyAV."
    monkeypatch.setattr(V, "_import_decord", lambda: None)
    assert read_frames(good, [0, 5]).shape == (2, 32, 40, 3)
    assert load_clip(good, 4, 1, 16, True, np.random.default_rng(0)).shape == (4, 1, 3, 16, 16)
    with pytest.raises(MediaError, match="decord is not installed"): read_frames(good, [0], backend="decord")


def test_decord_raising_falls_back(good, monkeypatch):
    "Any decord exception (DECORDError, RuntimeError...) hands over to PyAV."
    import decord

    class Broken:
        def __init__(self, *a, **k): raise RuntimeError("boom")
    monkeypatch.setattr(decord, "VideoReader", Broken)
    ref = read_frames(good, [2, 9], backend="av")
    assert np.array_equal(read_frames(good, [2, 9]), ref)
    with pytest.raises(MediaError, match="decord failed"): read_frames(good, [2], backend="decord")


def test_decord_malformed_widths(tmp_path):
    "decord#336: some widths come back with 4-6 channels from decord; the reader notices and uses PyAV."
    for w in (16, 32, 48, 96):
        p = write_video(tmp_path / f"w{w}.mp4", frames(8, 16, w))
        assert read_frames(p, [0, 7]).shape == (2, 16, w, 3)


def test_media_error_pickles():
    import pickle
    e = pickle.loads(pickle.dumps(MediaError("/x/a.mp4", "zero-byte file")))
    assert e.path == "/x/a.mp4" and str(e).startswith("/x/a.mp4: zero-byte file")


class _Clips(torch.utils.data.Dataset):
    def __init__(self, paths): self.paths = paths
    def __len__(self): return len(self.paths)
    def __getitem__(self, i): return load_clip(self.paths[i], 2, 1, 16, True, np.random.default_rng(i))


def test_dataloader_workers(tmp_path, good):
    "Readers are opened per call, so forked workers decode independently; a broken file names itself in the worker error."
    paths = [good] * 4
    dl = torch.utils.data.DataLoader(_Clips(paths), batch_size=2, num_workers=2)
    assert [b.shape for b in dl] == [(2, 2, 1, 3, 16, 16)] * 2
    bad = tmp_path / "bad.mp4"; bad.write_text("nope")
    with pytest.raises(Exception, match="bad.mp4"):
        list(torch.utils.data.DataLoader(_Clips([good, bad]), batch_size=1, num_workers=1))
