"""Surveillance rules: local policy as data (``default_rules.toml``) and a pure engine.

``load_rules()`` reads and validates the rule file; ``evaluate(frame, rules, today)``
turns facts and scores into tiers, the imaging clock and alert decisions.
"""

from surveillance.rules.engine import AlertDecision, Evaluation, Frame, evaluate, load_rules
from surveillance.rules.schema import RuleFileError, RuleSet

__all__ = ["AlertDecision", "Evaluation", "Frame", "RuleFileError", "RuleSet", "evaluate", "load_rules"]
