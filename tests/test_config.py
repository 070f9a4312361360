"""Issue 12, item 4: the config is a leaf, grouped by the TOML's sections, and every value is checked. A bad value is
one line on stderr naming the setting and the file (or the variable), exit 2, before anything else is opened."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console import config

CLI = Path(sys.executable).with_name("deployer-console")


def run(tmp_path, toml: str | None = None, **env) -> subprocess.CompletedProcess:
    data = tmp_path / "data"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYER_")}
    clean.update(DEPLOYER_DATA_DIR=str(data), **env)
    if toml is not None:
        (tmp_path / "config.toml").write_text(toml)
        clean["DEPLOYER_CONFIG"] = str(tmp_path / "config.toml")
    return subprocess.run([str(CLI), "ls", "--json"], env=clean, capture_output=True, text=True, timeout=60)


BAD_FILES = {
    "workers": "[scheduler]\nworkers = -3\n",
    "host_timeout": "[scheduler]\nhost_timeout = 0\n",
    "host_timeout ": "[scheduler]\nhost_timeout = nan\n",
    "reconcile_interval": "[scheduler]\nreconcile_interval = 0\n",
    "phase_deadlines": "[pipeline]\nphase_deadlines = 5\n",
    "keys": "keys = 5\n",
    "h2": '[hosts]\nh2 = "unix:///run/docker-h2.sock"\n',
    "workers  ": '[scheduler]\nworkers = "two"\n',
    "BUILDING": "[pipeline]\nphase_deadlines = { BUILDING = -1 }\n",
    "drain_seconds": "[routes]\ndrain_seconds = 4000\n",
    "provider": '[routes]\nprovider = "nginx"\n',
    "listen": '[metrics]\nlisten = "nowhere"\n',
    "fold_seconds": "[notify]\nfold_seconds = -1\n",
}


@pytest.mark.parametrize("setting", BAD_FILES)
def test_a_bad_value_in_the_config_file_is_one_line_naming_the_setting_and_the_file_with_exit_2(tmp_path, setting):
    proc = run(tmp_path, BAD_FILES[setting])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert setting.strip() in lines[0] and str(tmp_path / "config.toml") in lines[0]
    assert not (tmp_path / "data" / "deployer.db").exists(), "the store was opened before the config was checked"


def test_a_bad_deadline_in_the_environment_is_one_line_naming_the_variable_with_exit_2(tmp_path):
    proc = run(tmp_path, DEPLOYER_DEADLINE_BUILDING="abc")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "DEPLOYER_DEADLINE_BUILDING" in proc.stderr


@pytest.mark.parametrize("variable,value", [("DEPLOYER_WORKERS", "-3"), ("DEPLOYER_HOST_TIMEOUT", "nan"),
                                            ("DEPLOYER_RECONCILE_INTERVAL", "0"), ("DEPLOYER_WORKERS", "2.5"),
                                            ("DEPLOYER_ROUTES_DRAIN_SECONDS", "abc"),
                                            ("DEPLOYER_ROUTES_CADDY_ADMIN", "127.0.0.1:2019"),
                                            ("DEPLOYER_NOTIFY_CLEANUP_FAILING_AFTER", "0"),
                                            ("DEPLOYER_METRICS_LISTEN", "9464")])
def test_a_bad_value_in_the_environment_names_the_variable(tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(config.ConfigError, match=variable) as e:
        config.load(data_dir=str(tmp_path))
    assert len(str(e.value).splitlines()) == 1


def test_an_unknown_key_in_a_section_is_refused_naming_the_key_and_the_file(tmp_path, monkeypatch):
    # before, sections were flattened: any key was accepted in any section
    proc = run(tmp_path, "[cleanup]\nworkers = 4\n")
    assert proc.returncode == 2 and "'workers'" in proc.stderr and "[cleanup]" in proc.stderr, proc.stderr
    assert str(tmp_path / "config.toml") in proc.stderr
    (tmp_path / "c.toml").write_text("[scheduler]\nno_such_key = 1\n")
    monkeypatch.setenv("DEPLOYER_CONFIG", str(tmp_path / "c.toml"))
    with pytest.raises(config.ConfigError, match="no_such_key"):
        config.load(data_dir=str(tmp_path))


def test_settings_are_grouped_by_section_and_the_documented_names_still_work(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(
        '[cleanup]\ncleanup_delay = 5\nkeep_releases = 3\n\n[pipeline]\nphase_deadlines = { BUILDING = 60 }\n\n'
        '[scheduler]\nworkers = 4\nhost_timeout = 2.5\n\n[metrics]\nlisten = ""\n\n[notify]\nfold_seconds = 0\n\n'
        '[routes]\nprovider = "caddy"\nlisten = ":8080"\n\n'
        '[keys]\ncancel = "x"\n\n[hosts.h2]\nurl = "unix:///run/docker-h2.sock"\n')
    monkeypatch.setenv("DEPLOYER_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("DEPLOYER_ZOMBIE_AFTER", "30")
    monkeypatch.setenv("DEPLOYER_DEADLINE_HEALTH_CHECK", "12")
    monkeypatch.setenv("DEPLOYER_ROUTES_DRAIN_SECONDS", "0.5")
    s = config.load(data_dir=str(tmp_path / "data"))
    assert (s.cleanup.cleanup_delay, s.cleanup.keep_releases) == (5.0, 3)
    assert s.pipeline.phase_deadlines["BUILDING"] == 60 and s.pipeline.phase_deadlines["HEALTH_CHECK"] == 12
    assert s.pipeline.phase_deadlines["COPYING_FILES"] == config.PHASE_DEADLINES["COPYING_FILES"]
    assert (s.scheduler.workers, s.scheduler.host_timeout, s.scheduler.zombie_after) == (4, 2.5, 30.0)
    assert s.metrics.listen == "" and s.notify.fold_seconds == 0 and s.keys == {"cancel": "x"}
    assert s.hosts["h2"]["url"] == "unix:///run/docker-h2.sock"
    assert (s.routes.provider, s.routes.listen, s.routes.drain_seconds) == ("caddy", ":8080", 0.5)
    assert s.origins["routes_provider"] == "config" and s.origins["routes_drain_seconds"] == "env"


def test_a_relative_db_path_resolves_against_the_config_files_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "config.toml").write_text('[store]\ndb = "stores/deployer.db"\n')
    monkeypatch.setenv("DEPLOYER_CONFIG", str(conf_dir / "config.toml"))
    monkeypatch.chdir(tmp_path)
    s = config.load(data_dir=str(tmp_path / "data"))
    assert s.db_url == str(conf_dir / "stores" / "deployer.db")
    (conf_dir / "config.toml").write_text('[store]\ndb = "postgresql://u@127.0.0.1:9/x"\n')
    assert config.load(data_dir=str(tmp_path / "data")).db_url == "postgresql://u@127.0.0.1:9/x"


def test_the_config_imports_nothing_of_the_engine_or_the_store():
    code = ("import sys, console.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('console.engine', 'storage'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "[]"


def test_deadlines_given_as_an_option_keep_the_other_phases_and_a_bad_one_is_refused(tmp_path):
    s = config.load(data_dir=str(tmp_path), phase_deadlines={"building": 60})
    assert s.pipeline.phase_deadlines == {**config.PHASE_DEADLINES, "BUILDING": 60.0}
    with pytest.raises(config.ConfigError, match="BUILDING"):
        config.load(data_dir=str(tmp_path), phase_deadlines={"BUILDING": 0})
    with pytest.raises(config.ConfigError, match="unknown setting 'no_such_setting'"):
        config.load(data_dir=str(tmp_path), no_such_setting=1)


def test_a_setting_the_sections_do_not_declare_cannot_be_set(tmp_path):
    """After a rename (`cleanup_delay` moved into [cleanup]) an old name in the code fails at once instead of being
    silently ignored; the declared ones are set, compared and shown as before."""
    settings = config.load(data_dir=tmp_path)
    with pytest.raises(AttributeError, match="cleanup_delay"):
        settings.cleanup_delay = 600
    with pytest.raises(AttributeError, match="no setting 'workerz'"):
        settings.scheduler.workerz = 4
    with pytest.raises(TypeError, match="no setting"):
        config.CleanupSettings(cleanup_dealy=1)
    settings.cleanup.cleanup_delay = 600
    assert settings.cleanup.cleanup_delay == 600 and "cleanup_delay=600" in repr(settings.cleanup)
    assert config.load(data_dir=tmp_path).scheduler == settings.scheduler
    assert config.load(data_dir=tmp_path).cleanup != settings.cleanup
