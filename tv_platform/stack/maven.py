"""Jars from Maven Central, resolved by the poms under ``stack/jvm/<name>/pom.xml``.

``mvn dependency:copy-dependencies`` copies every jar of a pom (and its transitive dependencies) into
``<cache_dir>/jars/<name>/``; a marker holding the pom's hash makes the step a no-op until the pom changes.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Callable

from tv_platform.settings import Settings
from tv_platform.stack.base import StackError, apt_install, run_checked

JVM_DIR = Path(__file__).parent / "jvm"


def jars_dir(settings: Settings, name: str) -> Path:
    return settings.cache_dir / "jars" / name


def ensure_jars(settings: Settings, name: str, progress: Callable[[str], None] = print) -> Path:
    """Resolve the jars of ``jvm/<name>/pom.xml`` into the cache (once); returns the directory holding them."""
    pom = JVM_DIR / name / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    target = jars_dir(settings, name)
    marker = target / f".resolved-{digest}"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        apt_install(name, ["maven"], settings.logs_dir / f"{name}-maven.log")
    if shutil.which("mvn") is None:
        raise StackError(name, "Maven (mvn) is not installed: apt-get install maven", None)
    progress(f"{name}: resolving jars from Maven Central (first run only)")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    log = settings.logs_dir / f"{name}-maven.log"
    run_checked(
        name,
        [
            "mvn", "-B", "-q", "-f", str(pom),
            f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        ],
        log,
    )
    if not any(staging.glob("*.jar")):
        raise StackError(name, "Maven resolved no jars", log)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    marker.write_text(digest)
    return target


def classpath(settings: Settings, name: str, extra: list[Path] | None = None) -> str:
    """Class path of a resolved pom (configuration directories first, when given)."""
    parts = [str(p) for p in (extra or [])]
    parts.append(str(jars_dir(settings, name) / "*"))
    return ":".join(parts)
