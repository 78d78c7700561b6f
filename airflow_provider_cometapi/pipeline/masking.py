"""A masked edit's outputs, checked before they are written: their drift where the mask keeps
pixels measured, composited over the source when asked, refused past the allowed drift.

A refused edit was paid for: its outputs, as the model sent them, are kept under ``rejected/``
beside the outputs, with a manifest there, so a later try reports the same verdict instead of
paying for the edit again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.compositing import MaskedOutput, check_output
from airflow_provider_cometapi.api.results import WrittenImage
from airflow_provider_cometapi.exceptions import CometAPIQualityError
from airflow_provider_cometapi.storage.outputs import StagedOutputs

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.request import EditParams, EditRequest
    from airflow_provider_cometapi.api.results import EditOutcome
    from airflow_provider_cometapi.api.sinks import SpooledSink
    from airflow_provider_cometapi.pipeline.progress import BatchLog

REJECTED_FOLDER = "rejected/"


def check_outputs(
    raw: SpooledSink, outcome: EditOutcome, request: EditRequest, params: EditParams
) -> list[MaskedOutput]:
    """Each output of ``outcome`` (spooled in ``raw``) checked against the first source image
    through the mask, and composited when ``params.preserve_unmasked``."""
    assert request.mask is not None
    source, mask = request.images[0].data, request.mask.data
    return [
        check_output(
            raw.read(image.slot),
            source,
            mask,
            mime_type=image.mime_type,
            composite=params.preserve_unmasked,
            feather=params.feather or 0,
        )
        for image in outcome.images
    ]


def over_limit(checked: list[MaskedOutput], limit: float | None) -> list[int]:
    """The places of the outputs whose changed share of kept pixels is over ``limit``."""
    if limit is None:
        return []
    return [i for i, output in enumerate(checked) if output.drift.changed_fraction > limit]


def write_checked(
    checked: list[MaskedOutput], outcome: EditOutcome, sink: StagedOutputs
) -> EditOutcome:
    """Write the checked outputs into ``sink``: the outcome, with their types and sizes."""
    images = []
    for output, image in zip(checked, outcome.images, strict=True):
        writer = sink.open_writer(image.slot, output.mime_type)
        writer.write(output.data)
        writer.close()
        images.append(
            WrittenImage(
                image.slot, output.mime_type, len(output.data), image.revised_prompt, image.url
            )
        )
    return replace(outcome, images=images)


def rejected_outputs(sink: StagedOutputs) -> StagedOutputs:
    """Where a refused edit's outputs go: ``rejected/`` in the folder of the outputs, under the
    names they would have had (an earlier refusal of the same edit is replaced)."""
    return StagedOutputs(
        f"{sink.folder}{REJECTED_FOLDER}",
        stem=sink.stem,
        map_index=sink.map_index,
        conn_id=sink.conn_id,
        item=sink.item,
        replace=True,
    )


def keep_rejected(raw: SpooledSink, outcome: EditOutcome, kept: StagedOutputs) -> list[str]:
    """Write the outputs as the model sent them into ``kept``; their URIs."""
    for image in outcome.images:
        writer = kept.open_writer(image.slot, image.mime_type)
        writer.write(raw.read(image.slot))
        writer.close()
    return kept.commit()


def checks_of(
    checked: list[MaskedOutput], outputs: list[str], *, rejected: bool
) -> list[dict[str, Any]]:
    """Each output's ``checks`` entry: where it is, its drift, whether it was composited,
    resized or rejected."""
    return [
        {
            "output": uri,
            **output.drift.to_json(),
            "composited": output.composited,
            "resized_from": list(output.resized_from) if output.resized_from else None,
            "rejected": rejected,
        }
        for output, uri in zip(checked, outputs, strict=True)
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
        "not at the output path. Raise the limit, set preserve_unmasked=True to paste the kept "
        "pixels back, or remove them to edit again (a retry reports this verdict, unpaid).",
        param="max_outside_mask_drift",
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
                "Output %d of %s came as %s; its composite is written as %s, which keeps pixels "
                "exact",
                index,
                label,
                image.mime_type,
                output.mime_type,
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
