"""The mask check and composite on real decoded pixels: kept pixels exact, edited ones the
model's."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from airflow_provider_cometapi.api.compositing import Drift, check_output, feathered

MODES = ("RGB", "RGBA", "L", "LA", "P")
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def noise(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    """Random pixels in ``mode`` (a palette image with a transparent colour for ``P``)."""
    rng = random.Random(seed)
    rgba = Image.frombytes(
        "RGBA", size, bytes(rng.randrange(256) for _ in range(4 * size[0] * size[1]))
    )
    if mode == "P":
        image = rgba.convert("RGB").quantize(16)
        image.info["transparency"] = 0
        return image
    return rgba.convert(mode)


def random_mask(size: tuple[int, int], seed: int) -> Image.Image:
    """An RGBA mask whose alpha is 0, 255 or something between, at random."""
    rng = random.Random(seed)
    alpha = bytes(
        rng.choice((0, 0, 255, 255, 255, rng.randrange(1, 255))) for _ in range(size[0] * size[1])
    )
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.putalpha(Image.frombytes("L", size, alpha))
    return mask


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def decoded(data: bytes, mode: str) -> list[tuple[int, ...]]:
    """The pixels of ``data`` in ``mode``, by way of RGBA (how a palette is read)."""
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    return list(image.convert(mode).getdata()) if mode != "RGBA" else list(image.getdata())


def alphas(mask: bytes) -> list[int]:
    return list(Image.open(io.BytesIO(mask)).getchannel("A").getdata())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    source_mode=st.sampled_from(MODES),
    output_mode=st.sampled_from(MODES),
    fmt=st.sampled_from(sorted(FORMATS)),
    seed=st.integers(0, 2**16),
)
def test_composite_keeps_every_kept_pixel_and_takes_every_edited_one_from_the_model(
    width, height, source_mode, output_mode, fmt, seed
):
    size = (width, height)
    source = encoded(noise(size, source_mode, seed), "PNG")
    output = encoded(noise(size, output_mode, seed + 1), fmt)
    mask = encoded(random_mask(size, seed + 2), "PNG")

    checked = check_output(output, source, mask, mime_type=FORMATS[fmt], composite=True)

    result = Image.open(io.BytesIO(checked.data))
    assert checked.composited
    assert checked.resized_from is None
    assert checked.mime_type == ("image/png" if fmt == "JPEG" else FORMATS[fmt])
    assert result.format == {"image/png": "PNG", "image/webp": "WEBP"}[checked.mime_type]
    mode = result.mode
    got, kept, model = decoded(checked.data, mode), decoded(source, mode), decoded(output, mode)
    for pixel, alpha, want_kept, want_model in zip(got, alphas(mask), kept, model, strict=True):
        if alpha == 255:
            assert pixel == want_kept
        elif alpha == 0:
            assert pixel == want_model
        else:
            for channel, low, high in zip(pixel, want_kept, want_model, strict=True):
                assert min(low, high) <= channel <= max(low, high)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 30),
    height=st.integers(1, 30),
    source_mode=st.sampled_from(MODES),
    output_mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**16),
)
def test_drift_counts_the_kept_pixels_the_model_changed_and_by_how_much(
    width, height, source_mode, output_mode, seed
):
    size = (width, height)
    source_image = noise(size, source_mode, seed)
    output_image = source_image.copy() if seed % 3 == 0 else noise(size, output_mode, seed + 1)
    source, output = encoded(source_image, "PNG"), encoded(output_image, "PNG")
    mask = encoded(random_mask(size, seed + 2), "PNG")

    drift = check_output(output, source, mask, mime_type="image/png", composite=False).drift

    with_alpha = any(Image.open(io.BytesIO(d)).has_transparency_data for d in (source, output))
    mode = "RGBA" if with_alpha else "RGB"
    pairs = [
        (a, b)
        for a, b, alpha in zip(
            decoded(source, mode), decoded(output, mode), alphas(mask), strict=True
        )
        if alpha == 255
    ]
    changed = [(a, b) for a, b in pairs if a != b]
    total = sum(abs(x - y) for a, b in changed for x, y in zip(a, b, strict=True))
    assert drift.kept_pixels == len(pairs)
    assert drift.changed_pixels == len(changed)
    assert drift.mean_abs_diff == pytest.approx(
        total / (len(changed) * len(mode)) if changed else 0
    )
    if seed % 3 == 0:
        assert drift.changed_pixels == 0


def test_drift_alone_leaves_the_models_bytes_as_they_came():
    source = encoded(noise((20, 10), "RGB", 1), "PNG")
    output = encoded(noise((20, 10), "RGB", 2), "JPEG")
    mask = encoded(random_mask((20, 10), 3), "PNG")

    checked = check_output(output, source, mask, mime_type="image/jpeg", composite=False)

    assert (checked.data, checked.mime_type, checked.composited) == (output, "image/jpeg", False)
    assert 0 < checked.drift.changed_fraction <= 1


def test_an_output_of_another_size_is_resized_to_the_source_first():
    source = encoded(noise((32, 24), "RGB", 1), "PNG")
    output = encoded(noise((64, 48), "RGB", 2), "PNG")
    mask = encoded(random_mask((32, 24), 3), "PNG")

    checked = check_output(output, source, mask, mime_type="image/png", composite=True)

    assert checked.resized_from == (64, 48)
    assert Image.open(io.BytesIO(checked.data)).size == (32, 24)
    for pixel, alpha, want in zip(
        decoded(checked.data, "RGB"), alphas(mask), decoded(source, "RGB"), strict=True
    ):
        if alpha == 255:
            assert pixel == want


def test_feather_softens_the_seam_inside_the_edit_and_never_touches_a_kept_pixel():
    size = (40, 40)
    mask_image = Image.new("RGBA", size, (0, 0, 0, 255))
    mask_image.paste((0, 0, 0, 0), (10, 10, 30, 30))
    mask = encoded(mask_image, "PNG")
    source = encoded(Image.new("RGB", size, (0, 0, 0)), "PNG")
    output = encoded(Image.new("RGB", size, (255, 255, 255)), "PNG")

    sharp = check_output(output, source, mask, mime_type="image/png", composite=True)
    soft = check_output(output, source, mask, mime_type="image/png", composite=True, feather=3)

    sharp_pixels, soft_pixels = decoded(sharp.data, "RGB"), decoded(soft.data, "RGB")
    seam = [
        i
        for i, alpha in enumerate(alphas(mask))
        if alpha == 0 and sharp_pixels[i] != soft_pixels[i]
    ]
    assert seam, "the feather changed nothing"
    assert all(0 < soft_pixels[i][0] < 255 for i in seam)
    assert soft_pixels[20 * 40 + 20] == (255, 255, 255)  # the middle of the edit is the model's
    for pixel, alpha in zip(soft_pixels, alphas(mask), strict=True):
        if alpha == 255:
            assert pixel == (0, 0, 0)


def test_feather_zero_is_the_mask_itself():
    alpha = Image.frombytes("L", (4, 1), bytes([0, 10, 200, 255]))
    assert feathered(alpha, 0) is alpha
    assert list(feathered(alpha, 2).getdata())[3] == 255


def test_a_mask_that_keeps_nothing_measures_no_drift():
    size = (8, 8)
    mask = encoded(Image.new("RGBA", size, (0, 0, 0, 0)), "PNG")
    output = encoded(noise(size, "RGB", 1), "PNG")
    drift = check_output(
        output, encoded(noise(size, "RGB", 2), "PNG"), mask, mime_type="image/png", composite=False
    ).drift
    assert drift == Drift(0, 0, 0.0)
    assert drift.changed_fraction == 0.0


def test_a_mask_of_another_size_than_the_source_is_refused():
    with pytest.raises(ValueError, match="mask"):
        check_output(
            encoded(noise((8, 8), "RGB", 1), "PNG"),
            encoded(noise((8, 8), "RGB", 2), "PNG"),
            encoded(random_mask((9, 8), 3), "PNG"),
            mime_type="image/png",
            composite=True,
        )


def test_a_4096_square_composite_stays_within_bounded_memory(tmp_path):
    """In a child process that only reads the three files: the peak RSS grows by at most 16
    bytes a pixel (256 MiB for 4096x4096; 170 MiB measured): the decoded source, output and
    mask, and the result."""
    side = 4096
    (tmp_path / "source.png").write_bytes(
        encoded(Image.linear_gradient("L").resize((side, side)).convert("RGB"), "PNG")
    )
    (tmp_path / "output.png").write_bytes(
        encoded(Image.radial_gradient("L").resize((side, side)).convert("RGB"), "PNG")
    )
    mask = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (1000, 1000, 3001, 3001))
    (tmp_path / "mask.png").write_bytes(encoded(mask, "PNG"))
    script = textwrap.dedent(
        """
        import re, sys
        from pathlib import Path
        from airflow_provider_cometapi.api.compositing import check_output
        folder = Path(sys.argv[1])
        source, output, mask = (
            (folder / name).read_bytes() for name in ("source.png", "output.png", "mask.png")
        )
        def peak():  # this process's own high-water mark (ru_maxrss counts the parent's too)
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
        before = peak()
        result = check_output(output, source, mask, mime_type="image/png", composite=True)
        after = peak()
        print((after - before) * 1024, result.drift.kept_pixels)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    grown, kept = map(int, out.stdout.split())
    pixels = side * side
    assert kept == pixels - 2001 * 2001
    assert grown <= 16 * pixels, f"grew {grown >> 20} MiB"


