"""Building blocks of the rendered functions: SQL functions from their templates, the
privileged batch Python functions with their handler and settings, and the text checks they
share. Pure: settings in, SQL text out; used by :mod:`.render` and :mod:`.equality_sql`."""

from __future__ import annotations

import re
from typing import Any

from ... import __version__
from ...config import Settings
from ...errors import ConfigError
from . import runtime
from .keyring_sql import indent as indent  # one definition, used by the function modules
from .keyring_sql import render_template
from .keyring_sql import template as _template
from .target import PACKAGES_VOLUME, WHEEL_PATH, SqlOptions, SqlTarget, quote_principal

_SAFE_TEXT = re.compile(r"^[^'\\$\x00-\x1f]*$")


def literal_text(text: str, what: str) -> str:
    """Text that goes inside a SQL string literal (comments, messages): no quotes, no '$'."""
    if not _SAFE_TEXT.match(text):
        raise ConfigError(f"{what} contains a quote, backslash, '$' or control character")
    return text


def managed() -> str:
    return f"Managed by envelope-encryption {__version__}."


def sql_function(target: SqlTarget, template: str, name: str, comment: str,
                  values: dict[str, str]) -> str:
    """A SQL function from its template: a temporary one locally, where it takes no COMMENT."""
    return render_template(_template(template), {
        "temporary": "" if target.databricks else "TEMPORARY ",
        "function": target.function(name),
        "comment": f"COMMENT '{literal_text(comment, 'comment')}'\n" if target.databricks else "",
        **values,
    })


def default_udf_wheel(settings: Settings, crypto_catalog: str = "") -> str:
    """Where the unwrap function installs the project's wheel from unless told otherwise."""
    return (f"/Volumes/{crypto_catalog or settings.catalog}/{settings.crypto_schema}/"
            f"{PACKAGES_VOLUME}/"
            f"envelope_encryption-{__version__}-py3-none-any.whl")


def python_body(entry: str, payload: dict[str, Any], module: str = "runtime") -> str:
    for key, value in [*payload.items(), *payload["options"].items()]:
        if isinstance(value, str) and ("$$" in value or "\n" in value):
            raise ConfigError(f"setting {key} cannot contain '$$' or a line break")
    lines = [
        f"from envelope_encryption.spark.sql.{module} import {entry}",
        "",
        "# The deployment's settings (names and options only; no secret).",
        "SETTINGS = {",
    ]
    for key, value in payload.items():
        if key == "options":
            lines.append("    'options': {")
            lines += [f"        {k!r}: {v!r}," for k, v in value.items()]
            lines.append("    },")
        elif isinstance(value, list):
            lines.append(f"    {key!r}: [{', '.join(repr(v) for v in value)}],")
        else:
            lines.append(f"    {key!r}: {value!r},")
    lines += [
        "}",
        "",
        "",
        "def handler(batch_iter):",
        f"    return {entry}(batch_iter, SETTINGS)",
    ]
    return "\n".join(lines)


def python_function(target: SqlTarget, options: SqlOptions, name: str, parameters: str,
                     returns: str, entry: str, comment: str, module: str = "runtime",
                     domains: bool = False) -> str:
    # domains: the function may unwrap the equality domains' keys (named in its settings).
    settings = target.settings
    if settings.backend == "local":
        raise ConfigError(
            "the local back end keeps its KEK in a file on one machine: Unity Catalog functions "
            "cannot use it. Deploy the SQL functions with aws-kms, aws-sm or azure"
        )
    if not settings.service_credential:
        raise ConfigError(
            "the SQL unwrap function needs a Unity Catalog service credential: set "
            "--service-credential (bundle variable service_credential)"
        )
    wheel = options.udf_wheel or default_udf_wheel(settings, target.crypto_catalog)
    dependencies = [wheel, *options.extra_dependencies]
    for dependency in dependencies:
        if not WHEEL_PATH.match(dependency):
            raise ConfigError(f"invalid Python UDF dependency {dependency!r}")
    payload = runtime.settings_payload(settings,
                                       options.equality_domains if domains else None)
    return render_template(_template("python_function.sql"), {
        "function": target.function(name),
        "parameters": parameters,
        "returns": returns,
        "credentials": f"CREDENTIALS ({quote_principal(settings.service_credential)} DEFAULT)\n",
        "dependencies": "[" + ", ".join(f'"{d}"' for d in dependencies) + "]",
        "comment": literal_text(comment, "comment"),
        "body": python_body(entry, payload, module),
    })
