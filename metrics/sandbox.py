"""The bounded Jinja sandbox that query templates render in: every render has a size, step and time budget.

Why this exists: query templates come from users and render on the controller's event loop, on every tick of
every canary. Jinja's immutable sandbox keeps a template away from Python's internals, but not from the
machine: ``{{ 'x' * 10**10 }}`` allocates ten gigabytes, ``{{ 'x'.ljust(10**9) }}`` one, a recursive macro
or nested loops run for minutes, and any of them would stall every canary at once. Here every render gets a
budget, and a template that exceeds it raises ``LimitExceeded`` before the allocation or the loop happens:

- no value (string, list, a call's or filter's result, a ``~`` concatenation) longer than ``MAX_LENGTH``,
  and no integer wider than ``MAX_INT_BITS`` bits; sizes and repeat counts are checked *before* the
  operation (``*``, ``**``, ``%``, ``+``, ``str.ljust``, ``replace``, ``join``, ``format``, filters);
- at most ``MAX_OUTPUT`` characters written in all, counted wherever they go (the query, a macro's body, a
  ``{% set %}`` block), and at most ``MAX_BUILT`` in all the values built (so that many values each under
  the size limit, kept in a list, cannot add up to gigabytes either);
- at most ``MAX_STEPS`` loop iterations, calls and filter applications, and ``MAX_SECONDS`` of time.

Loops, outputs and ``~`` are counted by rewriting the parsed template (a ``for`` iterates through
``_loop``, an output goes through ``_emit``, ``a ~ b`` becomes ``_concat``) before Jinja compiles it.

What it must not do: know about canaries, variables or messages (``metrics.templates`` does), or loosen the
immutable sandbox it builds on (no globals; no attribute starting with ``_``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes, sandbox, visitor

MAX_LENGTH = 65_536
"""Longest string or list a template may build; a PromQL query is a few hundred characters."""
MAX_OUTPUT = 4 * MAX_LENGTH
"""Characters a render may write in all, macro bodies and set blocks included."""
MAX_BUILT = 16 * MAX_LENGTH
"""Total length of the strings and lists a render's calls, filters and operators build."""
MAX_INT_BITS = 4096
MAX_STEPS = 10_000
"""Loop iterations, calls and filter applications of one render."""
MAX_SECONDS = 0.5
MAX_SOURCE = MAX_LENGTH
"""Longest template source."""

# Filters a query has no use for and that only add ways to build large values or differ between renders.
_DROPPED_FILTERS = ("random", "batch", "slice", "pprint", "xmlattr", "urlize", "wordwrap", "filesizeformat")


class LimitExceeded(Exception):
    """A render went over its budget; the message says which limit and how to stay within it."""


@dataclasses.dataclass
class _Budget:
    deadline: float
    steps: int = 0
    output: int = 0
    built: int = 0

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"more than {MAX_STEPS} loop iterations, calls and filters in one render")
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {MAX_SECONDS:g}s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("fledge_template_budget", default=None)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # a template compiled here but rendered outside ``bounded``
        raise LimitExceeded("a query template renders only inside metrics.sandbox.bounded()")
    return budget


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """A fresh budget for the renders inside the block."""
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


# -- size checks ---------------------------------------------------------------------------------


def _sized(value: Any, what: str) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict):
        if len(value) > MAX_LENGTH:
            raise LimitExceeded(f"{what} would be {len(value)} long; the limit is {MAX_LENGTH}")
        _budget().built += len(value)
        if _budget().built > MAX_BUILT:
            raise LimitExceeded(f"the template builds more than {MAX_BUILT} characters and items in all")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"{what} is an integer wider than {MAX_INT_BITS} bits")
    return value


def _at_most(length: int, what: str) -> None:
    if length > MAX_LENGTH:
        raise LimitExceeded(f"{what} would be {length} long; the limit is {MAX_LENGTH}")