def test_a_16_bit_source_is_compared_and_kept_at_8_bits_not_clipped():
    size = (16, 8)
    grey = bytes(range(0, 256, 2))[: size[0] * size[1]]
    wide = Image.frombytes("L", size, grey).convert("I").point(lambda v: v * 257)
    source = encoded(wide.convert("I;16"), "PNG")
    assert Image.open(io.BytesIO(source)).mode.startswith("I")
    mask = encoded(random_mask(size, 5), "PNG")
    output = encoded(noise(size, "RGB", 6), "PNG")

    checked = check_output(output, source, mask, mime_type="image/png", composite=True)

    got = decoded(checked.data, "RGB")
    for pixel, alpha, value in zip(got, alphas(mask), grey, strict=True):
        if alpha == 255:
            assert pixel == (value, value, value)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_lossy_answer_that_kept_every_pixel_is_not_counted_as_drift(fmt):
    from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK

    source = PAPER_BOAT.read_bytes()
    buffer = io.BytesIO()
    Image.open(PAPER_BOAT).convert("RGB").save(buffer, format=fmt, quality=90)

    drift = check_output(
        buffer.getvalue(),
        source,
        PAPER_BOAT_MASK.read_bytes(),
        mime_type=FORMATS[fmt],
        composite=False,
    ).drift

    assert drift.tolerance == 24
    assert drift.changed_fraction < 0.001  # at 0 tolerance, 80-90 % would count as changed
