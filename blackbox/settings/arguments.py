"""``key=value`` command lines for the commands that are not Hydra apps (replay, dashboard, maps, reports).

Every ``python -m blackbox...`` command takes its settings the one way Hydra's do: ``key=value``,
values in Hydra's override syntax (``image=coffee``, ``merge=[runs/a,runs/b]``, ``'url="a=b"'``), parsed
by Hydra's own override parser. :func:`parse_settings` reads them against a command's declared
:class:`Setting` list; ``--help`` prints them, and an ``--option`` or a bare word is refused with the
``key=value`` to write instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blackbox.settings.preflight import expand_home
from targets import ConfigError

__all__ = ["Setting", "parse_settings", "run_command"]


@dataclass(frozen=True)
class Setting:
    """One ``key=value`` a command takes: its converter (``str``, ``int``, ``Path``, ``list``...), its
    default (``None``: none) and whether it must be given; ``prefix=True`` takes ``key.<sub>=value`` too
    (e.g. ``target.scales=[64]``), gathered in a dict under ``"key.*"``."""

    key: str
    help: str
    kind: Callable[[Any], Any] = str
    default: Any = None
    required: bool = False
    prefix: bool = False


def usage(prog: str, description: str, settings: Sequence[Setting]) -> str:
    required = "".join(f" {s.key}=..." for s in settings if s.required)
    lines = [f"usage: {prog}{required} [key=value ...]"]
    lines += ["", description.strip(), "", "settings (key=value, Hydra's syntax):"]
    for s in settings:
        default = "" if s.required or s.default is None else f" (default: {s.default})"
        lines.append(f"  {s.key + '=...':<18} {s.help}{' (required)' if s.required else default}")
    return "\n".join(lines)


def parse_settings(argv: Sequence[str], settings: Sequence[Setting], *, prog: str) -> dict[str, Any]:
    """The settings of ``argv`` (``key=value`` each), converted, with defaults filled in.

    A prefixed setting's ``key.<sub>=value`` come back as a dict under ``"key.*"``
    (``{"target": "classic", "target.*": {"scales": [64]}}``).

    Raises:
        ConfigError: an ``--option`` or bare word, an unknown key (the known ones listed), a value the
            key's converter refuses, or a required key missing.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    known = {s.key: s for s in settings}
    values: dict[str, Any] = {s.key: s.default for s in settings}
    values.update({f"{s.key}.*": {} for s in settings if s.prefix})
    parser = OverridesParser.create()
    for arg in expand_home(argv):
        key, sep, _ = arg.partition("=")
        if not sep or arg.startswith("-"):
            name = arg.lstrip("-").replace("-", "_")
            hint = f" (write {name}=...)" if name in known else ""
            raise ConfigError(
                f"{prog} takes key=value settings, as every blackbox command does; got {arg!r}{hint}. "
                f"Settings: {', '.join(f'{k}=' for k in known)} (--help says more)"
            )
        head, _, sub = key.partition(".")
        setting = known.get(head)
        if setting is None or (sub and not setting.prefix):
            raise ConfigError(f"{prog}: unknown setting {key!r}; it takes {', '.join(known)}")
        try:
            value = parser.parse_override(arg).value()
        except HydraException as error:
            raise ConfigError(
                f"{prog}: cannot read {arg!r}: {str(error).splitlines()[0]}; quote a value holding =, "
                "spaces or commas for Hydra inside the shell's quotes: 'key=\"a=b\"'"
            ) from None
        if sub:
            values[f"{head}.*"][sub] = value
            continue
        if setting.kind in (str, Path) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = arg.partition("=")[2]  # an id or a path that looks like a number stays as written
        try:
            values[head] = None if value is None else setting.kind(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{prog}: {key}={value!r} is not valid ({error})") from None
    missing = [s.key for s in settings if s.required and values[s.key] is None]
    if missing:
        raise ConfigError(f"{prog}: give {' and '.join(f'{k}=...' for k in missing)} (--help says more)")
    return values


def paths(value: Any) -> list[Path]:
    """A converter: one path or a list of paths."""
    return [Path(str(v)).expanduser() for v in (value if isinstance(value, list) else [value])]


def run_command(
    main: Callable[[dict[str, Any]], int],
    argv: Sequence[str] | None,
    settings: Sequence[Setting],
    *,
    prog: str,
    description: str,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and call ``main(values)``; ``--help`` prints the usage
    (exit 0), a bad setting its message (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help", "help") for arg in args):
        print(usage(prog, description, settings))
        return 0
    try:
        values = parse_settings(args, settings, prog=prog)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return main(values)
