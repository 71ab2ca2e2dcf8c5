"""The Databricks CLI's ``--var`` and ``--params`` flags, parsed as the CLI parses them.

Both come from the CLI's flag library (spf13/pflag), and local runs must split them the
same way, or a command that works locally would fail, or mean something else, on a
workspace:

- ``--var`` (``databricks bundle deploy|run|validate``, ``cmd/bundle/variables.go``) is a
  *string slice*: each occurrence is read as one CSV record, so ``--var schemas=a,b`` is the
  two items ``schemas=a`` and ``b``, and the CLI then refuses ``b`` with
  ``unexpected flag value for variable assignment: b`` (``bundle/config/root.go``). Give a
  value with a comma as ``BUNDLE_VAR_schemas=a,b``, or quote the whole item as CSV:
  ``--var '"schemas=a,b"'``. Assigning a variable twice is an error too.
- ``--params`` (``databricks bundle run``, ``bundle/run/job_options.go``) is a *string to
  string* map: an occurrence with a single ``=`` is one pair whatever its commas
  (``--params schemas=a,b`` is ``{"schemas": "a,b"}``); one with several ``=`` is a CSV
  record of pairs (``--params schema=hr,version=2``). Later occurrences add to or replace
  earlier pairs.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigError


def read_csv_record(text: str, flag: str) -> list[str]:
    """One record of Go's ``encoding/csv`` reader with its defaults (what pflag uses)."""
    if text == "":
        return []
    fields: list[str] = []
    position = 0
    while True:
        if text.startswith('"', position):
            value, position = _quoted_field(text, position + 1, flag)
        else:
            end = text.find(",", position)
            end = len(text) if end < 0 else end
            value = text[position:end]
            if '"' in value:
                raise _csv_error(text, flag, 'bare " in non-quoted field')
            position = end
        fields.append(value)
        if position >= len(text):
            return fields
        position += 1  # the comma


def _quoted_field(text: str, position: int, flag: str) -> tuple[str, int]:
    value = []
    while True:
        quote = text.find('"', position)
        if quote < 0:
            raise _csv_error(text, flag, 'extraneous or missing " in quoted-field')
        value.append(text[position:quote])
        after = quote + 1
        if text.startswith('"', after):  # "" is one quote inside a quoted field
            value.append('"')
            position = after + 1
        elif after == len(text) or text[after] == ",":
            return "".join(value), after
        else:
            raise _csv_error(text, flag, 'extraneous or missing " in quoted-field')


def _csv_error(text: str, flag: str, reason: str) -> ConfigError:
    return ConfigError(f'invalid argument "{text}" for "{flag}" flag: parse error: {reason}')


def parse_var_overrides(items: Iterable[str]) -> dict[str, str]:
    """``--var`` occurrences as the CLI reads them: a string slice, then ``name=value`` each."""
    values: list[str] = []
    for item in items:
        values += read_csv_record(item, "--var")
    overrides: dict[str, str] = {}
    for value in values:
        name, sep, assigned = value.partition("=")
        if not sep:
            raise ConfigError(
                f"unexpected flag value for variable assignment: {value} (--var splits its "
                "value on commas; for a value with a comma use BUNDLE_VAR_<name>=a,b or "
                "--var '\"name=a,b\"')"
            )
        if name in overrides:
            raise ConfigError(
                f"failed to assign {assigned} to {name}: variable has already been assigned "
                f"value: {overrides[name]}"
            )
        overrides[name] = assigned
    return overrides


def parse_job_params(items: Iterable[str]) -> dict[str, str]:
    """``--params`` occurrences as the CLI reads them: pflag's string-to-string map."""
    params: dict[str, str] = {}
    for item in items:
        if item == "":
            continue
        count = item.count("=")
        if count == 0:
            raise ConfigError(f"{item} must be formatted as key=value")
        pairs = [item.strip('"')] if count == 1 else read_csv_record(item, "--params")
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"{pair} must be formatted as key=value")
            params[name] = value
    return params