def _count(value: Any, what: str) -> int:
    """A width, repeat or tab count given to an operation: an int no larger than MAX_LENGTH."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0  # not a count: the operation raises its own TypeError
    _at_most(value, what)
    return value


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _printf_length(template: str, args: Any) -> int:
    """An upper bound of ``template % args``: every conversion as wide as its width or the longest argument."""
    values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
    widest = max((len(str(value)) for value in values), default=0)
    total = len(template)
    for match in _PRINTF.finditer(template):
        for number in match.groups():
            if number == "*":
                raise LimitExceeded("a '*' width in a % format is not allowed in a query template")
            if number is not None:
                _count(int(number), "a % format width")
        total += max(int(match.group(1) or 0), int(match.group(2) or 0), widest)
    return total


def _format_length(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """An upper bound of ``template.format(*args, **kwargs)``, refusing nested and oversized widths."""
    widest = max((len(str(value)) for value in (*args, *kwargs.values())), default=0)
    total = len(template)
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        spec = spec or ""
        if "{" in spec:
            raise LimitExceeded("a nested {} in a format spec is not allowed in a query template")
        numbers = [int(number) for number in re.findall(r"\d+", spec)]
        for number in numbers:
            _count(number, "a format width")
        total += max([widest, *numbers])
    return total


def _collect(items: Iterable[Any]) -> list[Any]:
    """The items of an iterable (a ``map`` generator, say), counted against the budget as they come."""
    budget = _budget()
    collected = []
    for item in items:
        collected.append(item)
        budget.built += len(item) if isinstance(item, str | list | tuple) else 1
        if budget.built > MAX_BUILT:
            raise LimitExceeded(f"the template builds more than {MAX_BUILT} characters and items in all")
    return collected


def _join_length(separator: str, items: list[Any]) -> int:
    return sum(len(item) if isinstance(item, str) else len(str(item)) for item in items) + \
        len(separator) * max(len(items) - 1, 0)


def _replace_length(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(old, str) and isinstance(new, str)):
        return len(text)
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * len(new)


# Methods of str that build a larger string, and the length of what they would build.
_STR_METHODS: dict[str, Callable[..., int]] = {
    "ljust": lambda s, width=0, *_: max(len(s), _count(width, "a width")),
    "rjust": lambda s, width=0, *_: max(len(s), _count(width, "a width")),
    "center": lambda s, width=0, *_: max(len(s), _count(width, "a width")),
    "zfill": lambda s, width=0, *_: max(len(s), _count(width, "a width")),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _count(tabsize, "a tab size"),
    "replace": _replace_length,
}


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str method call that would build more than MAX_LENGTH; returns the args to call with."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if not isinstance(owner, str):
        return args
    if name == "join" and len(args) == 1:
        items = _collect(args[0])  # a generator would be consumed by the check; the call gets the list
        _at_most(_join_length(owner, items), "the joined string")
        return (items,)
    estimate = _STR_METHODS.get(name)
    if estimate is not None:
        with contextlib.suppress(TypeError):  # wrong arguments: the call itself says so
            _at_most(estimate(owner, *args, **kwargs), f"the result of str.{name}")
    return args


# -- filters -------------------------------------------------------------------------------------


def _filter_check(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Checks before a filter runs: counts it takes and the size of what it would build."""
    for value in (*args[1:], *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            _count(abs(value), f"an argument of the {name} filter")
    value = args[0] if args else None
    rest = args[1:]
    if name == "replace" and isinstance(value, str) and len(rest) >= 2:
        _at_most(_replace_length(value, *rest[:3]), "the result of the replace filter")
    elif name == "join" and isinstance(value, Iterable) and not isinstance(value, str | Mapping):
        items = _collect(value)
        _at_most(_join_length(str(rest[0]) if rest else str(kwargs.get("d", "")), items),
                 "the result of the join filter")
    elif name == "indent" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _at_most(len(value) + (value.count("\n") + 1) * width, "the result of the indent filter")
    elif name == "format" and isinstance(value, str):
        _at_most(_printf_length(value, kwargs or rest), "the result of the format filter")
    elif name == "sum":
        start = rest[1] if len(rest) >= 2 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            raise LimitExceeded("the sum filter adds numbers only in a query template")


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = getattr(function, "jinja_pass_arg", None)

    @functools.wraps(function)
    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        _budget().step()
        # A filter marked pass_context/pass_eval_context/pass_environment gets that object first.
        own = args[1:] if pass_arg is not None else args
        if name == "join" and own and isinstance(own[0], Iterable) and not isinstance(own[0], str | Mapping):
            own = (_collect(own[0]), *own[1:])  # checked and joined from the same list
            args = (args[0], *own) if pass_arg is not None else own
        _filter_check(name, own, kwargs)
        return _sized(function(*args, **kwargs), f"the result of the {name} filter")

    return bounded_filter


# -- the environment -----------------------------------------------------------------------------


def _repeat_length(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int) and not isinstance(times, bool):
            _at_most(len(sequence) * max(times, 0), "a repeated string or list")
    integers = all(isinstance(side, int) and not isinstance(side, bool) for side in (left, right))
    if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"a product wider than {MAX_INT_BITS} bits")


