"""The ``envelope-encryption`` command: its listing comes from the job registry, each
command's help from the job's own parser, and errors are one line with exit status 2."""

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
    # A job's error ends the process (a wheel task ignores returned values).
    with pytest.raises(SystemExit) as stopped:
        cli.main(["kek_setup", "--catalog", "bad;name", f"--local-kek-file={tmp_path / 'k'}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid catalog") and "Traceback" not in err


@pytest.mark.parametrize("job", [job.name for job in registry.JOBS])
def test_every_job_refuses_the_local_back_end_on_databricks(job, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.chdir(tmp_path)
    required = {"encrypt_columns": ["--source=l", "--target-table=s.t", "--columns=a"],
                "reencrypt_columns": ["--table=s.t", "--columns=a"],
                "retire_dek": ["--schema=s", "--version=1"],
                "dek_state": ["--schema=s", "--version=1", "--to=retired"],
                "purge_residue": ["--retain-hours=168"],
                "erase_subject": ["--schema=s", "--subject=1"]}
    with pytest.raises(SystemExit) as stopped:
        cli.main([job, "--kek-backend=local", *required.get(job, [])])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the local back end is for local runs only")
    assert "cloud target" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no KEK file, no warehouse


def test_the_local_runner_parses_var_and_params_as_the_databricks_cli(capsys):
    # --var schemas=a,b is split on the comma by the CLI, which then refuses "b".
    assert cli.main(["run", "kek_setup", "--var", "schemas=a,b"]) == 2
    assert "unexpected flag value for variable assignment: b" in capsys.readouterr().err
    # --params on a job without job parameters: the CLI's refusal.
    assert cli.main(["run", "kek_setup", "--params", "schema=hr"]) == 2
    assert "does not define job parameters" in capsys.readouterr().err
    assert cli.main(["run", "dek_generation", "--params", "nope=1"]) == 2
    assert "has no parameter nope" in capsys.readouterr().err
