"""The policy file: parsing, one-line errors, table > schema > defaults, and decisions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from rowback.errors import ConfigError, RowbackError
from rowback.policy import (
    Action,
    Maintenance,
    Policy,
    Severity,
    Status,
    TablePolicy,
    Webhook,
    decide,
    expired,
    in_maintenance,
    load_policy,
    parse_duration,
    parse_policy,
)

EXAMPLE = """\
[defaults]
action = "alert_only"        # auto_revert | confirm | alert_only
threshold = 0.8              # calibrated score, 0-1
min_severity = "medium"      # low | medium | high | critical
confirm_expires = "1h"

[tables."public.products"]
action = "auto_revert"

[tables."public.payments"]
critical = true              # always confirm

[schemas.audit]              # optional: applies to every table of schema audit
action = "alert_only"

[[maintenance]]              # optional: windows that are not learned from and do not alert
tables = ["public.orders"]   # optional, default all
start = "02:00"              # UTC, daily
end = "03:00"
days = ["sat", "sun"]        # optional, default every day

[[webhooks]]
url = "https://ops.example/rowback"
secret_env = "ROWBACK_WEBHOOK_SECRET"
"""


@pytest.fixture
def example(tmp_path: Path) -> Policy:
    path = tmp_path / "rowback.toml"
    path.write_text(EXAMPLE)
    return load_policy(path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rowback.toml"
    path.write_text(text)
    return path


# --- parsing -----------------------------------------------------------------------------


def test_example_file_parses_into_every_section(example: Policy) -> None:
    assert example.defaults == TablePolicy(
        Action.alert_only, 0.8, Severity.medium, timedelta(hours=1), critical=False
    )
    assert example.for_table("public.products").action is Action.auto_revert
    assert example.for_table("public.payments").critical is True
    assert example.for_table("audit.log").action is Action.alert_only
    assert example.maintenance == (
        Maintenance(time(2), time(3), tables=("public.orders",), days=frozenset({5, 6})),
    )
    assert example.webhooks == (Webhook("https://ops.example/rowback", "ROWBACK_WEBHOOK_SECRET"),)


def test_each_field_falls_back_on_its_own() -> None:
    policy = parse_policy(
        """
        [defaults]
        threshold = 0.7
        confirm_expires = "2d"
        [schemas.shop]
        action = "confirm"
        min_severity = "high"
        [tables."shop.items"]
        min_severity = "low"
        """
    )
    assert policy.for_table("shop.items") == TablePolicy(
        Action.confirm, 0.7, Severity.low, timedelta(days=2), critical=False
    )
    assert policy.for_table("shop.carts").min_severity is Severity.high
    assert policy.for_table("public.other") == TablePolicy(
        Action.alert_only, 0.7, Severity.medium, timedelta(days=2)
    )


def test_a_bare_table_name_is_in_public(example: Policy) -> None:
    assert example.for_table("products").action is Action.auto_revert


def test_no_file_means_the_default_policy() -> None:
    assert Policy.default() == parse_policy("")
    assert Policy.default().for_table("public.x") == TablePolicy()


def test_severity_is_ordered_and_prints_its_name() -> None:
    assert Severity.low < Severity.medium < Severity.high < Severity.critical
    assert f"{Severity.high}" == str(Severity.high) == "high"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1h30m", 5400)],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "1", "h", "1 h", "1w", "0s", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --- errors: one line naming file, line and key -------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        pytest.param(
            EXAMPLE.replace('action = "auto_revert"', 'action = "autorevert"'),
            8,
            'tables."public.products".action',
            "'autorevert' is not one of auto_revert, confirm, alert_only",
            id="bad-action",
        ),
        pytest.param(
            EXAMPLE.replace("threshold = 0.8", "threshold = 1.5"),
            3,
            "defaults.threshold",
            "1.5 is outside 0-1",
            id="threshold-above-1",
        ),
        pytest.param(
            "[schemas.audit]\nthreshold = -0.1\n",
            2,
            "schemas.audit.threshold",
            "-0.1 is outside 0-1",
            id="threshold-below-0",
        ),
        pytest.param(
            '[defaults]\nthreshold = "high"\n',
            2,
            "defaults.threshold",
            "expected a number from 0 to 1",
            id="threshold-not-a-number",
        ),
        pytest.param(
            EXAMPLE.replace("critical = true", "critcal = true"),
            11,
            'tables."public.payments".critcal',
            "unknown key (did you mean critical?)",
            id="unknown-key",
        ),
        pytest.param(
            EXAMPLE + "\n[alerts]\nurl = 1\n",
            26,
            "alerts",
            "unknown key",
            id="unknown-section",
        ),
        pytest.param(
            EXAMPLE.replace('end = "03:00"', 'end = "3am"'),
            19,
            "maintenance[0].end",
            "'3am' is not a UTC time of day",
            id="bad-time",
        ),
        pytest.param(
            EXAMPLE.replace('"sat", "sun"', '"sat", "sunday"'),
            20,
            "maintenance[0].days",
            "'sunday' is not one of mon",
            id="bad-day",
        ),
        pytest.param(
            EXAMPLE.replace('confirm_expires = "1h"', 'confirm_expires = "1 hour"'),
            5,
            "defaults.confirm_expires",
            "not a duration",
            id="bad-duration",
        ),
        pytest.param(
            '[tables.public.products]\naction = "confirm"\n',
            1,
            "tables.public",
            '[tables."public.products"]',
            id="unquoted-table-name",
        ),
        pytest.param(
            '[[webhooks]]\nsecret_env = "X"\n',
            1,
            "webhooks[0].url",
            "missing",
            id="webhook-without-url",
        ),
        pytest.param(
            '[[webhooks]]\nurl = "https://a"\n[[webhooks]]\nurl = "ops.example"\n',
            4,
            "webhooks[1].url",
            "not an http:// or https:// URL",
            id="second-webhook",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, says: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert says in message
    assert (caught.value.line, caught.value.key) == (line, key)


def test_a_toml_syntax_error_names_its_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace('action = "auto_revert"', "action = auto_revert"))
    with pytest.raises(RowbackError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f'{path}:8: tables."public.products".action: TOML syntax: ')
    assert "column" in message


def test_a_toml_error_at_the_end_points_at_the_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\naction = """confirm\n')
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}:2: TOML syntax: Unterminated string"
    ):
        load_policy(path)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        load_policy(tmp_path / "nope.toml")


