"""One company per data dir, found the same way from any directory (config/datalocation.py).

It used to be ``./var`` of the current directory: `hq` run from elsewhere silently started a second,
empty company with a PostgreSQL of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.datadir import on_creation, private_data_dir
from config.datalocation import PROJECT_NAME, DataLocation, checkout_root, locate_data_dir
from config.errors import ConfigError
from config.settings import PACKAGE_ROOT, load_settings
from tests.support import ROOT


def checkout(root: Path, name: str = PROJECT_NAME) -> Path:
    """A directory that looks like a checkout hq was installed from: its pyproject.toml names the project."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0.1.0"\n')
    return root


def locate(given: Path | None, package_root: Path, cwd: Path, home: Path, **environ: str) -> DataLocation:
    return locate_data_dir(given, package_root=package_root, environ=environ, home=home, cwd=cwd)


def test_the_checkout_hq_runs_from_holds_the_data_dir_whatever_the_current_directory(tmp_path: Path) -> None:
    root = checkout(tmp_path / "src" / "hq")
    found = {locate(None, root, cwd, tmp_path / "home").path for cwd in (root, tmp_path, Path("/"), root / "docs")}
    assert found == {root / "var"}
    location = locate(None, root, tmp_path, tmp_path / "home")
    assert location.origin == "checkout" and str(root) in location.how() and "HQ_DATA_DIR unset" in location.how()


def test_hq_data_dir_wins_and_a_relative_one_is_taken_from_the_current_directory(tmp_path: Path) -> None:
    root = checkout(tmp_path / "hq")
    given = locate(tmp_path / "company", root, Path("/"), tmp_path / "home")
    assert given.path == tmp_path / "company" and given.origin == "HQ_DATA_DIR" and given.how() == "set by HQ_DATA_DIR"
    assert locate(Path("rel/var"), root, tmp_path, tmp_path / "home").path == tmp_path / "rel" / "var"


def test_without_a_checkout_it_is_the_users_data_directory(tmp_path: Path) -> None:
    site_packages = tmp_path / "lib" / "site-packages"  # an installed wheel: no pyproject.toml above the packages
    site_packages.mkdir(parents=True)
    home = tmp_path / "home"
    assert locate(None, site_packages, tmp_path, home).path == home / ".local" / "share" / "heartbeat-hq"
    xdg = locate(None, site_packages, tmp_path, home, XDG_DATA_HOME=str(tmp_path / "xdg"))
    assert xdg.path == tmp_path / "xdg" / "heartbeat-hq" and xdg.origin == "user" and "user's data" in xdg.how()
    # The XDG spec: a relative XDG_DATA_HOME is invalid and ignored (it would depend on the current directory).
    assert locate(None, site_packages, tmp_path, home, XDG_DATA_HOME="rel").path == home / ".local/share/heartbeat-hq"
    with pytest.raises(ValueError, match="HOME is unset"):
        locate(None, site_packages, tmp_path, Path("~"))


def test_only_this_projects_pyproject_makes_a_checkout(tmp_path: Path) -> None:
    assert checkout_root(checkout(tmp_path / "other", name="someone-else")) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("[project\nname =")
    assert checkout_root(tmp_path / "broken") is None
    assert checkout_root(tmp_path / "missing") is None
    assert checkout_root(ROOT) == ROOT


def test_settings_find_the_checkouts_var_from_another_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HQ_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert PACKAGE_ROOT == ROOT  # the packages under test sit in this checkout
    assert settings.data_path == (ROOT / "var").resolve() and settings.data_location.origin == "checkout"
    monkeypatch.setenv("HQ_DATA_DIR", "")  # empty is unset, not the current directory
    assert load_settings().data_path == (ROOT / "var").resolve()
    monkeypatch.setenv("HQ_DATA_DIR", "company")
    assert load_settings().data_path == (tmp_path / "company").resolve()
    # A copy whose data dir was given another value recomputes it, rather than keeping the first one.
    moved = settings.model_copy(update={"data_dir": tmp_path / "moved"})
    assert moved.data_path == (tmp_path / "moved").resolve() and moved.data_location.origin == "HQ_DATA_DIR"


def test_an_unusable_data_dir_found_without_hq_data_dir_is_named_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import config.settings

    monkeypatch.delenv("HQ_DATA_DIR", raising=False)
    monkeypatch.setattr(config.settings, "PACKAGE_ROOT", Path("/proc/self"))  # no checkout: the user's directory
    monkeypatch.setenv("XDG_DATA_HOME", "/proc/nope")
    with pytest.raises(ConfigError, match=r"HQ_DATA_DIR: unset, and the data dir found \(the user's data directory"):
        load_settings()


def test_creating_the_data_dir_is_announced_once(tmp_path: Path) -> None:
    said: list[Path] = []
    data = tmp_path / "company" / "var"
    on_creation(data, said.append)
    try:
        private_data_dir(tmp_path / "elsewhere")  # another directory: not the data dir
        assert said == []
        private_data_dir(data)
        private_data_dir(data)
        assert said == [data]
        on_creation(tmp_path / "elsewhere", said.append)  # it exists already: nothing to say
        private_data_dir(tmp_path / "elsewhere")
        assert said == [data]
    finally:
        on_creation(data, None)
