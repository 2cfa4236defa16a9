"""photos_sync.storage.settings_io: where variables come from, and in which order they win.

Precedence: process environment > ./.env > <data dir>/.env. The data dir itself may be set
in ./.env (or the environment), and its .env is then read from there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from photos_sync.core.config import ConfigError
from photos_sync.storage.settings_io import default_data_dir, gather_environment, load_settings


def write_env(folder: Path, **values: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point platformdirs' default data dir into tmp_path."""
    home = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def test_default_data_dir_is_the_platform_user_data_dir(xdg_data_home: Path) -> None:
    assert default_data_dir() == xdg_data_home / "photos-sync"


def test_no_env_files_gives_the_environment_back(cwd: Path, tmp_path: Path) -> None:
    environ = {"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "data"), "BACKUP_MAX_RETRIES": "4"}
    assert gather_environment(environ, cwd) == environ


def test_process_env_beats_cwd_env_beats_data_dir_env(cwd: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_env(
        data,
        BACKUP_STATS_INTERVAL="11",
        BACKUP_MAX_RETRIES="11",
        BACKUP_TRANSFERS="11",
        BACKUP_CHECKERS="11",
    )
    write_env(cwd, BACKUP_STATS_INTERVAL="22", BACKUP_MAX_RETRIES="22", BACKUP_TRANSFERS="22")
    environ = {"PHOTOS_SYNC_DATA_DIR": str(data), "BACKUP_STATS_INTERVAL": "33"}

    merged = gather_environment(environ, cwd)
    assert merged["BACKUP_STATS_INTERVAL"] == "33"  # process env
    assert merged["BACKUP_MAX_RETRIES"] == "22"  # ./.env
    assert merged["BACKUP_TRANSFERS"] == "22"  # ./.env
    assert merged["BACKUP_CHECKERS"] == "11"  # <data dir>/.env

    s = load_settings(environ, cwd)
    assert (s.stats_interval, s.max_retries, s.transfers, s.checkers) == (33, 22, 22, 11)
    assert s.data_dir == data


def test_data_dir_may_come_from_cwd_env(cwd: Path, tmp_path: Path) -> None:
    data = tmp_path / "elsewhere" / "ps"
    write_env(data, BACKUP_IMMICH_PATH="/from/data-dir/env", BACKUP_MAX_DELETE="7")
    write_env(cwd, PHOTOS_SYNC_DATA_DIR=str(data))

    s = load_settings({}, cwd)
    assert s.data_dir == data
    assert s.db_path == data / "backup.db"
    assert s.immich_path == Path("/from/data-dir/env")
    assert s.max_delete == 7


def test_process_env_data_dir_beats_cwd_env_data_dir(cwd: Path, tmp_path: Path) -> None:
    from_env = tmp_path / "from-env"
    from_file = tmp_path / "from-file"
    write_env(from_env, BACKUP_MAX_RETRIES="1")
    write_env(from_file, BACKUP_MAX_RETRIES="9")
    write_env(cwd, PHOTOS_SYNC_DATA_DIR=str(from_file))

    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(from_env)}, cwd)
    assert s.data_dir == from_env
    assert s.max_retries == 1


def test_data_dir_env_cannot_move_the_data_dir(
    cwd: Path, tmp_path: Path, xdg_data_home: Path
) -> None:
    """A data dir's own .env naming another data dir would split config from state: the
    settings would come from one folder and backup.db from another, whose .env is unread."""
    data = xdg_data_home / "photos-sync"
    write_env(data, PHOTOS_SYNC_DATA_DIR=str(tmp_path / "other"), BACKUP_MAX_RETRIES="6")

    s = load_settings({}, cwd)
    assert s.data_dir == data
    assert s.db_path == data / "backup.db"
    assert s.max_retries == 6


def test_default_data_dir_env_is_read(
    cwd: Path, xdg_data_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHOTOS_SYNC_DATA_DIR", raising=False)
    write_env(xdg_data_home / "photos-sync", BACKUP_IMMICH_PATH="/srv/immich")

    s = load_settings({}, cwd)
    assert s.data_dir == xdg_data_home / "photos-sync"
    assert s.immich_path == Path("/srv/immich")


def test_tilde_in_data_dir_is_expanded_before_reading_its_env(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home-x"
    monkeypatch.setenv("HOME", str(home))
    write_env(home / "psdata", BACKUP_CHECKERS="5")

    s = load_settings({"PHOTOS_SYNC_DATA_DIR": "~/psdata"}, cwd)
    assert s.data_dir == home / "psdata"
    assert s.checkers == 5


def test_socket_defaults_from_xdg_runtime_dir_in_any_source(cwd: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": data, "XDG_RUNTIME_DIR": "/run/user/7"}, cwd)
    assert s.socket_path == Path("/run/user/7/photos-sync/daemon.sock")

    write_env(cwd, XDG_RUNTIME_DIR="/run/user/8")
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": data}, cwd)
    assert s.socket_path == Path("/run/user/8/photos-sync/daemon.sock")


def test_socket_in_the_data_dir_without_xdg_runtime_dir(cwd: Path, tmp_path: Path) -> None:
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "data")}, cwd)
    assert s.socket_path == tmp_path / "data" / "daemon.sock"