# --- decisions -----------------------------------------------------------------------------

DECIDING = parse_policy(
    """
    [defaults]
    action = "alert_only"
    threshold = 0.8
    min_severity = "medium"
    [tables."public.products"]
    action = "auto_revert"
    [tables."public.orders"]
    action = "confirm"
    [tables."public.payments"]
    action = "auto_revert"
    critical = true
    [tables."public.ledger"]
    critical = true
    [schemas.audit]
    threshold = 0.5
    min_severity = "high"
    """
)

AUTO, CONF, ALERT, NONE = Action.auto_revert, Action.confirm, Action.alert_only, Action.none
REV, PEND, OPEN = Status.reverting, Status.pending_confirmation, Status.open
LOW, MED, HIGH, CRIT = Severity.low, Severity.medium, Severity.high, Severity.critical


@pytest.mark.parametrize(
    ("table", "score", "severity", "replay", "action", "status", "why"),
    [
        # the action of each table when the finding clears the bar
        ("public.products", 0.95, HIGH, False, AUTO, REV, "reverts automatically"),
        ("public.orders", 0.95, HIGH, False, CONF, PEND, "once a person confirms"),
        ("public.other", 0.95, HIGH, False, ALERT, OPEN, "alert only"),
        # score: strictly above the threshold
        ("public.products", 0.80, HIGH, False, NONE, OPEN, "not above the threshold 0.8"),
        ("public.products", 0.8001, HIGH, False, AUTO, REV, "score 0.8001 > 0.8"),
        ("public.products", 0.10, CRIT, False, NONE, OPEN, "not above"),
        ("public.products", float("nan"), CRIT, False, NONE, OPEN, "not above"),
        # severity: at least the minimum
        ("public.products", 0.95, MED, False, AUTO, REV, "severity medium >= medium"),
        ("public.products", 0.95, LOW, False, NONE, OPEN, "below the minimum medium"),
        # critical tables always confirm, whatever their action
        ("public.payments", 0.99, CRIT, False, CONF, PEND, "critical"),
        ("public.ledger", 0.99, CRIT, False, CONF, PEND, "critical"),
        ("public.payments", 0.50, CRIT, False, NONE, OPEN, "not above"),
        # replay cannot revert: auto_revert waits; other actions are unchanged
        ("public.products", 0.95, HIGH, True, CONF, PEND, "replay"),
        ("public.orders", 0.95, HIGH, True, CONF, PEND, "once a person confirms"),
        ("public.other", 0.95, HIGH, True, ALERT, OPEN, "alert only"),
        # the schema's threshold and minimum apply to its tables
        ("audit.log", 0.6, HIGH, False, ALERT, OPEN, "0.6 > 0.5"),
        ("audit.log", 0.6, MED, False, NONE, OPEN, "below the minimum high"),
    ],
)
def test_decide(
    table: str,
    score: float,
    severity: Severity,
    replay: bool,
    action: Action,
    status: Status,
    why: str,
) -> None:
    decision = decide(DECIDING, table, score, severity, replay)
    assert (decision.action, decision.status) == (action, status)
    assert why in decision.why
    assert "\n" not in decision.why


