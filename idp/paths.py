"""Where an install's files are: relative paths in settings (``IDP_KEYS_DIR``, a SQLite
file) are read from the folder that holds Flask's ``instance/`` folder."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

APP_NAME = "idp"


def project_base_dir(app: Flask | None = None) -> Path:
    """For ``app``, or for the app ``create_app`` would build: a command that needs only
    the settings (``idp keys list`` on the file store) finds the same files without it."""
    return Path((app or Flask(APP_NAME)).instance_path).parent