def test_blank_xdg_runtime_dir_is_ignored(cwd: Path, tmp_path: Path) -> None:
    env = {"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d"), "XDG_RUNTIME_DIR": "  "}
    assert load_settings(env, cwd).socket_path == tmp_path / "d" / "daemon.sock"


def test_env_file_syntax_quotes_comments_and_export(cwd: Path, tmp_path: Path) -> None:
    (cwd / ".env").write_text(
        "# photos-sync settings\n"
        'BACKUP_IMMICH_PATH="/mnt/immich data/upload"\n'
        "export BACKUP_BWLIMIT='08:00,512k 23:00,off'\n"
        "BACKUP_INCLUDE_GENERATED=true  # thumbnails too\n"
        "BACKUP_NO_VALUE\n"
    )
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}, cwd)
    assert s.immich_path == Path("/mnt/immich data/upload")
    assert s.bwlimit == "08:00,512k 23:00,off"
    assert s.include_generated is True
    assert "BACKUP_NO_VALUE" not in s.extra


def test_unreadable_or_odd_env_files_are_skipped(cwd: Path, tmp_path: Path) -> None:
    (cwd / ".env").write_bytes(b"BACKUP_MAX_RETRIES=\xff\xfe\n")
    data = tmp_path / "data"
    (data / ".env").mkdir(parents=True)  # a folder, not a file
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(data)}, cwd)
    assert s.max_retries == 3


def test_bad_value_from_an_env_file_is_a_config_error(cwd: Path, tmp_path: Path) -> None:
    write_env(cwd, BACKUP_STATS_INTERVAL="often")
    settings = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}, cwd)
    with pytest.raises(ConfigError, match=r"^BACKUP_STATS_INTERVAL='often' is invalid"):
        settings.require(["BACKUP_STATS_INTERVAL"])


def test_defaults_to_os_environ_and_current_directory(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PHOTOS_SYNC_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("BACKUP_TRANSFERS", "3")
    write_env(cwd, BACKUP_TRANSFERS="99", BACKUP_CHECKERS="2")

    s = load_settings()
    assert s.transfers == 3
    assert s.checkers == 2
    assert s.data_dir == tmp_path / "d"


# --- what is wrong with the files, said with the file and the line (#13) -------------------------


def test_a_line_dotenv_cannot_parse_is_named_with_its_file_and_line(
    cwd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = cwd / ".env"
    path.write_text(
        "# photos-sync\n\nBACKUP_MAX_RETRIES=5\n\n\nthis line is no setting\nBACKUP_BWLIMIT='10M\n"
    )
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}, cwd)
    assert s.max_retries == 5  # the good lines still count
    assert s.notices == (
        f"{path} line 6 is not NAME=value and is ignored (quote values with spaces or #, and "
        "close every quote)",
        f"{path} line 7 is not NAME=value and is ignored (quote values with spaces or #, and "
        "close every quote)",
    )
    assert not [r for r in caplog.records if r.name.startswith("dotenv")]  # no unnamed copy


def test_an_unreadable_env_file_is_a_notice(cwd: Path, tmp_path: Path) -> None:
    (cwd / ".env").write_bytes(b"BACKUP_MAX_RETRIES=\xff\xfe\n")
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}, cwd)
    assert s.notices == (f"{cwd / '.env'} is not read: it is not UTF-8 text",)


def test_unknown_names_say_where_they_were_set(cwd: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_env(cwd, BACKUP_RETRY_DELAY="1", BACKUP_TRANSFRES="4")
    write_env(data, BACKUP_MAX_DELET="5")
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(data), "BACKUP_SCHEDUEL": "6h"}, cwd)
    assert s.notices == (
        f"unknown setting BACKUP_MAX_DELET in {data / '.env'} line 1 (did you mean "
        "BACKUP_MAX_DELETE?)",
        "unknown setting BACKUP_SCHEDUEL in the environment (did you mean BACKUP_SCHEDULE?)",
        f"unknown setting BACKUP_TRANSFRES in {cwd / '.env'} line 2 (did you mean "
        "BACKUP_TRANSFERS?)",
    )


def test_a_bad_value_does_not_stop_loading(cwd: Path, tmp_path: Path) -> None:
    write_env(cwd, BACKUP_SCHEDULE="daily@25:00", BACKUP_BWLIMIT="2M")
    s = load_settings({"PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}, cwd)
    assert s.bwlimit == "2M"
    assert list(s.problems) == ["BACKUP_SCHEDULE"]
    assert s.notices == ()
