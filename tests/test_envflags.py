"""One parser for yes/no environment variables."""

from __future__ import annotations

import pytest

from m2s_nnunet.envflags import EnvFlagError, env_flag
from m2s_nnunet.errors import UserError


@pytest.mark.parametrize("value,expected", [("1", True), ("TRUE", True), (" t ", True), ("yes", True), ("on", True),
                                            ("0", False), ("False", False), ("f", False), ("no", False),
                                            ("off", False)])
def test_yes_and_no_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("M2S_TEST_FLAG", value)
    assert env_flag("M2S_TEST_FLAG") is expected


def test_unset_empty_and_auto_give_the_default(monkeypatch):
    monkeypatch.delenv("M2S_TEST_FLAG", raising=False)
    assert env_flag("M2S_TEST_FLAG", default=True) is True
    for value in ("", "auto", "AUTO"):
        monkeypatch.setenv("M2S_TEST_FLAG", value)
        assert env_flag("M2S_TEST_FLAG", default=None) is None


def test_anything_else_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("M2S_NNUNET_PRETRAINED", "maybe")
    with pytest.raises(EnvFlagError, match="M2S_NNUNET_PRETRAINED='maybe' is neither yes nor no") as err:
        from m2s_nnunet.weights import pretrained_enabled

        pretrained_enabled()
    assert isinstance(err.value, UserError) and "unset it" in str(err.value)


def test_other_libraries_variables_are_read_with_their_own_rule(monkeypatch):
    from m2s_nnunet.envflags import HF_TRUE, NNUNET_TRUE, foreign_flag

    monkeypatch.setenv("nnUNet_compile", "yes")  # nnU-Net itself would not compile: neither do we claim it
    assert foreign_flag("nnUNet_compile", NNUNET_TRUE) is False
    monkeypatch.setenv("nnUNet_compile", "T")
    assert foreign_flag("nnUNet_compile", NNUNET_TRUE) is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "whatever")  # Hugging Face reads unknown values as off, never fails
    assert foreign_flag("HF_HUB_OFFLINE", HF_TRUE) is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert foreign_flag("HF_HUB_OFFLINE", HF_TRUE, default=True) is True


def test_doctor_reports_a_bad_flag_instead_of_stopping(monkeypatch, capsys):
    from m2s_nnunet import doctor

    monkeypatch.setenv("M2S_NNUNET_PRETRAINED", "maybe")
    failures = doctor._weights()
    assert failures >= 1 and "M2S_NNUNET_PRETRAINED='maybe' is neither yes nor no" in capsys.readouterr().out
