"""``m2s-nnunet convert``: the options reach the conversion, refusals give one message and exit code 2."""

from __future__ import annotations

import argparse

from fake_inputs import make_folder

from m2s_nnunet import cli
from m2s_nnunet.cli import convert as convert_command


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    convert_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["convert", *argv])


def test_cli_convert(tmp_path, capsys):
    img, msk = make_folder(tmp_path / "src", n=3)
    argv = ["convert", str(img), str(msk), "-d", "7", "-n", "Cli", "--out", str(tmp_path / "raw"), "--folds", "3"]
    assert convert_command.run(_parse(*argv[1:])) == 0
    out = capsys.readouterr().out
    assert "Dataset007_Cli" in out and "3 training" in out and "0/255 -> 0/1" in out
    assert cli.main(argv) == 2  # a refusal: one message, exit code 2, no traceback
    err = capsys.readouterr().err
    assert err.startswith("m2s-nnunet convert: error:") and "already exists" in err and "Traceback" not in err


def test_mask_values_and_the_deprecated_labels_spelling(tmp_path, capsys):
    img, msk = make_folder(tmp_path / "src", n=2, values=(128, 255))
    common = [str(img), str(msk), "-d", "8", "-n", "Two"]
    args = _parse(*common, "--mask-values", "ggo=128", "consolidation=255")
    assert args.mask_values == ["ggo=128", "consolidation=255"]
    assert capsys.readouterr().err == ""
    old = _parse(*common, "--labels", "ggo=128", "consolidation=255")
    assert old.mask_values == args.mask_values
    assert capsys.readouterr().err == ("m2s-nnunet convert: note: --labels is deprecated, use --mask-values "
                                       "(same meaning)\n")
    assert "--labels" not in convert_command.add_parser(argparse.ArgumentParser().add_subparsers()).format_help()
    assert cli.main(["convert", *common, "--out", str(tmp_path / "raw"), "--labels", "ggo=128",
                     "consolidation=255"]) == 0
    assert '"consolidation": 2' in (tmp_path / "raw" / "Dataset008_Two" / "dataset.json").read_text()
