"""Loading and validating the rule file (``default_rules.toml``).

Local policy — thresholds, intervals, severities — is data.  This module reads
it into typed objects and refuses, with a message naming the rule and the
field, anything it does not understand: an unknown key, a missing parameter, a
wrong type, an unknown severity, a duplicate id, or a rule the engine has no
logic for (and logic with no rule).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.toml")
SEVERITIES = ("critical", "high", "routine", "info")
RULE_KEYS = {"id", "version", "severity", "who", "title", "action", "source", "verify", "params"}


class RuleFileError(ValueError):
    """The rule file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    id: str
    version: str
    severity: str
    who: str
    title: str
    action: str
    source: str
    verify: bool
    params: dict[str, Any]


@dataclass(frozen=True)
class TierPolicy:
    high_interval_days: int
    intermediate_interval_days: int
    low_interval_days: int
    screening_interval_days: int
    high_sins_min: int
    high_bilsky_min: str
    intermediate_sins_min: int
    new_lesion_months: int
    post_sbrt_high_months: int
    screening_sites: tuple[str, ...]
    source: str

    def interval_days(self, tier: str) -> int | None:
        return {
            "high": self.high_interval_days,
            "intermediate": self.intermediate_interval_days,
            "low": self.low_interval_days,
            "screening": self.screening_interval_days,
        }.get(tier)


@dataclass(frozen=True)
class RuleSet:
    id: str
    version: str
    description: str
    severity_weights: dict[str, int]
    tiers: TierPolicy
    rules: tuple[Rule, ...]
    digest: str  # sha256 of the file, recorded with every run

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _fail(where: str, problem: str) -> RuleFileError:
    return RuleFileError(f"rule file: {where}: {problem}")


def _typed(where: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    # bool is an int in Python; a threshold of `true` is a mistake, not 1.
    if isinstance(value, bool) and expected is not bool and (not isinstance(expected, tuple) or bool not in expected):
        raise _fail(where, f"{value!r} must be a number, not a boolean")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        name = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise _fail(where, f"{value!r} must be of type {name}")
    return value


def parse_rules(text: str, *, known_rules: dict[str, dict[str, Any]]) -> RuleSet:
    """Parse and validate; ``known_rules`` maps each implemented rule id to its parameter types."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _fail("syntax", str(err)) from None
    for section in ("ruleset", "severity_weights", "tiers", "rule"):
        if section not in data:
            raise _fail(section, "section is missing")
    extra = set(data) - {"ruleset", "severity_weights", "tiers", "rule"}
    if extra:
        raise _fail(", ".join(sorted(extra)), "unknown section")

    head = data["ruleset"]
    for key in ("id", "version", "description"):
        if not isinstance(head.get(key), str):
            raise _fail(f"ruleset.{key}", "must be a string")

    weights = data["severity_weights"]
    if set(weights) != set(SEVERITIES):
        raise _fail("severity_weights", f"must give exactly {', '.join(SEVERITIES)}")
    weights = {k: _typed(f"severity_weights.{k}", v, int) for k, v in weights.items()}

    tier_raw = dict(data["tiers"])
    tier_types = {
        "high_interval_days": int,
        "intermediate_interval_days": int,
        "low_interval_days": int,
        "screening_interval_days": int,
        "high_sins_min": int,
        "high_bilsky_min": str,
        "intermediate_sins_min": int,
        "new_lesion_months": int,
        "post_sbrt_high_months": int,
        "screening_sites": list,
        "source": str,
    }
    if set(tier_raw) != set(tier_types):
        missing = set(tier_types) - set(tier_raw)
        unknown = set(tier_raw) - set(tier_types)
        raise _fail("tiers", f"missing {sorted(missing)}; unknown {sorted(unknown)}")
    for key, expected in tier_types.items():
        tier_raw[key] = _typed(f"tiers.{key}", tier_raw[key], expected)
        if expected is int and tier_raw[key] <= 0:
            raise _fail(f"tiers.{key}", "must be positive")
    tier_raw["screening_sites"] = tuple(tier_raw["screening_sites"])
    tiers = TierPolicy(**tier_raw)

    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["rule"]):
        where = f"rule[{index}]" + (f" ({raw.get('id')})" if raw.get("id") else "")
        unknown = set(raw) - RULE_KEYS
        if unknown:
            raise _fail(where, f"unknown key(s) {sorted(unknown)}")
        for key in ("id", "version", "severity", "who", "title", "action", "source"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise _fail(f"{where}.{key}", "must be a non-empty string")
        rule_id = raw["id"]
        if rule_id in seen:
            raise _fail(where, "duplicate rule id")
        seen.add(rule_id)
        if raw["severity"] not in SEVERITIES:
            raise _fail(f"{where}.severity", f"{raw['severity']!r} is not one of {', '.join(SEVERITIES)}")
        if rule_id not in known_rules:
            raise _fail(where, "the engine has no logic for this rule id")
        expected_params = known_rules[rule_id]
        params = dict(raw.get("params", {}))
        if set(params) != set(expected_params):
            missing = set(expected_params) - set(params)
            unknown = set(params) - set(expected_params)
            raise _fail(f"{where}.params", f"missing {sorted(missing)}; unknown {sorted(unknown)}")
        for key, expected in expected_params.items():
            params[key] = _typed(f"{where}.params.{key}", params[key], expected)
        if "escalated_severity" in params and params["escalated_severity"] not in SEVERITIES:
            raise _fail(f"{where}.params.escalated_severity", "is not a severity")
        rules.append(
            Rule(
                id=rule_id,
                version=raw["version"],
                severity=raw["severity"],
                who=raw["who"],
                title=raw["title"],
                action=raw["action"],
                source=raw["source"],
                verify=bool(_typed(f"{where}.verify", raw.get("verify", False), bool)),
                params=params,
            )
        )
    missing_rules = set(known_rules) - seen
    if missing_rules:
        raise _fail("rule", f"no entry for implemented rule(s) {sorted(missing_rules)}")
    return RuleSet(
        id=head["id"],
        version=head["version"],
        description=head["description"],
        severity_weights=weights,
        tiers=tiers,
        rules=tuple(rules),
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )
