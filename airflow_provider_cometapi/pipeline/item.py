"""One item's work, written once for worker threads and the triggerer: read and check its
inputs, look for its earlier outputs, claim it, send it, commit its outputs, or give it up.
``pipeline/steps.py`` drives these steps around the request gate.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.request import edit_request
from airflow_provider_cometapi.api.results import EXTENSIONS, EditOutcome, WrittenImage
from airflow_provider_cometapi.api.sinks import SpooledSink
from airflow_provider_cometapi.exceptions import (
    CometAPIBadResponseError,
    CometAPIError,
    CometAPIOutputConflictError,
    CometAPIQualityError,
)
from airflow_provider_cometapi.pipeline import masking
from airflow_provider_cometapi.pipeline.records import ItemResult
from airflow_provider_cometapi.storage import claims, manifests
from airflow_provider_cometapi.storage.outputs import StagedOutputs
from airflow_provider_cometapi.storage.paths import storage_path
from airflow_provider_cometapi.storage.probe import ProbedFolders
from airflow_provider_cometapi.storage.sources import read_all, source_stem

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_cometapi.api.request import EditParams, EditRequest
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.progress import BatchLog
    from airflow_provider_cometapi.pipeline.scope import TaskScope


class ItemJob:
    """One item's steps but the gate: check, look up, send, commit, give up. Only ``send``
    raises: every other step turns a failure into the item's failed result.

    :param position: the item's place in the batch, for the request gate.
    :param params: the batch's edit parameters (a row's own, in its plan, come first).
    :param log: the batch's log (its item lines at DEBUG, its warnings capped).
    :param probes: the batch's probes of its output folders (each folder probed once).
    :param parked: edits earlier tries paid for but could not deliver, by fingerprint (see
        ``pipeline/ledger.py``): such an item is delivered from them, not sent again.
    """

    def __init__(
        self,
        position: int,
        plan: ItemPlan,
        params: EditParams,
        scope: TaskScope,
        log: BatchLog,
        probes: ProbedFolders | None = None,
        parked: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.position, self.plan, self.scope = position, plan, scope
        self.params = plan.params or params
        self.log = log
        self.probes = probes or ProbedFolders()
        self.parked = parked or {}
        self.request: EditRequest | None = None
        self.sink: StagedOutputs | None = None
        self.raw: SpooledSink | None = None
        """A masked edit's outputs as the model sent them, until they are checked."""
        self.rejected: StagedOutputs | None = None
        """Where a masked edit's outputs are kept when they are refused (``pipeline/masking``)."""
        self.key = ""
        self.replaceable: frozenset[str] = frozenset()
        """Final names that hold this very edit's earlier outputs, which it may overwrite."""
        self.claimed = False

    @property
    def label(self) -> str:
        """The item's name in logs and records."""
        return self.plan.label

    def check(self) -> ItemResult | None:
        """Read and check the inputs and fingerprint the edit; the failed result, or ``None``."""
        plan = self.plan
        try:
            sources = read_all(plan.sources, "image")
            mask = plan.mask.read("mask") if plan.mask is not None else None
            self.request = edit_request(sources, self.params, mask=mask)
        except Exception as exc:
            return self.failed(exc)
        self.sink = StagedOutputs(
            plan.output_path,
            stem=plan.stem or source_stem(sources[0][0]),
            map_index=plan.map_index,
            conn_id=plan.output_conn_id,
            item=plan.item,
            replace=self.scope.replace,
        )
        self.key = fingerprint(self.request, plan)
        if self.request.mask is not None:
            self.raw = SpooledSink()
            self.rejected = masking.rejected_outputs(self.sink, self.key)
        return None

    def prepare(self) -> ItemResult | None:
        """Check, look for a manifest, claim the edit, and look for objects in the way: a
        result when the item is settled (failed its checks, done before or meanwhile by
        another task instance, or would overwrite another's object), ``None`` when its request
        is to be sent."""
        failed = self.check()
        if failed is not None:
            return failed
        assert self.sink is not None
        ext = EXTENSIONS[f"image/{self.params.output_format or 'png'}"]
        targets = self.sink.targets_for([ext] * (self.params.n or 1))
        try:
            settled = self._look_up(say_why=True) or self._refused_before()
            if settled is None and self.key in self.parked:
                return self._deliver(self.parked[self.key])
            if settled is None:
                for folder in sorted({target.rpartition("/")[0] + "/" for target in targets}):
                    self.probes.check(folder, self.sink.conn_id)
                settled = self._claim()
            if settled is None:
                self._check_nothing_in_the_way(targets)
        except Exception as exc:  # the output location cannot be used, or is taken
            return self.failed(exc)
        return settled

    def _look_up(self, *, say_why: bool = False) -> ItemResult | None:
        """The reused result when a manifest proves the outputs and they may be reused."""
        assert self.sink is not None
        found = manifests.look_up(self.sink, self.key)
        problem = found.problem
        if found.record is not None and self._same_options(found.record):
            mine = self.scope.paid_for(found.record)
            if mine or self.scope.reuse_outputs:
                return self._reuse(found.record, paid=mine)
        elif found.record is not None:
            problem = "its outputs were written with other mask options"
        if problem is not None and say_why:
            self.log.item("Editing %s again: %s", self.label, problem)
        self.replaceable = found.intact
        return None

    def _same_options(self, record: Mapping[str, Any]) -> bool:
        """Whether a manifest's outputs were made with this edit's mask options."""
        return self.raw is None or record.get("masking") == masking.options_of(self.params)

    def _refused_before(self) -> ItemResult | None:
        """The result of an edit an earlier try or run refused, whose outputs are still kept:
        the same verdict under the same mask options, else its kept outputs judged again;
        nothing is sent either way."""
        if self.rejected is None:
            return None
        found = manifests.look_up(self.rejected, self.key)
        record = found.record
        if record is None:
            return None
        mine = self.scope.paid_for(record)
        if not (mine or self.scope.reuse_outputs):
            return None
        error = CometAPIError.from_dict(record["error"])
        judged_by_drift = record["error"]["type"] == CometAPIQualityError.__name__
        if self._same_options(record) or not judged_by_drift:
            self.log.warning("Edit of %s was refused before: %s", self.label, error)
            reused = ItemResult.reused_from(self.label, record, paid=mine)
            checks = list(record.get("checks") or [])
            return self._known(
                replace(reused, outputs=[], checks=checks, error=error.to_dict(), cause=error)
            )
        assert self.raw is not None
        self.log.item(
            "Judging the kept outputs of %s again under the new mask options; nothing is sent",
            self.label,
        )
        kept = [storage_path(uri, self.rejected.conn_id).read_bytes() for uri in record["outputs"]]
        judged = self.finish(masking.raw_outcome(record, kept, self.raw))
        return replace(judged, paid=mine, reused=True)

    def _claim(self) -> ItemResult | None:
        """Take the edit's claim. While another task instance holds it, wait for that one's
        manifest and reuse its outputs once they arrive (or take the claim once it is freed
        or expires)."""
        assert self.sink is not None
        waiting = False
        while holder := claims.take(self.sink, self.key, self.scope.payer(), self.scope.is_me):
            if not waiting:
                self.log.waiting(
                    "Waiting for %s: task instance %s is editing it", self.label, holder["owner"]
                )
                waiting = True
            claims.pause()
            settled = self._look_up() or self._refused_before()
            if settled is not None:
                return settled
        self.claimed = True
        return None

    def _deliver(self, parked: Mapping[str, Any]) -> ItemResult:
        """Write the images an earlier try paid for but could not write: nothing is sent."""
        assert self.sink is not None
        self.log.item(
            "Delivering the %d image(s) of %s paid for in an earlier try (request %s); "
            "nothing paid now",
            len(parked["images"]),
            self.label,
            parked["request_id"],
        )
        written = []
        sink = self.raw or self.sink
        for slot, image in enumerate(parked["images"]):
            data = base64.b64decode(image["b64"])
            writer = sink.open_writer(slot, image["mime_type"])
            writer.write(data)
            writer.close()
            written.append(WrittenImage(slot, image["mime_type"], len(data)))
        outcome = EditOutcome(0, dict(parked["usage"]), parked["request_id"], written)
        return self.finish(outcome)

    def _reuse(self, manifest: dict[str, Any], *, paid: bool) -> ItemResult:
        whose = "an earlier try of this task" if paid else "an earlier run"
        self.log.item(
            "Reusing the outputs of %s from %s (request %s); nothing paid now",
            self.label,
            whose,
            manifest.get("request_id"),
        )
        return self._known(ItemResult.reused_from(self.label, manifest, paid=paid))

    def _check_nothing_in_the_way(self, targets: list[str]) -> None:
        """Refuse, before paying, output names that hold an object this edit may not replace.

        :param targets: the output names the edit expects (its ``output_format``, ``n``).
        """
        assert self.sink is not None
        if self.scope.replace:
            return
        for target in targets:
            path = storage_path(target, self.sink.conn_id)
            if str(path) not in self.replaceable and path.exists():
                raise CometAPIOutputConflictError(
                    f"{path} already exists and is not an output of this edit (no manifest "
                    "proves it); nothing was paid for. Give each task or run its own "
                    "output_path (template it with {{ run_id }} or the task id), or pass "
                    "replace=True to overwrite it on purpose."
                )

    def send(self, run_edit: Callable[..., Any]) -> Any:
        """The item's request, sent by a transport's ``run_edit`` (an outcome, or awaitable)."""
        assert self.request is not None
        assert self.sink is not None
        key = self.scope.idempotency_key(self.key)
        sink = self.raw or self.sink
        return run_edit(self.request, sink, idempotency_key=key, label=self.label)

    def finish(self, outcome: EditOutcome) -> ItemResult:
        """Record the edit in its manifest, then move the streamed outputs into place.

        The manifest goes first, so that outputs at their final names are always proven by one,
        even when the task is killed between the two steps; until every output matches it, the
        manifest proves nothing, and an edit whose outputs never all landed is done again.
        """
        assert self.sink is not None
        checks: list[dict[str, Any]] = []
        if self.raw is not None:
            assert self.request is not None
            try:
                written, checked = masking.check_and_write(
                    self.raw, outcome, self.request, self.params, self.sink
                )
            except CometAPIBadResponseError as exc:
                return self._refuse(outcome, [], exc)
            masking.log_checked(checked, outcome, self.label, self.log)
            if masking.over_limit(checked, self.params.max_outside_mask_drift):
                self.sink.discard()
                return self._refuse(outcome, checked)
            outcome = written
            checks = masking.checks_of(checked, self.sink.targets, rejected=False)
        result = self._known(ItemResult.edited(self.label, self.sink.targets, outcome))
        result = replace(result, checks=checks) if checks else result
        record = self._manifest(result, self.sink)
        try:
            manifests.save(self.sink, self.key, record)
        except Exception as exc:  # the outputs can still be delivered; a rerun would refuse them
            self.log.warning("Could not write the manifest of %s: %s", self.label, exc)
        try:
            outputs = self.sink.commit(self.replaceable)
        except Exception as exc:  # commit() has removed, or kept and named, what it staged
            return self.failed(exc, outcome)  # a masked edit's raw outputs are parked
        if self.raw is not None:
            self.raw.close()
        self._release()
        for uri in outputs:
            self.log.item("Wrote %s", uri)
        return result

    def _manifest(self, result: ItemResult, sink: StagedOutputs) -> dict[str, Any]:
        """The manifest of an edit whose outputs are staged in ``sink``: the result, the files,
        who paid, and a masked edit's options."""
        return {
            **result.manifest_record(),
            "files": sink.files(),
            "paid_by": self.scope.payer(),
            **({"masking": masking.options_of(self.params)} if self.raw is not None else {}),
        }

    def _refuse(
        self,
        outcome: EditOutcome,
        checked: list[Any],
        problem: CometAPIBadResponseError | None = None,
    ) -> ItemResult:
        """Keep a paid edit's outputs, as the model sent them, under ``rejected/`` with a
        manifest of the verdict (saved before the outputs move in, as ``finish`` does), and
        fail the item: over the allowed drift, or ``problem`` (an output that cannot be
        decoded). Storage failing this parks the outputs for a later try."""
        assert self.rejected is not None
        assert self.raw is not None
        kept = self.rejected
        try:
            masking.stage_raw(self.raw, outcome, kept)
            checks = masking.checks_of(checked, kept.targets, rejected=True) if checked else []
            if problem is not None:
                error: CometAPIError = masking.undecodable_error(problem, kept.targets, self.label)
            else:
                limit = self.params.max_outside_mask_drift
                assert limit is not None
                error = masking.quality_error(checks, limit, self.label)
            refused = ItemResult.failed(self.label, error, outcome)
            record = {
                **self._manifest(refused, kept),
                "outputs": kept.targets,
                "checks": checks,
                "error": error.to_dict(),
            }
            manifests.save(kept, self.key, record)
            kept.commit()
        except Exception as exc:
            kept.discard()
            return self.failed(exc, outcome)
        self.abandon()
        self.log.warning("Edit of %s failed: %s", self.label, error)
        return self._known(replace(refused, checks=checks))

    def failed(self, error: BaseException, outcome: EditOutcome | None = None) -> ItemResult:
        """Leave nothing staged, log the failure, and record it: with its bill if the edit was
        paid for, and then with its images (as the model sent them) unless another writer's
        conflict kept them."""
        keep = outcome is not None and not isinstance(error, CometAPIOutputConflictError)
        kept_by = self.raw if self.raw is not None else self.sink
        parked = kept_by.kept_images() if keep and kept_by is not None else []
        self.abandon()
        self.log.warning("Edit of %s failed: %s", self.label, error)
        result = self._known(ItemResult.failed(self.label, error, outcome))
        return replace(result, parked=parked) if parked else result

    def _known(self, result: ItemResult) -> ItemResult:
        """The result with the edit's fingerprint, once the inputs were read."""
        return replace(result, fingerprint=self.key) if self.key else result

    def abandon(self) -> None:
        """Remove whatever was staged and free the claim (best effort)."""
        if self.sink is not None:
            self.sink.discard()
        if self.raw is not None:
            self.raw.close()
        self._release()

    def _release(self) -> None:
        if self.claimed and self.sink is not None:
            claims.release(self.sink, self.key)
            self.claimed = False


def fingerprint(request: EditRequest, plan: ItemPlan) -> str:
    """sha256 over the input bytes, the mask, every sent field and where the outputs go (the
    output path, map index and item id: never the item's place in a batch). What is done to a
    masked edit's outputs is not part of it: changing that is not a new edit to pay for."""
    digest = hashlib.sha256()
    for part in [*request.images, *([request.mask] if request.mask else [])]:
        digest.update(len(part.data).to_bytes(8, "big"))
        digest.update(part.data)
    where = {
        "output_path": plan.output_path,
        "output_conn_id": plan.output_conn_id,
        "map_index": plan.map_index,
        "item": plan.item,
    }
    digest.update(json.dumps([request.fields, where], sort_keys=True).encode())
    return digest.hexdigest()