def _power_size(base: Any, exponent: Any) -> None:
    integers = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if integers and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
        raise LimitExceeded(f"a power wider than {MAX_INT_BITS} bits")


class BoundedSandbox(sandbox.ImmutableSandboxedEnvironment):
    """The immutable sandbox, without globals, with every operation that can grow a value checked first."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.clear()  # no range(), cycler, joiner, namespace, lipsum: a query needs none of them
        for name in _DROPPED_FILTERS:
            self.filters.pop(name, None)
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _budget()
        if operator == "*":
            _repeat_length(left, right)
        elif operator == "**":
            _power_size(left, right)
        elif operator == "%" and isinstance(left, str):
            _at_most(_printf_length(left, right), "the formatted string")
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _at_most(len(left) + len(right), "the sum")
        return _sized(super().call_binop(context, operator, left, right), f"the result of {operator!r}")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        _budget().step()
        for value in (*args, *kwargs.values()):
            _sized(value, "an argument")
        # Inside loops and blocks Jinja passes its own _loop_vars/_block_vars, which Context.call strips later;
        # the size estimate must see only the call's real arguments, or it fails and checks nothing.
        real = {key: value for key, value in kwargs.items() if key not in ("_loop_vars", "_block_vars")}
        args = _check_method(__obj, args, real)
        return _sized(super().call(__context, __obj, *args, **kwargs), "the result of a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja hands out str.format and format_map as its own wrapper, at attribute access: check it there.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        owner, is_map = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            values = dict(args[0]) if is_map and args and isinstance(args[0], Mapping) else kwargs
            _at_most(_format_length(owner, () if is_map else args, values), "the formatted string")
            return wrapped(*args, **kwargs)

        return checked

    def bounded_template(self, source: str) -> jinja2.Template:
        """The template compiled with its loops, outputs and ``~`` counted; raises TemplateSyntaxError."""
        if len(source) > MAX_SOURCE:
            raise LimitExceeded(f"the template is {len(source)} characters long; the limit is {MAX_SOURCE}")
        tree = _Counted().visit(self.parse(source))
        return self.from_string(tree)


def _helper(name: str) -> nodes.ImportedName:
    return nodes.ImportedName(f"{__name__}.{name}")


class _Counted(visitor.NodeTransformer):
    """Route loops, outputs and concatenations of a parsed template through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(_helper("_loop"), [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [nodes.Call(_helper("_emit"), [child], [], None, None, lineno=child.lineno)
                      for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(_helper("_concat"), list(node.nodes), [], None, None, lineno=node.lineno)


def _loop(iterable: Any) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _emit(value: Any) -> Any:
    budget = _budget()
    budget.output += len(value) if isinstance(value, str) else len(str(value))
    if budget.output > MAX_OUTPUT:
        raise LimitExceeded(f"the template writes more than {MAX_OUTPUT} characters")
    return value


def _concat(*parts: Any) -> str:
    texts = [str(part) for part in parts]
    _at_most(sum(len(text) for text in texts), "a ~ concatenation")
    return "".join(texts)
