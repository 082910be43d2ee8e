"""`hq demo` says which database it uses: the embedded server, or DATABASE_URL without its password.

It used to say "embedded PostgreSQL" whatever DATABASE_URL said (and seed its issues there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo_cmd import banner, display_url
from config.settings import Settings

PASSWORD = "Sup3r-s3cret-pw"


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str | None) -> Settings:
    from config.settings import load_settings

    if url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
    return load_settings()


def test_without_database_url_it_names_the_embedded_server_and_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    line = banner(settings_with(monkeypatch, tmp_path, None), offline=True)
    assert f"embedded PostgreSQL under {(tmp_path / 'var' / 'pgdata').resolve()}" in line
    assert "DATABASE_URL" not in line and "offline model" in line


def test_with_database_url_it_names_that_database_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://hq_app:{PASSWORD}@db.example.com:6432/hq_prod?sslmode=require"
    line = banner(settings_with(monkeypatch, tmp_path, url), offline=True)
    assert "embedded" not in line
    assert "DATABASE_URL" in line and "postgresql://hq_app@db.example.com:6432/hq_prod?sslmode=require" in line
    assert PASSWORD not in line and "Sup3r" not in line


def test_online_models_are_not_called_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    line = banner(settings_with(monkeypatch, tmp_path, None), offline=False)
    assert "offline model" not in line and "online models" in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{PASSWORD}@h:5432/d", "postgresql://u@h:5432/d"),
        (f"postgresql://u@h/d?password={PASSWORD}&sslmode=require", "postgresql://u@h/d?sslmode=require"),
        (
            "postgresql+psycopg://postgres@/hq?host=/tmp/sock&port=5433",
            "postgresql://postgres@/hq?host=/tmp/sock&port=5433",
        ),
        (f"postgres://u:{PASSWORD}@[::1]:5432/d", "postgresql://u@[::1]:5432/d"),
    ],
)
def test_display_url_drops_every_password(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert PASSWORD not in display_url(url)
