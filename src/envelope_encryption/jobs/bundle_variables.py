"""Variables of a bundle: their values for a target, and ``${...}`` references resolved.

The Databricks CLI's rules, for what local runs need (see :mod:`.bundle`): a variable's value
comes from ``--var``, else ``BUNDLE_VAR_<name>``, else the target, else its default;
``${var.<name>}`` (also ``${variables.<name>.value}``), ``${bundle.name}`` and
``${bundle.target}`` are substituted anywhere in strings, recursively, and a variable may
refer to another one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

ENV_PREFIX = "BUNDLE_VAR_"

# The CLI's reference syntax: dotted keys (letters, digits, '_' and '-') with optional [i].
_KEY = r"[A-Za-z]+(?:[-_]?[A-Za-z0-9]+)*"
_PATH = rf"{_KEY}(?:\[[0-9]+\])*(?:\.{_KEY}(?:\[[0-9]+\])*)*"
_REFERENCE = re.compile(r"\$\{(" + _PATH + r")\}")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


def variable_values(
    declared: dict[str, Any],
    target_values: dict[str, Any],
    target: str,
    overrides: Mapping[str, str],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        # The CLI's words for --var (bundle/config/root.go), then what to do.
        raise ConfigError(
            f"variable {unknown[0]} has not been defined: --var sets undeclared variable(s) "
            f"{', '.join(unknown)}; declare them under variables in databricks.yml"
        )
    unknown = sorted(set(target_values) - set(declared))
    if unknown:
        raise ConfigError(
            f"target {target!r} sets undeclared variable(s) {', '.join(unknown)}: declare "
            "them under variables in databricks.yml"
        )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        complex_type = spec.get("type") == "complex"
        if name in overrides:
            value = overrides[name]
        elif ENV_PREFIX + name in environ:
            value = environ[ENV_PREFIX + name]
        elif name in target_values:
            value = target_values[name]
            if isinstance(value, dict) and not complex_type:
                if "lookup" in value:
                    raise _lookup_error(name, target)
                value = value.get("default")
        elif spec.get("lookup") is not None and spec.get("default") is None:
            raise _lookup_error(name, target)
        else:
            value = spec.get("default")
        if value is None:
            raise ConfigError(
                f"no value assigned to required variable {name!r} for target {target!r}: give "
                f"it a default or a target value in databricks.yml, pass --var {name}=..., or "
                f"set {ENV_PREFIX}{name}"
            )
        values[name] = value if complex_type else scalar(value, name)
    return values


def _lookup_error(name: str, target: str) -> ConfigError:
    return ConfigError(
        f"variable {name!r} of target {target!r} is a workspace lookup, which a local run "
        f"cannot resolve: pass --var {name}=<value> or set {ENV_PREFIX}{name}"
    )


def scalar(value: Any, name: str) -> str:
    """A parameter's text as the CLI would pass it (YAML booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{name!r} must be a string, number or boolean, not {type(value).__name__}")


class Resolver:
    """Substitutes ``${...}`` references; with ``raw`` it resolves the variables themselves
    (a variable may refer to another one), detecting cycles."""

    def __init__(self, variables: dict[str, Any], context: dict[str, str], raw: bool = True):
        self.variables = variables
        self.context = context
        self.raw = raw
        self.done: dict[str, Any] = {} if raw else dict(variables)
        self.active: list[str] = []

    def all(self) -> dict[str, Any]:
        return {name: self.variable(name, f"variables.{name}") for name in self.variables}

    def variable(self, name: str, where: str) -> Any:
        if name in self.done:
            return self.done[name]
        if name not in self.variables:
            known = ", ".join(sorted(self.variables)) or "none"
            raise ConfigError(f"{where}: unknown variable {name!r} (declared: {known})")
        if name in self.active:
            cycle = " -> ".join([*self.active[self.active.index(name):], name])
            raise ConfigError(f"variables refer to each other in a cycle: {cycle}")
        self.active.append(name)
        try:
            value = self.value(self.variables[name], f"variables.{name}")
        finally:
            self.active.pop()
        self.done[name] = value
        return value

    def value(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return self.string(value, where)
        if isinstance(value, dict):
            return {k: self.value(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def string(self, text: str, where: str) -> Any:
        whole = _REFERENCE.fullmatch(text)
        if whole:
            # A reference standing alone keeps its value's type (complex variables).
            return self.reference(whole.group(1), where)

        def replace(match: re.Match[str]) -> str:
            value = self.reference(match.group(1), where)
            if isinstance(value, (dict, list)):
                raise ConfigError(
                    f"{where}: ${{{match.group(1)}}} is a complex value and cannot be part "
                    "of a longer string"
                )
            return scalar(value, match.group(1))

        return _REFERENCE.sub(replace, text)

    def reference(self, path: str, where: str) -> Any:
        segments = [m.group(1) or int(m.group(2)) for m in _SEGMENT.finditer(path)]
        head = segments[0]
        if head == "var" and len(segments) >= 2 and isinstance(segments[1], str):
            return self._walk(self.variable(segments[1], where), segments[2:], path, where)
        if (
            head == "variables"
            and len(segments) >= 3
            and isinstance(segments[1], str)
            and segments[2] == "value"
        ):
            return self._walk(self.variable(segments[1], where), segments[3:], path, where)
        if path in self.context:
            return self.context[path]
        raise ConfigError(
            f"{where}: ${{{path}}} cannot be resolved outside a Databricks workspace; local "
            "runs resolve ${var.*}, ${bundle.name}, ${bundle.target} and "
            "${workspace.file_path} only"
        )

    @staticmethod
    def _walk(value: Any, rest: list[Any], path: str, where: str) -> Any:
        for segment in rest:
            try:
                value = value[segment]
            except (KeyError, IndexError, TypeError):
                raise ConfigError(f"{where}: ${{{path}}} does not exist") from None
        return value
