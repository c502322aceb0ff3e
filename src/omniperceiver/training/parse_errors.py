"""One line for a mistake that the training commands' parser finds.

jsonargparse reports an unknown option or a value of the wrong type with the whole usage
text and, for the model and data (classes chosen by ``class_path``), with every branch of
their ``Union`` and the full dict it was given. :class:`OneLineErrors` parsers stop at the
first :meth:`~jsonargparse.ArgumentParser.error` instead, and :func:`describe_parse_error`
keeps what matters of the message: the option, the config file it came from, what was
expected (a type, or a known option: the closest one is suggested) and the value received.
"""

from __future__ import annotations

import difflib
import inspect
import re
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser


class ParseError(Exception):
    """The parser's error ``message``; ``parser`` is the (sub)command's parser."""

    def __init__(self, message: str, parser: ArgumentParser):
        super().__init__(message)
        self.message = message
        self.parser = parser


class OneLineErrors:
    """A parser mix-in: :meth:`error` raises :class:`ParseError` instead of printing the usage
    and exiting with status 2 (parsers that do not exit on errors keep jsonargparse's
    ``ArgumentError``, which it catches itself)."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        raise ParseError(message, getattr(ex, "subcommand_parser", None) or self) from ex


_PARSER_KEY = re.compile(r'^(\s*)(?:- )?Parser key "([^"]+)":')
_EXPECTED = re.compile(r"^(\s*)(?:- )?Expected a (.+?)(?:\. Got value: (.*))?$")
_GIVEN = re.compile(r"^\s*Given value: (.*)$")
_NOT_ACCEPTED = re.compile(r"^(\s*)(?:- )?(?:Option|Key) '([^']+)' is not accepted")
_NO_OPTION = re.compile(r"does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")


def _type_name(text: str) -> str:
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text).replace("typing.", "")


def _short(key: str) -> str:
    return key.replace(".init_args.", ".")


def describe_parse_error(message: str, parser: ArgumentParser, args: list[str]) -> str:
    """``message`` of jsonargparse in one line: ``OPTION [(from --config FILE)]: what was
    expected, got VALUE[; did you mean KEY?]``. ``args`` are the command line's arguments."""
    lines = message.splitlines()
    if match := _UNRECOGNIZED.search(message):
        option, *values = match.group(1).split()
        suggestion = _closest(option.lstrip("-").split("=")[0], _keys(parser))
        got = f", got {' '.join(values)!r}" if values else ""
        return f"{option}: unknown option{got}{_did_you_mean(suggestion, '--')}"
    if match := _NO_OPTION.search(message):
        return _unknown(match.group(1), parser, args, _keys(parser))
    stack: list[tuple[int, str]] = []
    class_path = None
    for line in lines:
        class_path = (m.group(1) if (m := _CLASS_PATH.search(line)) else class_path)
        if m := _PARSER_KEY.match(line):
            indent = len(m.group(1))
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, m.group(2))]
        elif (m := _EXPECTED.match(line)) and "NoneType" not in m.group(2):
            key = _key([k for i, k in stack if i < len(m.group(1))])
            value = m.group(3)
            if value is None:  # a Union's branch: the value is on the Union's last line
                value = next((g.group(1) for g in map(_GIVEN.match, reversed(lines)) if g), "")
            return f"{_where(key, args)}: expected {_type_name(m.group(2))}, got {value!r}"
        elif m := _NOT_ACCEPTED.match(line):
            key = _key([k for i, k in stack if i < len(m.group(1))] + [m.group(2)])
            keys = _keys(parser) + [f"{key.split('.')[0]}.{name}"
                                    for name in _parameters(class_path)]
            return _unknown(key, parser, args, keys)
    return next((line.strip() for line in lines if line.strip()), message)


def _key(parts: list[str]) -> str:
    return ".".join(parts)


def _unknown(key: str, parser: ArgumentParser, args: list[str], keys: list[str]) -> str:
    file, value = _from_config(key, args)
    got = f", got {value!r}" if file and value is not None else ""
    return (f"{_where(key, args, file)}: unknown option{got}"
            f"{_did_you_mean(_closest(key, keys), '' if file else '--')}")


def _did_you_mean(key: str | None, prefix: str = "") -> str:
    return f"; did you mean {prefix}{key}?" if key else ""


def _closest(key: str, keys: list[str]) -> str | None:
    short = {_short(k): k for k in keys}
    match = difflib.get_close_matches(_short(key), list(short), n=1, cutoff=0.6)
    return match[0] if match else None


def _keys(parser: ArgumentParser) -> list[str]:
    return [action.dest for action in parser._actions
            if action.option_strings and action.dest not in ("help", "config")]


def _parameters(class_path: str | None) -> list[str]:
    """The keyword arguments of the model or data class named in the message."""
    if not class_path:
        return []
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(__import__(module, fromlist=[name]), name)
        names = []
        for klass in cls.__mro__:  # a **kwargs passes on to the base classes
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(klass.__init__).parameters
            names += [p for p in params if p != "self"
                      and params[p].kind not in (params[p].VAR_KEYWORD, params[p].VAR_POSITIONAL)]
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                break
        return names
    except (ImportError, AttributeError, TypeError, ValueError):
        return []


def _config_files(args: list[str]) -> list[str]:
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _on_command_line(key: str, args: list[str]) -> bool:
    return any(_short(arg.lstrip("-").split("=")[0]) == _short(key)
               for arg in args if arg.startswith("--"))


def _lookup(config: Any, parts: list[str]) -> tuple[bool, Any]:
    if not parts:
        return True, config
    if not isinstance(config, dict):
        return False, None
    if parts[0] in config:
        return _lookup(config[parts[0]], parts[1:])
    if "init_args" in config:
        return _lookup(config["init_args"], parts)
    return False, None


def _from_config(key: str, args: list[str]) -> tuple[str | None, Any]:
    """The last ``--config`` file that sets ``key``, and its value there."""
    if _on_command_line(key, args):
        return None, None
    parts = _short(key).split(".")
    for file in reversed(_config_files(args)):
        try:
            config = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        found, value = _lookup(config, parts)
        if found:
            return file, value
    return None, None


def _where(key: str, args: list[str], file: str | None = None) -> str:
    """``--key`` when it is on the command line, else ``key (from --config FILE)``."""
    if _on_command_line(key, args):
        return f"--{key}"
    file = file or _from_config(key, args)[0]
    files = [file] if file else _config_files(args)
    return f"{key} (from --config {', '.join(files)})" if files else f"--{key}"
