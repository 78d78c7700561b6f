"""Drift: kept pixels (mask alpha 255) stay the source's exactly, unless a drift changes a share."""

from __future__ import annotations

import io
import random

import pytest
import requests

from airflow_provider_cometapi.emulator import EmulatorServer
from airflow_provider_cometapi.emulator.__main__ import main
from tests.emulator.helpers import KEY, assert_refused, emulator_cli, outputs, png_part

SIZE = (64, 48)
DRIFT = "x-emulator-drift"


def noisy_png(size=SIZE, mode="RGB", seed=1) -> bytes:
    """A PNG of seeded random pixels: every pixel differs from its neighbours."""
    from PIL import Image

    bands = len(mode)
    data = random.Random(seed).randbytes(size[0] * size[1] * bands)
    image = Image.frombytes(mode, size, data)
    if mode == "RGBA":  # opaque but for one transparent column
        alpha = Image.new("L", size, 255)
        alpha.paste(0, (0, 0, 1, size[1]))
        image.putalpha(alpha)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(size=SIZE) -> bytes:
    """Transparent (edit) in a hole, half-transparent in a band, opaque (kept) elsewhere."""
    from PIL import Image

    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (8, 8, 24, 24))
    mask.paste((0, 0, 0, 128), (30, 0, 34, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def alpha_of(mask: bytes) -> dict[tuple[int, int], int]:
    from tests.imaging import decode

    alpha = decode(mask).convert("RGBA").getchannel("A")
    return {(x, y): alpha.getpixel((x, y)) for x in range(alpha.width) for y in range(alpha.height)}


def edit(post_edit, source: bytes, mask: bytes | None = None, **options):
    files = [png_part(source)] + ([png_part(mask, "m.png", "mask")] if mask else [])
    response = post_edit(files=files, **options)
    assert response.status_code == 200, response.text
    return response


def changed(image, source, where) -> list[tuple[int, int]]:
    """The pixels of ``where`` at which ``image`` differs from ``source``."""
    return [xy for xy in where if image.getpixel(xy) != source.getpixel(xy)]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_without_drift_every_kept_pixel_is_exactly_the_source_pixel(post_edit, mode):
    from tests.imaging import decode

    source, mask = noisy_png(mode=mode), mask_png()
    alpha = alpha_of(mask)
    [image] = outputs(edit(post_edit, source, mask))
    original = decode(source).convert(mode)

    kept = [xy for xy, a in alpha.items() if a == 255]
    hole = [xy for xy, a in alpha.items() if a == 0]
    assert (image.format, image.mode) == ("PNG", mode)
    assert len(kept) == 64 * 48 - 16 * 16 - 4 * 48
    assert changed(image, original, kept) == []
    assert len(changed(image, original, hole)) == len(hole)  # tinted where the mask says edit


@pytest.mark.parametrize("share", [0.1, 0.123, 0.5, 1.0])  # 0.123 x 2624 = 322.75
def test_drift_changes_round_share_of_the_kept_pixels_in_every_channel(post_edit, share):
    from tests.imaging import decode

    source, mask = noisy_png(), mask_png()
    alpha = alpha_of(mask)
    original = decode(source).convert("RGB")
    [still] = outputs(edit(post_edit, source, mask))
    [image] = outputs(edit(post_edit, source, mask, headers={DRIFT: str(share)}))

    kept = [xy for xy, a in alpha.items() if a == 255]
    drifted = changed(image, original, kept)
    assert len(drifted) == round(share * len(kept))
    for xy in drifted:  # every channel moved by 128: changed whatever the mode compared
        pairs = zip(image.getpixel(xy), original.getpixel(xy), strict=True)
        assert all(abs(a - b) == 128 for a, b in pairs)
    not_kept = [xy for xy, a in alpha.items() if a != 255]
    assert changed(image, still, not_kept) == []  # the edit itself is the drift-0 edit


def test_drift_keeps_the_alpha_of_a_transparent_source(post_edit):
    from tests.imaging import decode

    source, mask = noisy_png(mode="RGBA"), mask_png()
    original = decode(source)
    [image] = outputs(edit(post_edit, source, mask, headers={DRIFT: "1"}))

    assert image.getchannel("A").tobytes() == original.getchannel("A").tobytes()


def test_drift_is_deterministic_and_differs_between_outputs(post_edit):
    from tests.imaging import decode

    source, mask = noisy_png(), mask_png()
    original = decode(source).convert("RGB")
    kept = [xy for xy, a in alpha_of(mask).items() if a == 255]
    first = edit(post_edit, source, mask, n="2", headers={DRIFT: "0.2"})
    again = edit(post_edit, source, mask, n="2", headers={DRIFT: "0.2"})

    assert first.json()["data"] == again.json()["data"]
    one, two = (set(changed(image, original, kept)) for image in outputs(first))
    assert len(one) == len(two) == round(0.2 * len(kept))
    assert one != two  # each output is drawn apart


def test_without_a_mask_drift_changes_nothing(post_edit):
    source = noisy_png()

    plain = edit(post_edit, source)
    drifted = edit(post_edit, source, headers={DRIFT: "0.9"})

    assert plain.json()["data"] == drifted.json()["data"]


@pytest.mark.parametrize("cometapi_emulator", [{"drift": 0.25}], indirect=True)
def test_the_fixture_parameter_sets_the_drift_and_the_header_wins(post_edit, cometapi_emulator):
    from tests.imaging import decode

    source, mask = noisy_png(), mask_png()
    original = decode(source).convert("RGB")
    kept = [xy for xy, a in alpha_of(mask).items() if a == 255]

    [served] = outputs(edit(post_edit, source, mask))
    [exact] = outputs(edit(post_edit, source, mask, headers={DRIFT: "0"}))

    assert len(changed(served, original, kept)) == round(0.25 * len(kept))
    assert changed(exact, original, kept) == []


def test_set_drift_changes_it_on_a_running_server(post_edit, cometapi_emulator):
    from tests.imaging import decode

    source, mask = noisy_png(), mask_png()
    original = decode(source).convert("RGB")
    kept = [xy for xy, a in alpha_of(mask).items() if a == 255]
    cometapi_emulator.set_drift(0.5)

    [image] = outputs(edit(post_edit, source, mask))

    assert len(changed(image, original, kept)) == round(0.5 * len(kept))


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan", "inf"])
def test_a_bad_drift_header_is_refused_naming_it(post_edit, cometapi_emulator, value):
    response = post_edit(headers={DRIFT: value})

    assert_refused(response, cometapi_emulator, DRIFT, "invalid_emulator_drift")
    assert "from 0 to 1" in response.json()["error"]["message"]


@pytest.mark.parametrize("value", [1.01, -1, float("nan"), "x"])
def test_a_bad_drift_setting_is_a_value_error(cometapi_emulator, value):
    with pytest.raises(ValueError, match="drift must be a number from 0 to 1"):
        EmulatorServer(drift=value)
    with pytest.raises(ValueError, match="drift must be a number from 0 to 1"):
        cometapi_emulator.set_drift(value)


def test_the_cli_takes_drift(tmp_path):
    from tests.imaging import decode

    source, mask = noisy_png(), mask_png()
    original = decode(source).convert("RGB")
    kept = [xy for xy, a in alpha_of(mask).items() if a == 255]
    with emulator_cli("--drift", "0.3") as url:
        response = requests.post(
            f"{url}/v1/images/edits",
            files=[png_part(source), png_part(mask, "m.png", "mask")],
            data={"prompt": "x"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
    [image] = outputs(response)

    assert len(changed(image, original, kept)) == round(0.3 * len(kept))


def test_the_cli_refuses_a_bad_drift(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--drift", "2"])

    assert info.value.code == 2
    assert "drift must be a number from 0 to 1" in capsys.readouterr().err
