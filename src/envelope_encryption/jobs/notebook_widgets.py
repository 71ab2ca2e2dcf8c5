"""Widgets of the interactive notebooks: the bundle's settings variables, as job parameters.

The notebooks take the same settings as the jobs, under the bundle's variable names, and
parse them with the job's own argument parser, so a notebook and a job given the same values
build the same :class:`~envelope_encryption.config.Settings`, and refuse the same things:
the ``local`` back end on Databricks (see :func:`.common.refuse_local_backend_on_databricks`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings, all_option_specs, settings_from_args
from .common import refuse_local_backend_on_databricks

# Deployment settings and their defaults (the local development target's).
SETTING_DEFAULTS = {
    "kek_backend": "local", "catalog": "main", "schemas": "default", "metastore_id": "local",
    "crypto_schema": "crypto", "keyring_table": "dek_keyring", "service_credential": "",
}


def declare_settings_widgets(dbutils: Any) -> list[str]:
    """Declare a text widget per setting and back-end option; return their names."""
    names = list(SETTING_DEFAULTS)
    for name, default in SETTING_DEFAULTS.items():
        dbutils.widgets.text(name, default, name)
    for spec in all_option_specs().values():
        name = spec.name.replace("-", "_")
        dbutils.widgets.text(name, "", name)  # empty: the option's built-in default
        names.append(name)
    return names


def parse_widgets(dbutils: Any, parser: argparse.ArgumentParser,
                  names: list[str]) -> argparse.Namespace:
    """Parse the named widgets' values with a job's parser (``--name=value`` each)."""
    return parser.parse_args(
        [f"--{name.replace('_', '-')}={dbutils.widgets.get(name)}" for name in names]
    )


def settings_from_widgets(dbutils: Any, parser: argparse.ArgumentParser,
                          names: list[str]) -> tuple[argparse.Namespace, Settings]:
    """The parsed widgets and their settings, with the checks every job makes first."""
    args = parse_widgets(dbutils, parser, names)
    return args, refuse_local_backend_on_databricks(settings_from_args(args))
