"""``m2s_nnunet.cli.main``: one message and exit code 2 for refusals, every subcommand module with the same
two functions, and a start that does not import torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from m2s_nnunet import __version__, cli
from m2s_nnunet.errors import UserError


@pytest.mark.parametrize("error, code, text", [
    (UserError("bad thing", "/data/x.png", "do this"), 2, "/data/x.png: bad thing\n  fix: do this"),
    (PermissionError(13, "Permission denied", "/data/out/per_case.csv"), 2,
     "Permission denied: /data/out/per_case.csv"),
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
])
def test_main_turns_errors_into_one_message(monkeypatch, capsys, error, code, text):
    def handler(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=handler)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(func=handler)
    assert cli.main(["doctor"]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_every_subcommand_module_has_add_parser_and_run():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert list(commands) == [m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS]
    for module in cli.COMMANDS:
        assert list(inspect.signature(module.add_parser).parameters) == ["subparsers"]
        assert list(inspect.signature(module.run).parameters) == ["args"]
        assert commands[module.__name__.rsplit(".", 1)[1]].get_default("func") is module.run


def test_help_and_version_start_without_torch():
    code = ("import sys, contextlib, io\n"
            "from m2s_nnunet import cli\n"
            "for argv in (['--help'], ['convert', '--help'], ['cv', '--help'], ['flops', '--help']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        cli.main(argv)\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'nnunetv2') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
    proc = subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == __version__


def test_bench_is_no_longer_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "network"])
    assert exc.value.code == 2 and "invalid choice: 'bench'" in capsys.readouterr().err
