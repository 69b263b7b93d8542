import pytest

from app.config import Settings


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_admin_token_turns_the_admin_routes_off(monkeypatch, value):
    monkeypatch.setenv("ADMIN_TOKEN", value)
    assert Settings().admin_token is None


def test_an_empty_default_model_means_none(monkeypatch):
    monkeypatch.setenv("DEFAULT_MODEL", "")
    assert Settings().default_model is None


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_ROWS", "7")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert settings.max_batch_rows == 7
    assert settings.log_format == "json"
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