# --- expiry and maintenance ----------------------------------------------------------------


def test_a_pending_confirmation_expires_after_its_tables_duration() -> None:
    policy = parse_policy(
        '[defaults]\nconfirm_expires = "30m"\n[tables."a.b"]\nconfirm_expires = "2d"\n'
    )
    created = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert not expired(created, created + timedelta(minutes=29), policy, "public.x")
    assert expired(created, created + timedelta(minutes=30), policy, "public.x")
    assert not expired(created, created + timedelta(days=1), policy, "a.b")
    assert expired(created, created + timedelta(days=2, seconds=1), policy, "a.b")


NIGHTLY = parse_policy(
    """
    [[maintenance]]
    tables = ["public.orders"]
    start = "02:00"
    end = "03:00"
    days = ["sat", "sun"]
    [[maintenance]]
    start = "23:30"
    end = "00:30"
    days = ["fri"]
    """
)
MON, FRI, SAT, SUN = 0, 4, 5, 6


@pytest.mark.parametrize(
    ("table", "day", "hour", "minute", "inside"),
    [
        ("public.orders", SAT, 2, 0, True),  # start is inside
        ("public.orders", SUN, 2, 59, True),
        ("public.orders", SAT, 3, 0, False),  # end is outside
        ("public.orders", MON, 2, 30, False),  # not one of its days
        ("public.items", SAT, 2, 30, False),  # not one of its tables
        ("public.items", FRI, 23, 30, True),  # the second window covers every table
        ("public.orders", SAT, 0, 15, True),  # Friday's window, after midnight on Saturday
        ("public.orders", SAT, 0, 30, False),
        ("public.orders", SAT, 23, 45, False),  # starts on Friday only
        ("public.orders", FRI, 0, 15, False),  # that would be Thursday's window
    ],
)
def test_in_maintenance(table: str, day: int, hour: int, minute: int, inside: bool) -> None:
    at = datetime(2026, 11, 30, hour, minute, tzinfo=UTC) + timedelta(days=day)
    assert at.weekday() == day
    assert in_maintenance(NIGHTLY, table, at) is inside


def test_maintenance_reads_other_zones_as_utc() -> None:
    from zoneinfo import ZoneInfo

    at = datetime(2026, 12, 5, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))  # 02:30 UTC, Saturday
    assert in_maintenance(NIGHTLY, "public.orders", at)


def test_a_window_accepts_toml_times_and_every_day_by_default() -> None:
    policy = parse_policy("[[maintenance]]\nstart = 22:00:00\nend = 06:00:00\n")
    assert policy.maintenance == (Maintenance(time(22), time(6)),)
    assert in_maintenance(policy, "any.table", datetime(2026, 12, 2, 5, 59, tzinfo=UTC))
    assert not in_maintenance(policy, "any.table", datetime(2026, 12, 2, 6, 0, tzinfo=UTC))
