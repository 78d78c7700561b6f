"""Fault specs: parsing, ``times=N`` counting and seeded random faults.

A spec is ``;``-separated ``key=value`` items, a bare key meaning true, e.g.
``status=429;retry_after=2``, ``status=503;times=2``, ``hang``, ``truncate``, ``reset``,
``malformed_json``, ``html;status=502``, ``latency=1.5``, ``after_requests=8;status=400``.

``reset`` closes the connection with a TCP RST instead of answering (recorded as status 444,
nginx's code for a connection closed without an answer).

By default a fault replaces the edit: nothing is billed. With ``billed`` (e.g. ``truncate;billed``,
``status=502;billed``) the emulator first does the edit and records it as billed, exactly as a
successful one (and, when it honours ``Idempotency-Key``, keeps the answer to replay), and then
loses the answer as the fault says: a truncated copy of the real body, a hang, a reset, malformed
JSON, or the error status, as a proxy that lost the gateway's answer would. ``billed`` needs one
of those faults. A request the emulator refuses (400) is refused as usual, unbilled.

A file fault gives a spec to the requests that upload one named image; see :class:`FileFaults`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

HANG_SECONDS = 300.0
"""How long a bare ``hang`` waits before giving up."""

_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_KEYS = (
    "status",
    "retry_after",
    "retry_after_ms",
    "retry_after_date",
    "should_retry",
    "times",
    "hang",
    "truncate",
    "reset",
    "malformed_json",
    "html",
    "latency",
    "after_requests",
    "billed",
)


@dataclass(frozen=True)
class FaultSpec:
    """A parsed fault; equal specs share one ``times`` counter whatever their spelling."""

    text: str = field(compare=False)
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    retry_after_date: float | None = None
    should_retry: bool | None = None
    times: int | None = None
    hang: float | None = None
    truncate: bool = False
    reset: bool = False
    malformed_json: bool = False
    html: bool = False
    latency: float = 0.0
    after_requests: int | None = None
    """Answer only once this many edit requests have arrived (this one counted), as a slow
    answer would: what else a client sends meanwhile is then fixed, not left to timing."""
    billed: bool = False
    """Do and bill the edit first, then lose its answer as the rest of the fault says."""

    @property
    def answers(self) -> bool:
        """Whether the fault replaces the normal answer (latency alone does not)."""
        return bool(
            self.hang is not None
            or self.truncate
            or self.reset
            or self.malformed_json
            or self.html
            or self.status is not None
        )


def _flag(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"fault item {key!r} takes true or false, not {value!r}")


def _number(key: str, value: str, *, minimum: float = 0.0) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"fault item {key!r} takes a number, not {value!r}") from None
    if not number >= minimum:
        raise ValueError(f"fault item {key!r} must be at least {minimum:g}, got {value!r}")
    return number


def _integer(key: str, value: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"fault item {key!r} takes an integer, not {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"fault item {key!r} must be {bounds}, got {value!r}")
    return number


def _items(text: str) -> dict[str, str | None]:
    items: dict[str, str | None] = {}
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if key not in _KEYS:
            raise ValueError(f"unknown fault item {key!r}; known items: {', '.join(_KEYS)}")
        items[key] = value.strip() if sep else None
    return items


def parse_fault(text: str) -> FaultSpec:
    """Parse a fault spec such as ``status=429;retry_after=2``.

    :param text: the spec; see the module docstring for the grammar.
    :raises ValueError: the spec names an unknown item or a bad value.
    """
    items = _items(text)
    if not items:
        raise ValueError("empty fault spec")
    values: dict[str, object] = {}
    for key, value in items.items():
        if key in ("truncate", "reset", "malformed_json", "html", "should_retry", "billed"):
            values[key] = _flag(key, value or "")
        elif value is None and key == "hang":
            values[key] = HANG_SECONDS
        elif value is None or value == "":
            raise ValueError(f"fault item {key!r} needs a value, e.g. {key}=1")
        elif key == "status":
            values[key] = _integer(key, value, minimum=400, maximum=599)
        elif key in ("times", "after_requests"):
            values[key] = _integer(key, value, minimum=1)
        elif key == "retry_after_ms":
            values[key] = _integer(key, value, minimum=0)
        else:
            values[key] = _number(key, value)
    spec = FaultSpec(text=text.strip(), **values)  # type: ignore[arg-type]
    _check_combination(spec)
    return spec


def _check_combination(spec: FaultSpec) -> None:
    flags = {
        "hang": spec.hang is not None,
        "truncate": spec.truncate,
        "reset": spec.reset,
        "malformed_json": spec.malformed_json,
        "html": spec.html,
    }
    kinds = [kind for kind, on in flags.items() if on]
    if len(kinds) > 1:
        raise ValueError(f"fault items {' and '.join(kinds)} cannot be combined")
    if spec.status is not None and kinds and kinds != ["html"]:
        raise ValueError(f"fault item 'status' cannot be combined with {kinds[0]!r}")
    retry_items = (spec.retry_after, spec.retry_after_ms, spec.retry_after_date, spec.should_retry)
    if any(v is not None for v in retry_items) and spec.status is None and not spec.html:
        raise ValueError("retry_after* and should_retry need status=CODE or html")
    if spec.billed and not spec.answers:
        raise ValueError(
            "billed needs a fault that loses the answer: status=CODE, html, hang, truncate, "
            "reset or malformed_json"
        )


def parse_random_faults(value: str | Mapping[str, float] | Mapping[int, float]) -> dict[int, float]:
    """Parse random fault rates such as ``429=0.1,500=0.05`` or ``{"429": 0.1}``.

    :param value: the text or mapping of status code to probability.
    :raises ValueError: a status is not 400..599, a rate is not 0..1 or the rates add up over 1.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(value, str):
        for item in filter(None, (part.strip() for part in value.split(","))):
            status, sep, rate = item.partition("=")
            if not sep:
                raise ValueError(f"random fault {item!r} must look like STATUS=RATE, e.g. 429=0.1")
            pairs.append((status.strip(), rate.strip()))
    else:
        pairs = [(str(status), str(rate)) for status, rate in value.items()]
    rates: dict[int, float] = {}
    for status, rate in pairs:
        code = _integer("random status", status, minimum=400, maximum=599)
        probability = _number(f"rate of {code}", rate)
        if probability > 1:
            raise ValueError(f"rate of {code} must be 0..1, got {rate!r}")
        rates[code] = probability
    if sum(rates.values()) > 1:
        raise ValueError("random fault rates add up to more than 1")
    return rates


