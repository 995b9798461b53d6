"""What Rowback does about a suspect write, per table, from the user's ``rowback.toml``.

The file sets ``[defaults]``, then overrides per schema (``[schemas.audit]``) and per table
(``[tables."public.products"]``); each field falls back on its own, table > schema >
defaults. ``decide`` turns a detector's calibrated score and severity into an action and
the status of the incident it opens. Everything here is pure except ``load_policy``,
which reads the file; every mistake in it is one line naming file, line and key.

>>> policy = parse_policy('[tables."public.products"]\\naction = "auto_revert"\\n')
>>> decide(policy, "public.products", 0.95, Severity.high, replay=False)
Decision(action=<Action.auto_revert: 'auto_revert'>, status=<Status.reverting: 'reverting'>, \
why='score 0.95 > 0.8 and severity high >= medium: public.products reverts automatically')
>>> decide(policy, "public.orders", 0.5, Severity.high, replay=False).action
<Action.none: 'none'>
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import NoReturn, TypeVar

from rowback.errors import ConfigError
from rowback.tomllines import KeyPath, find_line, format_key, key_at

__all__ = [
    "Action",
    "Decision",
    "Maintenance",
    "Override",
    "Policy",
    "Severity",
    "Status",
    "TablePolicy",
    "Webhook",
    "decide",
    "expired",
    "in_maintenance",
    "load_policy",
    "parse_duration",
    "parse_policy",
]

T = TypeVar("T")


class Severity(IntEnum):
    """How bad a finding is; ordered, so ``min_severity`` is a simple comparison."""

    low = 1
    medium = 2
    high = 3
    critical = 4

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)  # f"{s}" says "high", as str() does, not "3"


class Action(StrEnum):
    """What to do about a finding; ``none`` only ever comes out of ``decide``."""

    auto_revert = "auto_revert"
    """Revert at once, without asking."""
    confirm = "confirm"
    """Plan the revert and wait for a person to confirm it."""
    alert_only = "alert_only"
    """Tell people; revert nothing."""
    none = "none"
    """Below the threshold or the minimum severity: record, do nothing."""


POLICY_ACTIONS = (Action.auto_revert, Action.confirm, Action.alert_only)
"""The actions a policy file may name."""


class Status(StrEnum):
    """The status an incident starts in."""

    open = "open"
    pending_confirmation = "pending_confirmation"
    reverting = "reverting"


@dataclass(frozen=True)
class TablePolicy:
    """The policy for one table, every field resolved."""

    action: Action = Action.alert_only
    threshold: float = 0.8
    """A calibrated score in [0, 1]; a finding must score above it."""
    min_severity: Severity = Severity.medium
    """A finding must be at least this severe."""
    confirm_expires: timedelta = timedelta(hours=1)
    """How long a revert waits for confirmation before it lapses."""
    critical: bool = False
    """Never revert without a person: every finding asks for confirmation."""


@dataclass(frozen=True)
class Override:
    """One ``[defaults]``, ``[schemas.*]`` or ``[tables.*]`` section: None is "not set"."""

    action: Action | None = None
    threshold: float | None = None
    min_severity: Severity | None = None
    confirm_expires: timedelta | None = None
    critical: bool | None = None

    def over(self, base: TablePolicy) -> TablePolicy:
        """``base`` with the fields this section sets replaced."""
        return TablePolicy(
            action=base.action if self.action is None else self.action,
            threshold=base.threshold if self.threshold is None else self.threshold,
            min_severity=base.min_severity if self.min_severity is None else self.min_severity,
            confirm_expires=(
                base.confirm_expires if self.confirm_expires is None else self.confirm_expires
            ),
            critical=base.critical if self.critical is None else self.critical,
        )


@dataclass(frozen=True)
class Maintenance:
    """A daily UTC window in which writes are neither learned from nor alerted on.

    A window may cross midnight (``start = "23:00"``, ``end = "01:00"``); ``days`` then
    names the day it starts on, so Saturday's window still covers 00:30 on Sunday.
    """

    start: time
    end: time
    tables: tuple[str, ...] | None = None
    """Qualified table names; None means every table."""
    days: frozenset[int] | None = None
    """Weekdays the window starts on, Monday = 0; None means every day."""

    def covers(self, table: str, at: datetime) -> bool:
        """Whether ``table`` is in this window at ``at`` (timezone-aware)."""
        if self.tables is not None and _qualified(table) not in self.tables:
            return False
        if at.tzinfo is None:
            raise ValueError("a maintenance check needs a timezone-aware time")
        at = at.astimezone(UTC)
        now, weekday = at.time().replace(tzinfo=None), at.weekday()
        if self.start < self.end:
            inside, start_day = self.start <= now < self.end, weekday
        elif now >= self.start:
            inside, start_day = True, weekday
        else:
            inside, start_day = now < self.end, (weekday - 1) % 7
        return inside and (self.days is None or start_day in self.days)


@dataclass(frozen=True)
class Webhook:
    """Where alerts are POSTed; ``secret_env`` names the variable holding the HMAC secret."""

    url: str
    secret_env: str | None = None


@dataclass(frozen=True)
class Policy:
    """The whole policy file, parsed and checked."""

    defaults: TablePolicy = TablePolicy()
    schemas: Mapping[str, Override] = field(default_factory=dict)
    tables: Mapping[str, Override] = field(default_factory=dict)
    """Keyed by qualified name, ``public.products``."""
    maintenance: tuple[Maintenance, ...] = ()
    webhooks: tuple[Webhook, ...] = ()

    @classmethod
    def default(cls) -> Policy:
        """The policy when there is no file: alert only, threshold 0.8, medium and up."""
        return cls()

    def for_table(self, table: str) -> TablePolicy:
        """The resolved policy of ``table`` (``schema.table``; a bare name is in public).

        >>> p = parse_policy('[schemas.audit]\\nthreshold = 0.9\\n'
        ...                  '[tables."audit.log"]\\naction = "confirm"\\n')
        >>> t = p.for_table("audit.log")
        >>> t.action, t.threshold, t.min_severity
        (<Action.confirm: 'confirm'>, 0.9, <Severity.medium: 2>)
        """
        qualified = _qualified(table)
        resolved = self.defaults
        schema = self.schemas.get(qualified.split(".", 1)[0])
        if schema is not None:
            resolved = schema.over(resolved)
        own = self.tables.get(qualified)
        return resolved if own is None else own.over(resolved)


@dataclass(frozen=True)
class Decision:
    """What to do about one finding, the status of its incident, and why in one line."""

    action: Action
    status: Status
    why: str


_STATUS = {
    Action.auto_revert: Status.reverting,
    Action.confirm: Status.pending_confirmation,
    Action.alert_only: Status.open,
}


def decide(policy: Policy, table: str, score: float, severity: Severity, replay: bool) -> Decision:
    """Decide what to do about a finding on ``table``.

    A finding acts when its score is strictly above the threshold (a score equal to it is
    what the detectors still learn from) and its severity is at least ``min_severity``
    (so ``min_severity = "high"`` includes high). A critical table always asks for
    confirmation, even under ``alert_only``. In replay there is no database to revert, so
    ``auto_revert`` becomes ``confirm``. A NaN score never acts.
    """
    p = policy.for_table(table)
    if not score > p.threshold:
        why = f"score {score:.4g} is not above the threshold {p.threshold:g} for {table}"
        return Decision(Action.none, Status.open, why)
    if severity < p.min_severity:
        why = f"severity {severity} is below the minimum {p.min_severity} for {table}"
        return Decision(Action.none, Status.open, why)
    met = f"score {score:.4g} > {p.threshold:g} and severity {severity} >= {p.min_severity}"
    if p.critical:
        why = f"{met}: {table} is critical, so a person confirms any revert"
        return Decision(Action.confirm, Status.pending_confirmation, why)
    if p.action is Action.auto_revert and replay:
        why = f"{met}: replay has no database to revert, so auto_revert waits for confirmation"
        return Decision(Action.confirm, Status.pending_confirmation, why)
    why = {
        Action.auto_revert: f"{met}: {table} reverts automatically",
        Action.confirm: f"{met}: {table} reverts once a person confirms",
        Action.alert_only: f"{met}: {table} is alert only",
    }[p.action]
    return Decision(p.action, _STATUS[p.action], why)


def expired(created_at: datetime, now: datetime, policy: Policy, table: str) -> bool:
    """Whether a confirmation pending since ``created_at`` has outlived ``confirm_expires``."""
    return now - created_at >= policy.for_table(table).confirm_expires


def in_maintenance(policy: Policy, table: str, at: datetime) -> bool:
    """Whether any maintenance window covers ``table`` at ``at`` (timezone-aware)."""
    return any(window.covers(table, at) for window in policy.maintenance)


def _qualified(table: str) -> str:
    return table if "." in table else f"public.{table}"


# --- reading the file -------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE_KEYS = ("action", "threshold", "min_severity", "confirm_expires", "critical")
_TOP_KEYS = ("defaults", "tables", "schemas", "maintenance", "webhooks")
_WINDOW_KEYS = ("tables", "start", "end", "days")
_WEBHOOK_KEYS = ("url", "secret_env")
_SYNTAX_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_duration(text: str) -> timedelta:
    """A duration such as ``90s``, ``30m``, ``1h``, ``2d`` or ``1h30m``.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 1h or 2d")
    seconds = sum(int(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))
    if seconds == 0:
        raise ValueError(f"{text!r} is zero; a duration must be longer than that")
    return timedelta(seconds=seconds)


