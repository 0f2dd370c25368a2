"""Superset's own settings (``TVP_SUPERSET_*``, read here; the platform's settings keep the warehouses' endpoints) and
its admin password.

There is no default password. ``TVP_SUPERSET_ADMIN_PASSWORD`` wins when it is set; otherwise the first ``superset up``
generates one into ``<state>/superset/admin_password`` (mode 0600, in a directory of mode 0700) and prints it once;
every later command (the REST client, the browser, ``superset import``) reads it from there.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tv_platform.settings import Settings, get_settings

SUPERSET_ENV_VARS: dict[str, tuple[str, str]] = {
    "TVP_SUPERSET_HOST": ("127.0.0.1", "address Superset listens on"),
    "TVP_SUPERSET_PORT": ("8088", "its port"),
    "TVP_SUPERSET_ADMIN_USER": ("admin", "admin user created at `superset up`"),
    "TVP_SUPERSET_ADMIN_PASSWORD": ("", "its password; empty = generated at the first `superset up` into "
                                        "<state>/superset/admin_password (mode 0600) and printed once"),
    "TVP_SUPERSET_SECRET_KEY": ("", "Superset's SECRET_KEY; empty = generated once into <state>/superset/secret_key"),
    "TVP_SUPERSET_HOME": ("", "directory of its metadata, config and generated secrets; empty = <state>/superset"),
}

PASSWORD_FILE = "admin_password"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600; its directory 0700 when this creates it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)  # an older file of wider mode is narrowed too


def read_private(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class SupersetSettings:
    host: str
    port: int
    admin_user: str
    admin_password_env: str | None  # TVP_SUPERSET_ADMIN_PASSWORD; None: the generated one in data_dir
    secret_key: str | None  # None: generated once into the state directory
    data_dir: Path  # <state>/superset: metadata, config, the generated secrets

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> "SupersetSettings":
        port = os.environ.get("TVP_SUPERSET_PORT", "8088")
        try:
            port_number = int(port)
        except ValueError:
            raise ValueError(f"TVP_SUPERSET_PORT must be an integer, got {port!r}") from None
        settings = settings or get_settings()
        return cls(
            host=os.environ.get("TVP_SUPERSET_HOST", "127.0.0.1"),
            port=port_number,
            admin_user=os.environ.get("TVP_SUPERSET_ADMIN_USER", "admin"),
            admin_password_env=os.environ.get("TVP_SUPERSET_ADMIN_PASSWORD") or None,
            secret_key=os.environ.get("TVP_SUPERSET_SECRET_KEY") or None,
            data_dir=Path(os.path.expanduser(os.environ.get("TVP_SUPERSET_HOME") or settings.state_dir / "superset")),
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def admin_password(self) -> str:
        """The environment's password, else the generated one; an error before the first ``superset up``."""
        password = self.admin_password_env or read_private(self.password_file)
        if password is None:
            from tv_platform.processes import StackError

            raise StackError("superset", f"no admin password yet: run `tv-platform superset up` (it generates one "
                                         f"into {self.password_file}) or set TVP_SUPERSET_ADMIN_PASSWORD")
        return password

    def ensure_admin_password(self) -> str | None:
        """Generate the admin password when neither the environment nor the state directory has one; returns it when
        it was generated now (for the caller to show once), else None."""
        if self.admin_password_env or read_private(self.password_file):
            return None
        password = secrets.token_urlsafe(18)
        write_private(self.password_file, password)
        return password
