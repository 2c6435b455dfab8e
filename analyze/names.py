"""Kernel and operator names for the terminal: demangled, and shortened in the middle to a width.

Short names are the same on every machine (the exact-output test relies on it): a mangled name
becomes its qualified function name by a small pure-Python reader of the Itanium mangling
(``_ZN7cutlass13device_kernelI...`` -> ``cutlass::device_kernel<…>``). Full names (``--wide``)
are demangled by ``c++filt`` when it is installed, else left as they are.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable

ELLIPSIS = "…"
ELIDED_ARGS = "<…>"
MANGLED_PREFIX = "_Z"
#: The shortest template-argument text worth showing between ``<`` and ``>``.
MIN_SHOWN_ARGS = 8
#: Share of a middle-cut name kept from its start (the start names the thing; the end tells
#: siblings apart).
HEAD_SHARE = 0.6
CXXFILT_TIMEOUT_S = 10
#: Itanium abbreviations for std:: namespaces (``St``: ``std``) used in nested names.
_STD_PREFIXES = {"St": "std"}
_ANONYMOUS_NAMESPACE = "_GLOBAL__N_1"
_SOURCE_NAME = re.compile(r"\d+")
ANONYMOUS = "(anonymous namespace)"
#: Stands for ANONYMOUS while a signature is split, so that its parentheses are not taken for
#: a parameter list.
_ANONYMOUS_MARK = "\x01"
#: Namespace and class qualifiers inside template arguments (``at::native::``), dropped in
#: short names: the names they qualify tell kernels apart.
_QUALIFIERS = re.compile(r"(?:\b[A-Za-z_]\w*::|\x01::)+")


def _source_names(mangled: str) -> tuple[list[str], bool] | None:
    """The components of the name in ``_Z<encoding>`` up to its template arguments, and whether
    template arguments follow; None for what this small reader does not know."""
    position = len(MANGLED_PREFIX)
    nested = mangled.startswith("N", position)
    position += nested
    if mangled.startswith("L", position):  # internal linkage (a static function)
        position += 1
    while nested and position < len(mangled) and mangled[position] in "rVKRO":  # member qualifiers
        position += 1
    components: list[str] = []
    while position < len(mangled):
        prefix = mangled[position : position + 2]
        if prefix in _STD_PREFIXES:
            components.append(_STD_PREFIXES[prefix])
            position += 2
            continue
        match = _SOURCE_NAME.match(mangled, position)
        if match is None:
            break
        length, start = int(match.group()), match.end()
        if length == 0 or start + length > len(mangled):
            return None
        name = mangled[start : start + length]
        components.append(ANONYMOUS if name == _ANONYMOUS_NAMESPACE else name)
        position = start + length
        if not nested:
            break
    if not components:
        return None
    return components, mangled.startswith("I", position)


def function_name(name: str) -> str | None:
    """``cutlass::device_kernel<…>`` for ``_ZN7cutlass13device_kernelI...``: the qualified
    function name of a mangled name, template arguments elided; None when ``name`` is not one
    this reader knows."""
    if not name.startswith(MANGLED_PREFIX):
        return None
    parsed = _source_names(name)
    if parsed is None:
        return None
    components, templated = parsed
    return "::".join(components) + (ELIDED_ARGS if templated else "")


def demangle_all(names: Iterable[str]) -> dict[str, str]:
    """Full demangled forms of the mangled ``names`` by ``c++filt`` (one process for all); a name
    c++filt is missing for, or cannot read, maps to itself."""
    mangled = sorted({name for name in names if name.startswith(MANGLED_PREFIX) and "\n" not in name})
    cxxfilt = shutil.which("c++filt")
    if not mangled or cxxfilt is None:
        return {name: name for name in mangled}
    try:
        done = subprocess.run(
            [cxxfilt], input="\n".join(mangled) + "\n", capture_output=True, text=True,
            timeout=CXXFILT_TIMEOUT_S, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {name: name for name in mangled}  # a broken c++filt costs the wide names only
    lines = done.stdout.splitlines()
    return dict(zip(mangled, lines, strict=True)) if len(lines) == len(mangled) else {n: n for n in mangled}


def middle_cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by replacing its middle with an ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = max(1, round((width - 1) * HEAD_SHARE))
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def _top_level(text: str, opening: str, closing: str) -> tuple[int, int] | None:
    """Start and end (exclusive) of the first ``opening``...``closing`` group at depth 0."""
    depth, start = 0, -1
    for index, char in enumerate(text):
        if char == opening:
            if depth == 0:
                start = index
            depth += 1
        elif char == closing and depth:
            depth -= 1
            if depth == 0:
                return start, index + 1
    return None


def _signature_parts(name: str) -> tuple[str, str | None]:
    """A C++ signature as (qualified name, template arguments or None), without its return type
    and parameter list: ``void a::f<int, 2>(float*)`` -> (``a::f``, ``int, 2``). Qualifiers
    inside the template arguments are dropped."""
    text = name.removeprefix("void ").replace(ANONYMOUS, _ANONYMOUS_MARK)
    brackets = _top_level(text, "<", ">")
    parens = _top_level(text, "(", ")")
    arguments = None
    if brackets is not None and (parens is None or brackets[0] < parens[0]):
        qualified = text[: brackets[0]]
        arguments = _QUALIFIERS.sub("", text[brackets[0] + 1 : brackets[1] - 1]).replace(_ANONYMOUS_MARK, ANONYMOUS)
    else:
        qualified = text[: parens[0]] if parens is not None else text
    return qualified.replace(_ANONYMOUS_MARK, ANONYMOUS), arguments


def _shorter_qualifiers(qualified: str, width: int) -> str:
    """``at::…::elementwise_kernel``: the first and last components kept, the middle ones cut."""
    parts = qualified.split("::")
    if len(parts) > 2:
        candidate = f"{parts[0]}::{ELLIPSIS}::{parts[-1]}"
        if len(candidate) <= width:
            return candidate
    return qualified


def short_name(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, the function name kept where it can be.

    Mangled names are read first (function_name). C++ signatures lose, in this order until
    they fit: the return type and parameter list, the end of the template arguments, the
    template arguments, the middle qualifiers, all qualifiers; a function name still too long
    is cut in the middle.
    """
    name = function_name(name) or name
    if len(name) <= width:
        return name
    if "::" not in name and "<" not in name:
        return middle_cut(name, width)
    qualified, arguments = _signature_parts(name)
    elided = qualified + (ELIDED_ARGS if arguments is not None else "")
    candidates = []
    if arguments is not None:
        candidates.append(f"{qualified}<{arguments}>")
        room = width - len(qualified) - len("<>")
        if room >= MIN_SHOWN_ARGS:  # the first arguments: the later ones repeat the earlier ones' types
            candidates.append(f"{qualified}<{arguments[: room - 1]}{ELLIPSIS}>")
    candidates.append(elided)
    suffix = ELIDED_ARGS if arguments is not None else ""
    candidates.append(_shorter_qualifiers(qualified, width - len(suffix)) + suffix)
    candidates.append(qualified.rsplit("::", 1)[-1] + suffix)  # the function name alone
    for candidate in candidates:
        if len(candidate) <= width:
            return candidate
    return middle_cut(candidates[-1], width)
