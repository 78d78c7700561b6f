"""``make demo``: run the showcase DAG end to end and leave the edits and a contact sheet.

Uses the local CometAPI emulator, or the real service when ``COMETAPI_API_KEY`` is set
(``COMETAPI_BASE_URL`` optional). The emulator repaints 30 % of the pixels the mask keeps, as
real models do, so that the demo shows what ``preserve_unmasked`` undoes. Airflow's home and
SQLite DB stay in ``./.airflow``; the outputs go to ``./demo-output`` (or
``COMETAPI_DEMO_OUTPUT``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path(os.environ.get("COMETAPI_DEMO_OUTPUT", ROOT / "demo-output")).resolve()
SHOWCASE_DAG = "cometapi_edit_local_image"
EMULATED_DRIFT = 0.3
"""The share of kept pixels the demo's emulator repaints, as real models do."""
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "false"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
warnings.filterwarnings("ignore", category=DeprecationWarning)  # Airflow's own, not the demo's


@contextmanager
def cometapi_service() -> Iterator[str]:
    """Point ``cometapi_default`` at the real service (with a key) or a local emulator."""
    key = os.environ.get("COMETAPI_API_KEY")
    if key:
        host = os.environ.get("COMETAPI_BASE_URL", "https://api.cometapi.com")
        os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"] = json.dumps(
            {"conn_type": "cometapi", "host": host, "password": key}
        )
        yield f"CometAPI at {host}"
        return
    from airflow_provider_cometapi.emulator import EmulatorServer

    with EmulatorServer(drift=EMULATED_DRIFT) as emulator:
        os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"] = emulator.connection_json("demo-key")
        yield f"the local CometAPI emulator at {emulator.url}"


def run_showcase() -> tuple[str, list[str], dict, list[dict]]:
    """``dag.test()`` the showcase DAG; return its state, output URIs, usage and checks."""
    import importlib

    from airflow.models.xcom import XComModel
    from airflow.utils import db
    from airflow.utils.session import create_session

    db.initdb()
    module = importlib.import_module(f"dags_examples.{SHOWCASE_DAG}")
    run = module.dag.test(run_conf={"output_dir": str(OUTPUT)})
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=SHOWCASE_DAG, run_id=run.run_id)
        values = {row.key: row.value for row in rows}
    return (
        str(run.state),
        values.get("return_value") or [],
        values.get("usage") or {},
        values.get("checks") or [],
    )


def contact_sheet(before: Path, mask: Path, after: list[Path], target: Path) -> Path:
    """A before / mask / after strip with captions, as one PNG."""
    from PIL import Image

    tiles = [
        ("before", Image.open(before).convert("RGB")),
        ("mask (edit area)", _mask_view(before, mask)),
    ]
    tiles += [(f"after #{i + 1}", Image.open(path).convert("RGB")) for i, path in enumerate(after)]
    return _strip(tiles, target)


def masks_sheet(before: Path, mask: Path, output: Path, check: dict, target: Path) -> Path:
    """Before / model output / composited, with the drift the model left where the mask keeps
    pixels and the composite ``preserve_unmasked=True`` writes from that same output (made by
    the provider's own ``check_output``: no second edit is paid for)."""
    import io

    from PIL import Image

    from airflow_provider_cometapi.api.compositing import check_output

    source, kept = before.read_bytes(), mask.read_bytes()
    composite = check_output(
        output.read_bytes(), source, kept, mime_type="image/png", composite=True
    )
    left = check_output(composite.data, source, kept, mime_type="image/png", composite=False)
    tiles = [
        ("before", Image.open(before).convert("RGB")),
        ("mask (edit area)", _mask_view(before, mask)),
        (
            f"model output: {check['changed_fraction']:.1%} of kept pixels changed",
            Image.open(output).convert("RGB"),
        ),
        (
            f"composited: {left.drift.changed_pixels} kept pixels changed",
            Image.open(io.BytesIO(composite.data)).convert("RGB"),
        ),
    ]
    return _strip(tiles, target)


def _mask_view(before: Path, mask: Path) -> Any:
    """The source with the mask's edit area (alpha 0) painted over."""
    from PIL import Image

    view = Image.open(before).convert("RGB")
    view.paste(
        (255, 0, 128), mask=Image.open(mask).getchannel("A").point(lambda a: 255 if a == 0 else 0)
    )
    return view


def _strip(tiles: list[tuple[str, Any]], target: Path) -> Path:
    """The tiles side by side with their captions below, saved as a PNG at ``target``."""
    from PIL import Image, ImageDraw

    width, height, caption, gap = 320, 240, 28, 12
    sheet = Image.new(
        "RGB", (gap + len(tiles) * (width + gap), height + caption + 2 * gap), (250, 250, 250)
    )
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(tiles):
        x = gap + i * (width + gap)
        sheet.paste(image.resize((width, height)), (x, gap))
        draw.text((x + 4, gap + height + 8), label, fill=(20, 20, 20))
    sheet.save(target)
    return target


def shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main() -> int:
    """Run the demo; print where the outputs are and the token usage."""
    from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with cometapi_service() as where:
        print(f"Running DAG {SHOWCASE_DAG!r} against {where} ...", flush=True)
        state, outputs, usage, checks = run_showcase()
    if state != "success" or not outputs:
        print(f"The showcase DAG ended {state}; see the log above.", file=sys.stderr)
        return 1
    edited = [Path(uri.removeprefix("file://")) for uri in outputs]
    sheet = contact_sheet(PAPER_BOAT, PAPER_BOAT_MASK, edited, OUTPUT / "contact-sheet.png")
    print("\nEdited images:")
    for path in edited:
        print(f"  {shown(path)}")
    print(f"Contact sheet:\n  {shown(sheet)}")
    if checks:
        first = checks[0]
        masks = masks_sheet(
            PAPER_BOAT, PAPER_BOAT_MASK, edited[0], first, OUTPUT / "masks-that-hold.png"
        )
        print(
            f"Drift: the model changed {first['changed_fraction']:.1%} of the pixels the mask "
            f"keeps ({first['changed_pixels']} of {first['kept_pixels']}, mean difference "
            f"{first['mean_abs_diff']:.1f} of 255); preserve_unmasked=True pastes them back. "
            f"Before / model output / composited:\n  {shown(masks)}"
        )
    print(
        f"Tokens paid by this run ({usage.get('model')}, request {usage.get('request_id')}): "
        f"{usage.get('input_tokens')} input + {usage.get('output_tokens')} output = "
        f"{usage.get('total_tokens')} total"
    )
    reused = usage["reused"]
    if reused["requests"]:
        print(
            "These outputs were already complete from an earlier run, so this run reused them "
            f"and paid for nothing ({reused.get('total_tokens')} tokens were paid then). Pass "
            "reuse_outputs=False to edit anew."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
