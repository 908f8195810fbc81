"""The one typing rule and the one check rule of every option (``services.options``), for the CLI, the YAML
configs, the paper configs and the API.

Typing (:func:`coerce`, by the option's ``kind``): a list is a list or a comma string (a list of numbers also
one number), a mapping a dict or ``k=v,k=v``, a number a number or its string; anything else is a RequestError
naming the option, the value and the type expected. Checking (:func:`check_value`): the option's choices, its
range, a list not empty. Every message is one line.
"""
from __future__ import annotations

import difflib
import math
import os

from services.options import BY_NAME, Option, flag


class RequestError(ValueError):
    """Bad input: printed as one line, exit status 2, before Ray starts and before anything is stored."""


def read_yaml(path: str, what: str):
    """The YAML document at ``path`` (None for an empty file); a missing or malformed file is a one-line
    RequestError naming it as ``what`` (the flag that gave it: ``--config``, ``--grid-file``)."""
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise RequestError(f"{what} {path!r}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RequestError(f"{what} {path!r}: malformed YAML{where}: {problem}") from None


# ------------------------------------------------------------------------------ one typing rule
def _bad(name: str, value, expected: str) -> RequestError:
    return RequestError(f"{flag(name)} {value!r}: expected {expected}")


def _scalar(text: str):
    """'3' -> 3, '0.5' -> 0.5, anything else stays the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _int(name: str, value):
    if isinstance(value, str):
        value = _scalar(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, "an integer (a number or its string)")
    return value


def _float(name: str, value, expected: str = "a number (a number or its string)"):
    if isinstance(value, str):
        value = _scalar(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, expected)
    return float(value)


def _items(name: str, value) -> list:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _bad(name, value, "a list or a comma string a,b,...")


def _mapping(name: str, value) -> dict:
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for item in filter(None, (s.strip() for s in value.split(","))):
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise _bad(name, value, f"a mapping (a dict or k=v,k=v); {item!r} is not k=v")
            items.append((key.strip(), text.strip()))
    else:
        raise _bad(name, value, "a mapping (a dict or k=v,k=v)")
    if not all(isinstance(k, str) for k, _ in items):
        raise _bad(name, value, "a mapping with string keys")
    return {k: _scalar(v) if isinstance(v, str) else v for k, v in items}


def _names(name: str, value) -> list:
    items = _items(name, value)
    if not all(isinstance(v, str) for v in items):
        raise _bad(name, value, "a list of names or a comma string a,b,...")
    return items


def _numbers(name: str, value) -> list:
    one = isinstance(value, (int, float)) and not isinstance(value, bool)   # a lone number: a list of one
    return [_float(name, v, "a list of numbers or a comma string a,b,...") for v in ([value] if one else _items(name, value))]


def _auto(name: str, value):
    return "auto" if str(value).strip() == "auto" else _float(name, value, "a number or auto")


def _bool(name: str, value) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise _bad(name, value, "true or false")
    return value


def _str(name: str, value) -> str:
    if isinstance(value, os.PathLike):   # a path option given as a pathlib.Path
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _bad(name, value, "a string")
    return value


KINDS = {"str": _str, "bool": _bool, "int": _int, "float": _float, "auto": _auto, "names": _names,
         "numbers": _numbers, "mapping": _mapping}


def coerce(name: str, value, default=None):
    """Option ``name``'s value by the one typing rule (its ``kind``); ``None`` stays None where the default is None."""
    if value is None and default is None:
        return None
    return KINDS[BY_NAME[name].kind if name in BY_NAME else "str"](name, value)


# ------------------------------------------------------------------------------ one check rule
def _choice(flag: str, value, allowed, *, what: str | None = None) -> None:
    """RequestError unless ``value`` is one of ``allowed``: '<flag> <value> is not one of ...', with the
    nearest allowed names when there are some."""
    if value not in allowed:
        head = f"unknown {what} {value!r}" if what else f"{flag} {value!r} is not one of"
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(near)}?)" if near and len(allowed) > 6 else ""
        raise RequestError(f"{head}{'; choose from' if what else ''} {', '.join(map(str, allowed))}{hint}")


def _number(flag: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False, integer=False) -> None:
    """RequestError unless ``value`` is a finite number (an integer where asked) within [lo, hi] (open ends where
    asked)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
            raise RequestError(f"{flag} {value!r} must be an integer >= {lo}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{flag} {value!r} must be a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise RequestError(f"{flag} {value} must be {'>' if lo_open else '>='} {lo:g}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise RequestError(f"{flag} {value} must be {'<' if hi_open else '<='} {hi:g}")


def check_value(name: str, value, shown: str | None = None) -> None:
    """RequestError unless ``value`` (typed) is one option ``name`` allows: its choices, its range, a list not
    empty. ``shown``: how the message names the value's source (default: the flag)."""
    o = BY_NAME[name]
    shown = shown or o.cli
    if value is None or (o.kind == "auto" and value == "auto"):
        return
    if o.kind in ("names", "numbers"):
        if not value and o.default != []:
            allowed = o.allowed()
            raise RequestError(f"{shown} is empty; " + (f"choose from {', '.join(allowed)}" if allowed else
                                                        "give numbers a,b,..."))
        for v in value:
            _check_one(o, v, shown)
    elif o.kind != "mapping":
        _check_one(o, value, shown)


def _check_one(o: Option, value, shown: str) -> None:
    allowed = o.allowed()
    if allowed is not None:
        _choice(shown, value, allowed, what=o.what)
    if o.kind in ("int", "float", "auto", "numbers"):
        _number(shown, value, lo=o.lo, hi=o.hi, lo_open="lo" in o.open, hi_open="hi" in o.open,
                integer=o.kind == "int")


def unknown_names(unknown, names, what: str = "option") -> RequestError:
    """'unknown option lrz (did you mean lrs, lr?)': the nearest names by difflib, not the whole list."""
    parts = []
    for u in sorted(unknown):
        near = difflib.get_close_matches(str(u), sorted(names), n=3, cutoff=0.6)
        parts.append(f"{u!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    return RequestError(f"unknown {what}{'s' if len(parts) > 1 else ''} {'; '.join(parts)}")