def load_policy(path: Path) -> Policy:
    """Read and check a policy file; any mistake raises a one-line ``ConfigError``."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(str(path), None, "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), None, "", f"not UTF-8 text ({e.reason})") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "rowback.toml") -> Policy:
    """Parse policy TOML ``text``; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(e, text, source) from None
    return _Reader(text, source).policy(data)


def _syntax_error(e: tomllib.TOMLDecodeError, text: str, source: str) -> ConfigError:
    message = str(e)
    at = _SYNTAX_AT.search(message)
    if at is None:
        last = len(text.splitlines()) or None  # "at end of document": point at the end
        what = message.removesuffix(" (at end of document)")
        return ConfigError(source, last, "", f"TOML syntax: {what} at the end of the file")
    line, column = int(at.group(1)), at.group(2)
    what = message[: at.start()]
    return ConfigError(
        source, line, format_key(key_at(text, line)), f"TOML syntax: {what} (column {column})"
    )


class _Bad(Exception):
    """A value is wrong; the reader adds where."""


class _Reader:
    """Checks parsed TOML against the policy's shape; knows the text to name lines."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        line = find_line(self.text, path) if path else None
        raise ConfigError(self.source, line, format_key(path), message)

    def table(self, path: KeyPath, raw: object, allowed: tuple[str, ...]) -> dict[str, object]:
        """``raw`` as a table whose keys are all in ``allowed`` (a typo is an error)."""
        raw = self.mapping(path, raw)
        for key in raw:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.fail((*path, key), f"unknown key{hint}; expected {', '.join(allowed)}")
        return raw

    def value(
        self, path: KeyPath, table: dict[str, object], key: str, convert: Callable[[object], T]
    ) -> T | None:
        """``table[key]`` converted, None when absent."""
        if key not in table:
            return None
        try:
            return convert(table[key])
        except _Bad as e:
            self.fail((*path, key), str(e))

    def required(
        self, path: KeyPath, table: dict[str, object], key: str, convert: Callable[[object], T]
    ) -> T:
        got = self.value(path, table, key, convert)
        if got is None:
            self.fail((*path, key), "missing")
        return got

    def policy(self, data: dict[str, object]) -> Policy:
        top = self.table((), data, _TOP_KEYS)
        defaults = self.override(("defaults",), top.get("defaults", {}))
        return Policy(
            defaults=defaults.over(TablePolicy()),
            schemas=self.schemas(top.get("schemas", {})),
            tables=self.tables(top.get("tables", {})),
            maintenance=tuple(
                self.window(("maintenance", i), raw)
                for i, raw in enumerate(self.array(("maintenance",), top.get("maintenance", [])))
            ),
            webhooks=tuple(
                self.webhook(("webhooks", i), raw)
                for i, raw in enumerate(self.array(("webhooks",), top.get("webhooks", [])))
            ),
        )

    def mapping(self, path: KeyPath, raw: object) -> dict[str, object]:
        if not isinstance(raw, dict):
            self.fail(path, f"expected a table, got {raw!r}")
        return raw

    def schemas(self, raw: object) -> dict[str, Override]:
        out: dict[str, Override] = {}
        for name, section in self.mapping(("schemas",), raw).items():
            if "." in name:
                self.fail(("schemas", name), "a schema name has no dot; tables go under [tables]")
            out[name] = self.override(("schemas", name), section)
        return out

    def tables(self, raw: object) -> dict[str, Override]:
        out: dict[str, Override] = {}
        for name, section in self.mapping(("tables",), raw).items():
            if "." not in name:
                inner = next(iter(section), "table") if isinstance(section, dict) else "table"
                self.fail(
                    ("tables", name),
                    f'name tables as schema.table, quoted: [tables."{name}.{inner}"]',
                )
            out[name] = self.override(("tables", name), section)
        return out

    def array(self, path: KeyPath, raw: object) -> list[object]:
        if not isinstance(raw, list):
            self.fail(path, f"expected an array of tables, written [[{format_key(path)}]]")
        return raw

    def override(self, path: KeyPath, raw: object) -> Override:
        t = self.table(path, raw, _RULE_KEYS)
        return Override(
            action=self.value(path, t, "action", _action),
            threshold=self.value(path, t, "threshold", _threshold),
            min_severity=self.value(path, t, "min_severity", _severity),
            confirm_expires=self.value(path, t, "confirm_expires", _duration),
            critical=self.value(path, t, "critical", _bool),
        )

    def window(self, path: KeyPath, raw: object) -> Maintenance:
        t = self.table(path, raw, _WINDOW_KEYS)
        start = self.required(path, t, "start", _time)
        end = self.required(path, t, "end", _time)
        if start == end:
            self.fail((*path, "end"), "equals start; a window needs a length")
        return Maintenance(
            start=start,
            end=end,
            tables=self.value(path, t, "tables", _table_names),
            days=self.value(path, t, "days", _days),
        )

    def webhook(self, path: KeyPath, raw: object) -> Webhook:
        t = self.table(path, raw, _WEBHOOK_KEYS)
        return Webhook(
            url=self.required(path, t, "url", _url),
            secret_env=self.value(path, t, "secret_env", _env_name),
        )


def _one_of(value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _Bad(f"{value!r} is not one of {', '.join(choices)}")
    return value


def _action(value: object) -> Action:
    return Action(_one_of(value, tuple(POLICY_ACTIONS)))


def _severity(value: object) -> Severity:
    return Severity[_one_of(value, tuple(s.name for s in Severity))]


def _threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"expected a number from 0 to 1, got {value!r}")
    if math.isnan(value) or not 0 <= value <= 1:
        raise _Bad(f"{value!r} is outside 0-1 (a calibrated score)")
    return float(value)


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise _Bad(f"expected a duration like 90s, 30m, 1h or 2d, got {value!r}")
    try:
        return parse_duration(value)
    except ValueError as e:
        raise _Bad(str(e)) from None


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {value!r}")
    return value


def _time(value: object) -> time:
    """A UTC time of day: ``"02:00"`` or a TOML local time (``02:00:00``)."""
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d\d:\d\d", value):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise _Bad(f'{value!r} is not a UTC time of day like "02:00"')


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"expected a list of {what}, got {value!r}")
    return [str(v) for v in value]


def _table_names(value: object) -> tuple[str, ...]:
    names = _strings(value, 'table names ("public.orders")')
    for name in names:
        if "." not in name:
            raise _Bad(f'{name!r} is not schema.table (write "public.{name}")')
    return tuple(names)


def _days(value: object) -> frozenset[int]:
    days = _strings(value, f"days ({', '.join(_DAYS)})")
    for day in days:
        _one_of(day.lower(), _DAYS)
    return frozenset(_DAYS.index(day.lower()) for day in days)


def _url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"https?://[^/\s]+", value):
        raise _Bad(f"{value!r} is not an http:// or https:// URL")
    return value


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise _Bad(f"{value!r} is not an environment variable name")
    return value
