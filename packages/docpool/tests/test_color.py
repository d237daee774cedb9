"""Colour modes: which pages MuPDF's test device calls colour, and gray pages written as
one-channel images that keep the RGB render's luminance."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import simplejpeg
from PIL import Image
from typer.testing import CliRunner, Result

from docpool import IngestReport, Pool, render_pages, write_pages
from docpool.cli import app
from docpool.render import encode_image, jpeg_bytes, page_is_color, pixmap_pixels, rasterise
from docpool.testing import CorpusTruth

RED = (1.0, 0.0, 0.0)


def _image_stream(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _shading_page(doc: pymupdf.Document, c0: list[float], c1: list[float]) -> None:
    """A page filled by an axial shading in DeviceRGB from ``c0`` to ``c1``."""
    page = doc.new_page(width=200, height=100)
    shading = doc.get_new_xref()
    doc.update_object(
        shading,
        "<< /ShadingType 2 /ColorSpace /DeviceRGB /Coords [0 0 200 0] /Extend [true true]"
        f" /Function << /FunctionType 2 /Domain [0 1] /C0 {c0} /C1 {c1} /N 1 >> >>".replace(
            ",", ""
        ),
    )
    doc.xref_set_key(page.xref, "Resources", f"<< /Shading << /Sh0 {shading} 0 R >> >>")
    contents = doc.get_new_xref()
    doc.update_object(contents, "<< >>")
    doc.update_stream(contents, b"q /Sh0 sh Q")
    doc.xref_set_key(page.xref, "Contents", f"{contents} 0 R")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One page per case, saved and read back from a file as documents are in use."""
    doc = pymupdf.open()

    def text(color: tuple[float, ...]) -> None:
        page = doc.new_page(width=200, height=100)
        page.insert_text((20, 50), "Some text on a page", fontsize=14, color=color)

    text((0.0, 0.0, 0.0))  # 1: black text
    text((0.35, 0.35, 0.35))  # 2: gray text, given in RGB
    text(RED)  # 3: red text
    text((0.5, 0.5, 0.5 + 3 / 255))  # 4: a tint below the threshold: gray
    text((0.5, 0.5, 0.5 + 12 / 255))  # 5: a faint tint above it: colour
    page = doc.new_page(width=200, height=100)  # 6: black text and a blue vector figure
    page.insert_text((20, 30), "Figure 1", fontsize=12)
    page.draw_rect(pymupdf.Rect(20, 40, 80, 90), color=(0, 0, 0), fill=(0.1, 0.3, 0.9))
    page = doc.new_page(width=200, height=100)  # 7: an RGB image (ICC-based) in colour
    page.insert_image(pymupdf.Rect(20, 20, 100, 80), stream=_image_stream((200, 120, 40)))
    page = doc.new_page(width=200, height=100)  # 8: an RGB image of gray pixels: colour too
    page.insert_image(pymupdf.Rect(20, 20, 100, 80), stream=_image_stream((90, 90, 90)))
    _shading_page(doc, [1, 0, 0], [0, 0, 1])  # 9: a red-to-blue shading
    _shading_page(doc, [0, 0, 0], [1, 1, 1])  # 10: a black-to-white shading in DeviceRGB
    path = tmp_path_factory.mktemp("color") / "samples.pdf"
    doc.save(path)
    return path


EXPECTED = {1: False, 2: False, 3: True, 4: False, 5: True, 6: True, 7: True, 8: True}
EXPECTED |= {9: True, 10: False}


def test_test_device_tells_colour_pages_from_gray_ones(samples: Path) -> None:
    with pymupdf.open(samples) as doc:
        found = {number: page_is_color(doc[number - 1]) for number in EXPECTED}
        assert found == EXPECTED
        # The threshold is a tolerance: exactness calls the faint tint of page 4 colour.
        assert page_is_color(doc[3], threshold=0.0)
        with pytest.raises(ValueError, match="threshold"):
            page_is_color(doc[0], threshold=1.5)


def test_auto_rasterises_gray_pages_in_one_channel(samples: Path) -> None:
    with pymupdf.open(samples) as doc:
        for number, color in EXPECTED.items():
            pixmap = rasterise(doc[number - 1], dpi=72, color="auto")
            assert pixmap.n == (3 if color else 1) and not pixmap.alpha, number
        assert rasterise(doc[0], 72, "rgb").n == 3
        assert rasterise(doc[2], 72, "gray").n == 1
        with pytest.raises(ValueError, match="colour mode 'grey'"):
            rasterise(doc[0], 72, "grey")  # type: ignore[arg-type]


