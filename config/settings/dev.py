"""Local development and `make run`: debug on, embedded services unless the environment says otherwise."""

from config.settings.base import *  # noqa: F403
from config.settings.base import database_settings, env_bool

DEBUG = env_bool("DEBUG", True)
DATABASES = {"default": database_settings()}
