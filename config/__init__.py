"""Configuration from the environment."""

from config.settings import PROJECT_ROOT, ConfigError, Settings

__all__ = ["PROJECT_ROOT", "ConfigError", "Settings"]