def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R BT.601, what JPEG and MuPDF's RGB-to-gray conversion use.
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_gray_page_becomes_a_one_channel_jpeg_with_the_rgb_luminance(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    doc_truth = truth.documents[0]
    with_pictures = {picture.page for picture in doc_truth.pictures}
    number = next(n for n in range(2, doc_truth.num_pages + 1) if n not in with_pictures)
    pdf = folder / doc_truth.file
    [written] = write_pages(pdf, [number], tmp_path, dpi=144, quality=90)
    _, _, colorspace, subsampling = simplejpeg.decode_jpeg_header(written.read_bytes())
    assert (colorspace, subsampling) == ("Gray", "Gray")
    [rgb] = render_pages(pdf, [number], dpi=144)
    assert rgb.mode == "RGB"
    with Image.open(written) as jpeg:
        assert jpeg.mode == "L" and jpeg.size == rgb.size
        decoded = np.asarray(jpeg, dtype=np.float64)
    error = np.abs(decoded - _luminance(np.asarray(rgb)))
    # q90 keeps the page close everywhere; text edges carry the largest errors.
    assert error.mean() < 1.5 and np.percentile(error, 99) < 25
    # The gray render itself is the RGB render's luminance, to rounding.
    [gray] = render_pages(pdf, [number], dpi=144, color="auto")
    assert gray.mode == "L"
    assert np.abs(np.asarray(gray) - _luminance(np.asarray(rgb))).max() <= 1.0


def test_generated_corpus_pages_are_gray_except_those_with_figures(
    corpus: tuple[Path, CorpusTruth],
) -> None:
    folder, truth = corpus
    checked = 0
    for doc_truth in truth.documents[:3]:
        with_pictures = {picture.page for picture in doc_truth.pictures}
        assert with_pictures, doc_truth.file
        with pymupdf.open(folder / doc_truth.file) as doc:
            found = {page.number + 1 for page in doc if page_is_color(page)}
            # rasterise tests the page's display list: the same answer.
            rendered = {page.number + 1 for page in doc if rasterise(page, 9, "auto").n == 3}
        assert rendered == found, doc_truth.file
        # Only the figures (raster bar charts in colour) use colour.
        assert found == with_pictures, doc_truth.file
        checked += doc_truth.num_pages
    assert checked > 60


def test_write_pages_colour_modes(samples: Path, tmp_path: Path) -> None:
    def components(mode: str) -> list[str]:
        written = write_pages(samples, [1, 3, 8], tmp_path / mode, dpi=72, color=mode)  # type: ignore[arg-type]
        return [simplejpeg.decode_jpeg_header(p.read_bytes())[2] for p in written]

    assert components("auto") == ["Gray", "YCbCr", "YCbCr"]
    assert components("rgb") == ["YCbCr", "YCbCr", "YCbCr"]
    assert components("gray") == ["Gray", "Gray", "Gray"]
    png = write_pages(samples, [1, 3], tmp_path / "png", dpi=72, fmt="png", encoders=0)
    assert [Image.open(p).mode for p in png] == ["L", "RGB"]
    with pytest.raises(ValueError, match="colour mode"):
        write_pages(samples, [1], tmp_path / "bad", dpi=72, color="cmyk")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", ["2d", "3d"])
def test_gray_pixels_encode_as_one_channel(shape: str) -> None:
    rng = np.random.default_rng(0)
    # Smooth content, so the lossy formats stay close to it.
    gray = np.clip(np.add.outer(np.arange(48) * 4, np.arange(64) * 2), 0, 255).astype(np.uint8)
    gray[10:20, 10:40] = rng.integers(100, 110, (10, 30), dtype=np.uint8)
    pixels = gray if shape == "2d" else gray[:, :, np.newaxis]

    assert simplejpeg.decode_jpeg_header(jpeg_bytes(pixels))[2:] == ("Gray", "Gray")
    with Image.open(io.BytesIO(encode_image(pixels, "png"))) as png:
        assert png.mode == "L"
        assert np.array_equal(np.asarray(png), gray)  # lossless
    for fmt in ("jpeg", "webp"):
        with Image.open(io.BytesIO(encode_image(pixels, fmt, quality=90))) as image:
            decoded = np.asarray(image.convert("RGB"), dtype=np.float64)
        # WebP stores gray as RGB: every channel carries the gray value.
        assert np.abs(decoded - gray[:, :, np.newaxis]).mean() < 2.0, fmt


def test_rgb_encoding_is_unchanged_and_bad_shapes_are_refused() -> None:
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    header = simplejpeg.decode_jpeg_header(jpeg_bytes(rgb))
    assert header == (16, 24, "YCbCr", "420")
    assert encode_image(rgb, "jpeg") == jpeg_bytes(rgb)
    with pytest.raises(ValueError, match="neither gray"):
        jpeg_bytes(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_image(np.zeros((4, 4), dtype=np.float32), "png")


def test_pixmap_view_of_a_gray_pixmap(samples: Path) -> None:
    with pymupdf.open(samples) as doc:
        pixmap = rasterise(doc[0], dpi=50, color="gray")
        pixels = pixmap_pixels(pixmap)
        assert pixels.shape == (pixmap.height, pixmap.width, 1)
        assert np.array_equal(pixels[:, :, 0].ravel(), np.frombuffer(pixmap.samples, np.uint8))


def test_cli_color_option(ingested: tuple[Pool, IngestReport], tmp_path: Path) -> None:
    pool, _ = ingested
    doc_id = pool.doc_ids()[0]
    runner = CliRunner()

    def render(*options: str) -> Result:
        args = ["render", str(pool.root), doc_id[:12], "--pages", "1", "--dpi", "50"]
        return runner.invoke(app, [*args, *options])

    for color, expected in (("auto", "Gray"), ("gray", "Gray"), ("rgb", "YCbCr")):
        out = tmp_path / color
        result = render("--color", color, "--out", str(out))
        assert result.exit_code == 0, result.output
        [written] = out.glob("*.jpg")
        assert simplejpeg.decode_jpeg_header(written.read_bytes())[2] == expected
    bad = render("--color", "cmyk", "--out", str(tmp_path / "bad"))
    assert bad.exit_code != 0 and "--color" in bad.output
    help_text = runner.invoke(app, ["render", "--help"]).output
    assert "--color" in help_text and "gray" in help_text
