"""Database settings from the environment (pydantic-settings).

``DATABASE_URL`` (default ``sqlite:///data/surveillance.db``) names the store;
``DB_SQLITE_BUSY_TIMEOUT_MS`` and ``DB_POOL_SIZE`` tune it.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///data/surveillance.db"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DB_", extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    sqlite_busy_timeout_ms: int = 30_000
    pool_size: int = 5


def database_url() -> str:
    return DatabaseSettings().database_url
