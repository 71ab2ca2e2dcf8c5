"""The ``envelope-encryption`` command: its listing comes from the job registry, each
command's help from the job's own parser, and errors are one line with exit code 2."""

from __future__ import annotations

import pytest

from envelope_encryption.jobs import cli, registry


def test_cli_help_for_every_command(capsys):
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    commands = cli.commands()
    assert list(commands) == ["run", *(job.name for job in registry.JOBS)]
    for command, summary in commands.items():
        assert f"  {command} " in listing
        assert summary.split()[0] in listing
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2


def test_cli_accepts_dashes_for_underscores(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["import-legacy", "--help"])
    assert done.value.code == 0
    assert "--import-schemas" in capsys.readouterr().out


def test_cli_reports_errors_in_one_line(capsys, tmp_path):
    code = cli.main(["kek_setup", "--catalog", "bad;name",
                     f"--local-kek-file={tmp_path / 'k'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid catalog") and "Traceback" not in err