def _random_fault(status: int) -> FaultSpec:
    return parse_fault(f"status={status};retry_after=1" if status == 429 else f"status={status}")


def _stem(filename: str) -> str:
    """The file name without its last extension: ``b3.png`` -> ``b3``; ``b3`` stays ``b3``."""
    base, dot, _ = filename.rpartition(".")
    return base if dot and base else filename


class FileFaults:
    """Fault specs keyed by the file name of an uploaded image, parsed once at configuration.

    A request matches a name when one of its image parts was uploaded under exactly that file
    name or, failing any exact match, when a part's name without its last extension is the name
    (``b3`` matches ``b3.png`` and ``b3.jpeg``, for clients that change the extension to the
    real type, as the provider's hook does). Parts are tried in upload order.

    :param faults: file name to fault spec, e.g. ``{"b3.png": "status=400"}``.
    :raises ValueError: a name is empty or a spec is invalid; the message names the file.
    """

    def __init__(self, faults: Mapping[str, str]) -> None:
        parsed: dict[str, FaultSpec] = {}
        for name, text in faults.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"file fault names must be non-empty file names, got {name!r}")
            if not isinstance(text, str):
                raise ValueError(f"file fault for {name!r} must be a spec string, got {text!r}")
            try:
                parsed[name] = parse_fault(text)
            except ValueError as exc:
                raise ValueError(f"file fault for {name!r}: {exc}") from None
        self._faults = parsed

    def __bool__(self) -> bool:
        return bool(self._faults)

    def match(self, filenames: Iterable[str]) -> tuple[str, FaultSpec] | None:
        """Return the matched name and its fault for a request's image file names, or ``None``.

        :param filenames: the file names of the request's image parts, in upload order.
        """
        names = list(filenames)
        for filename in names:
            if filename in self._faults:
                return filename, self._faults[filename]
        for filename in names:
            stem = _stem(filename)
            if stem in self._faults:
                return stem, self._faults[stem]
        return None


class RandomFaults:
    """Draws a status fault per request from seeded rates, thread-safely."""

    def __init__(self, rates: Mapping[int, float], seed: int) -> None:
        self._faults = [(_random_fault(status), rate) for status, rate in sorted(rates.items())]
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def draw(self) -> FaultSpec | None:
        """Return the fault this request gets, or ``None``."""
        with self._lock:
            roll = self._rng.random()
        for spec, rate in self._faults:
            if roll < rate:
                return spec
            roll -= rate
        return None

    def reseed(self) -> None:
        """Start the random sequence again from the seed."""
        with self._lock:
            self._rng = random.Random(self._seed)


class FaultCounter:
    """Counts requests per (fault, file fault name, ``Idempotency-Key``) to honour ``times=N``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[FaultSpec, str | None, str | None], int] = {}

    def take(
        self, spec: FaultSpec, idempotency_key: str | None, file_name: str | None = None
    ) -> bool:
        """Count one request and return whether the fault still applies to it.

        :param spec: the fault the request carries.
        :param idempotency_key: the request's ``Idempotency-Key`` header, if any.
        :param file_name: the file fault's name when the fault came from one, so that equal
            specs given to two files count apart.
        """
        if spec.times is None:
            return True
        key = (spec, file_name, idempotency_key)
        with self._lock:
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        return count <= spec.times

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()
