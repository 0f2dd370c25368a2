"""Failures of the stack are one clear line naming the service, the cause and its log (issue #2, point 7)."""

from __future__ import annotations

import dataclasses
import socket
import sys
from dataclasses import dataclass

import pytest

from tv_platform.settings import Settings
from tv_platform.stack.base import Service, StackError


@pytest.fixture
def tmp_settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("TVP_STATE_DIR", str(tmp_path / "state"))
    return Settings.from_env()


def test_taken_port_names_service_port_and_log(tmp_settings, monkeypatch):
    from tv_platform.stack.kafka import KafkaService

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        monkeypatch.setenv("TVP_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
        service = KafkaService(Settings.from_env())
        with pytest.raises(StackError) as err:
            service.start()
    message = str(err.value)
    assert message.startswith("kafka: ")
    assert f"port {port}" in message and "kafka.log" in message
    assert "\n" not in message


def test_missing_java_is_one_line(monkeypatch):
    from tv_platform.stack.base import java_bin

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("TVP_NO_APT", "1")  # where apt may, `up` installs Java; here we want the message
    with pytest.raises(StackError) as err:
        java_bin()
    assert str(err.value).startswith("java: no Java found")


@pytest.mark.services  # runs Maven against Maven Central: not the fast tier
def test_failed_download_names_the_maven_log(tmp_settings, tmp_path, monkeypatch):
    from tv_platform.stack import maven

    bad = tmp_path / "jvm" / "nosuch"
    bad.mkdir(parents=True)
    (bad / "pom.xml").write_text(
        """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
        <groupId>t</groupId><artifactId>t</artifactId><version>1</version><packaging>pom</packaging>
        <dependencies><dependency><groupId>org.tv-platform.does-not-exist</groupId>
        <artifactId>nothing-here</artifactId><version>0.0.1</version></dependency></dependencies></project>"""
    )
    monkeypatch.setattr(maven, "JVM_DIR", tmp_path / "jvm")
    isolated = dataclasses.replace(tmp_settings, cache_dir=tmp_path / "cache")
    with pytest.raises(StackError) as err:
        maven.ensure_jars(isolated, "nosuch", progress=lambda _m: None)
    assert str(err.value).startswith("nosuch: `mvn")
    assert "nosuch-maven.log" in str(err.value)


@dataclass
class _Crashing(Service):
    name: str = "crashing"

    def command(self):
        return [sys.executable, "-c", "import sys; print('FATAL: cannot bind'); sys.exit(3)"], {}

    def ready(self):
        return False


@dataclass
class _Silent(Service):
    name: str = "silent"
    start_timeout: float = 2.0

    def command(self):
        return [sys.executable, "-c", "import time; time.sleep(60)"], {}

    def ready(self):
        raise ConnectionRefusedError("nobody home")


def test_service_that_exits_reports_code_and_log_line(tmp_settings):
    with pytest.raises(StackError) as err:
        _Crashing(tmp_settings).start()
    message = str(err.value)
    assert message.startswith("crashing: exited with code 3")
    assert "FATAL: cannot bind" in message and "crashing.log" in message


def test_service_that_never_answers_times_out_and_is_stopped(tmp_settings):
    service = _Silent(tmp_settings)
    with pytest.raises(StackError) as err:
        service.start()
    assert "did not answer within 2s" in str(err.value) and "nobody home" in str(err.value)
    assert service.stop() is True
    assert not service.running()


def test_cli_prints_one_line_not_a_traceback(tmp_settings, monkeypatch, capsys):
    from tv_platform import cli
    from tv_platform.settings import get_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        monkeypatch.setenv("TVP_KAFKA_BOOTSTRAP", f"127.0.0.1:{sock.getsockname()[1]}")
        get_settings.cache_clear()
        try:
            code = cli.main(["stack", "up", "kafka"])
        finally:
            get_settings.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("tv-platform: kafka: port")
