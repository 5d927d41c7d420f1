"""The clinic's calendar: which date an instant falls on where the patients are.

Clinical dates (an ECOG recorded "today", an overdue day count) are local dates;
timestamps are stored in UTC.  ``CLINIC_TIMEZONE`` (an IANA name such as
``Asia/Tokyo``; default ``UTC``) turns an instant into the clinic's date, so a
nurse in Tokyo at 08:00 can record today's ECOG.  Not a clock reader: the
instant is always passed in.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=4)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"CLINIC_TIMEZONE={name!r} is not an IANA time zone (e.g. Asia/Tokyo, Europe/London)") from None


def clinic_timezone() -> ZoneInfo:
    return _zone(os.environ.get("CLINIC_TIMEZONE", "UTC"))


def clinical_day(instant: datetime) -> date:
    """The clinic's local date at ``instant`` (UTC-aware)."""
    return instant.astimezone(clinic_timezone()).date()
