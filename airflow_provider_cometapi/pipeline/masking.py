"""A masked edit's outputs, checked before they are written: their drift where the mask keeps
pixels measured, composited over the source when asked, refused past the allowed drift.

A refused edit was paid for: its outputs, as the model sent them, are kept under
``rejected/<fingerprint>/`` beside the outputs, with a manifest there recording the verdict and
the options it was judged by. A later try with the same options reports the same verdict; with
other options it judges the kept outputs again. Neither pays for the edit again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.compositing import MaskedOutput, check_output
from airflow_provider_cometapi.api.images import sniff_mime_type
from airflow_provider_cometapi.api.results import EditOutcome, WrittenImage
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError, CometAPIQualityError
from airflow_provider_cometapi.storage.outputs import StagedOutputs

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.request import EditParams, EditRequest
    from airflow_provider_cometapi.api.sinks import SpooledSink
    from airflow_provider_cometapi.pipeline.progress import BatchLog

REJECTED_FOLDER = "rejected"
FINGERPRINT_CHARS = 16
"""How much of the edit's fingerprint names its folder under ``rejected/``."""


def options_of(params: EditParams) -> dict[str, Any]:
    """What is done to a masked edit's outputs, as its manifests record it."""
    return {
        "preserve_unmasked": params.preserve_unmasked,
        "feather": params.feather,
        "max_outside_mask_drift": params.max_outside_mask_drift,
    }


def check_and_write(
    raw: SpooledSink,
    outcome: EditOutcome,
    request: EditRequest,
    params: EditParams,
    sink: StagedOutputs,
) -> tuple[EditOutcome, list[MaskedOutput]]:
    """Check each output of ``outcome`` (spooled in ``raw``) against the first source image
    through the mask, composited when ``params.preserve_unmasked``, and stage what is to be
    written in ``sink``, one output at a time. Returns the outcome with the staged types and
    sizes, and the checks (without their bytes).

    :raises CometAPIBadResponseError: an output that cannot be decoded, naming it.
    """
    assert request.mask is not None
    source, mask = request.images[0].data, request.mask.data
    images, checked = [], []
    for index, image in enumerate(outcome.images):
        try:
            output = check_output(
                raw.read(image.slot),
                source,
                mask,
                mime_type=image.mime_type,
                composite=params.preserve_unmasked,
                feather=params.feather or 0,
            )
        except Exception as exc:  # Pillow raises many types for a corrupt image
            raise CometAPIBadResponseError(
                f"output {index} could not be decoded for the mask check "
                f"({type(exc).__name__}: {excerpt(str(exc), 200)})",
                request_id=outcome.request_id,
            ) from exc
        writer = sink.open_writer(image.slot, output.mime_type)
        writer.write(output.data)
        writer.close()
        images.append(replace(image, mime_type=output.mime_type, size=len(output.data)))
        checked.append(replace(output, data=b""))
    return replace(outcome, images=images), checked


def over_limit(checked: list[MaskedOutput], limit: float | None) -> bool:
    """Whether an output changed more than ``limit`` of the kept pixels."""
    return limit is not None and any(c.drift.changed_fraction > limit for c in checked)


def rejected_outputs(sink: StagedOutputs, fingerprint: str) -> StagedOutputs:
    """Where a refused edit's outputs are kept: ``rejected/<fingerprint>/`` in the folder of
    its outputs, under the names they would have had (only this edit's earlier ones are
    replaced)."""
    return StagedOutputs(
        f"{sink.folder}{REJECTED_FOLDER}/{fingerprint[:FINGERPRINT_CHARS]}/",
        stem=sink.stem,
        map_index=sink.map_index,
        conn_id=sink.conn_id,
        item=sink.item,
        replace=True,
    )


def stage_raw(raw: SpooledSink, outcome: EditOutcome, kept: StagedOutputs) -> None:
    """Stage the outputs, as the model sent them, in ``kept`` (committed by the caller)."""
    for image in outcome.images:
        writer = kept.open_writer(image.slot, image.mime_type)
        writer.write(raw.read(image.slot))
        writer.close()


def raw_outcome(record: dict[str, Any], images: list[bytes], raw: SpooledSink) -> EditOutcome:
    """The outcome of an edit refused before, its kept ``images`` spooled in ``raw`` again."""
    written = []
    for slot, data in enumerate(images):
        mime_type = sniff_mime_type(data) or "image/png"
        writer = raw.open_writer(slot, mime_type)
        writer.write(data)
        writer.close()
        written.append(WrittenImage(slot, mime_type, len(data)))
    return EditOutcome(0, dict(record.get("usage") or {}), record.get("request_id"), written)


def checks_of(
    checked: list[MaskedOutput], outputs: list[str], *, rejected: bool
) -> list[dict[str, Any]]:
    """Each output's ``checks`` entry."""
    return [
        output.entry(uri, rejected=rejected) for output, uri in zip(checked, outputs, strict=True)
    ]


def quality_error(checks: list[dict[str, Any]], limit: float, label: str) -> CometAPIQualityError:
    """The error of an edit refused for its drift, naming what was measured and where the
    outputs are kept."""
    worst = max(checks, key=lambda check: check["changed_fraction"])
    kept = ", ".join(check["output"] for check in checks)
    return CometAPIQualityError(
        f"{label}: the model changed {worst['changed_fraction']:.1%} of the pixels the mask "
        f"keeps (mean difference {worst['mean_abs_diff']:.1f} of 255), over "
        f"max_outside_mask_drift={limit}. The edit was paid for: its outputs are kept at {kept}, "
        "not at the output path. A retry reports this verdict without paying again; raise the "
        "limit to have the kept outputs judged again (nothing is sent), or delete them to edit "
        "anew.",
        param="max_outside_mask_drift",
    )


def undecodable_error(
    error: CometAPIBadResponseError, kept: list[str], label: str
) -> CometAPIBadResponseError:
    """``error`` (an output that cannot be decoded), saying where the paid outputs are kept."""
    return CometAPIBadResponseError(
        f"{label}: {error.message}. The edit was paid for: its outputs are kept at "
        f"{', '.join(kept)}, not at the output path; a retry reports this without paying again.",
        request_id=error.request_id,
    )


def log_checked(
    checked: list[MaskedOutput], outcome: EditOutcome, label: str, log: BatchLog
) -> None:
    """Say what the check changed of an output beyond its pixels: its size, its format."""
    for index, (output, image) in enumerate(zip(checked, outcome.images, strict=True)):
        if output.resized_from is not None:
            log.warning(
                "Output %d of %s is %dx%d, not the source's size: resized to the source's "
                "before the mask check",
                index,
                label,
                *output.resized_from,
            )
        if output.mime_type != image.mime_type:
            log.item(
                "Output %d of %s came as %s; its composite is written as PNG, which keeps "
                "pixels exact",
                index,
                label,
                image.mime_type,
            )


def summed_checks(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch's checks summed up: outputs checked, composited and rejected, the kept pixels
    and how many of them the model changed, overall and in its worst output."""
    kept = sum(check["kept_pixels"] for check in checks)
    changed = sum(check["changed_pixels"] for check in checks)
    return {
        "outputs": len(checks),
        "composited": sum(1 for check in checks if check["composited"]),
        "rejected": sum(1 for check in checks if check["rejected"]),
        "kept_pixels": kept,
        "changed_pixels": changed,
        "changed_fraction": round(changed / kept, 6) if kept else 0.0,
        "max_changed_fraction": max(check["changed_fraction"] for check in checks),
    }
