from pathlib import Path

import pytest

from vmgen.errors import ConfigError
from vmgen.laptop.config import load_settings


def test_precedence_env_over_dotenv_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "config.toml"
    toml.write_text('agent = "aider"\nidle_minutes = 45\nsize = "large"\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text("VMGEN_AGENT=codex\nVMGEN_IDLE_MINUTES=50\n")
    settings = load_settings({"VMGEN_AGENT": "gemini"}, toml, dotenv)
    assert (settings.agent, settings.idle_minutes, settings.size) == ("gemini", 50, "large")


def test_well_known_variables_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        {"ANTHROPIC_API_KEY": "test-key-0123456789"}, tmp_path / "none.toml", tmp_path / "none.env"
    )
    assert settings.anthropic_api_key == "test-key-0123456789"


def test_secrets_are_masked(tmp_path: Path) -> None:
    settings = load_settings({"HCLOUD_TOKEN": "test-token-abcdefgh"}, tmp_path / "none.toml", tmp_path / "none.env")
    shown = settings.masked()
    assert shown["hcloud_token"] == "****efgh"
    assert "test-token" not in str(shown)


def test_unknown_setting_is_reported(tmp_path: Path) -> None:
    toml = tmp_path / "config.toml"
    toml.write_text('agnet = "claude"\n')
    with pytest.raises(ConfigError, match=r"unknown setting.*agnet"):
        load_settings({}, toml, tmp_path / "none.env")


def test_bad_number_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="idle_minutes"):
        load_settings({"VMGEN_IDLE_MINUTES": "soon"}, tmp_path / "none.toml", tmp_path / "none.env")


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    toml = tmp_path / "config.toml"
    toml.write_text("agent = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, toml, tmp_path / "none.env")
