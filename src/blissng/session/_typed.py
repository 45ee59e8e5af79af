"""Typed code: the compile rule, how its errors read, and the builtins a command gets.

What a console, the API or the setup hands to a session's :class:`CommandRunner` is Python
text. :func:`compile_input` splits it into statements and a final expression (its value is
the result); :class:`Source` runs it in a worker thread or, with a top-level ``await``, on the
event loop; ``!cmd`` is a shell command. :func:`error_text` is an error on one line,
:func:`user_traceback` the traceback from the typed code on (``last_error()``). The builtins
that would read the server's terminal (``input``, ``breakpoint``, interactive ``help``) are
replaced by ones that say why not.
"""

from __future__ import annotations
import __future__

import ast
import inspect
import pydoc
import subprocess
import traceback
from types import CodeType, TracebackType
from typing import Any

from blissng.scans import PRINTS_ITS_RESULT

FILENAME = "<stdin>"  # what tracebacks call typed code (last_error() starts there)


# ---------------------------------------------------------------------- the compile rule


def future_flags(namespace: dict[str, Any]) -> int:
    """Compiler flags of the ``from __future__ import ...`` done in ``namespace``."""
    flags = 0
    for value in namespace.values():
        # __future__ internals: its features' class has no public name
        if isinstance(value, __future__._Feature):
            flags |= value.compiler_flag
    return flags


def compile_input(text: str, flags: int = 0) -> tuple[CodeType, CodeType | None]:
    """Statements to exec and, when the input ends with an expression, that expression to
    eval (its value is the result: ``x = 2; x * 3`` gives 6). Raises SyntaxError."""
    return _compile_tree(_parse(text), flags)


def _parse(text: str) -> ast.Module:
    return ast.parse(text, FILENAME, "exec", type_comments=False)


def _compile_tree(tree: ast.Module, flags: int) -> tuple[CodeType, CodeType | None]:
    """:func:`compile_input` of a parsed input (its final expression is taken out of it)."""
    flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    last: CodeType | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        statement = tree.body.pop()
        assert isinstance(statement, ast.Expr)
        expression = ast.Expression(statement.value)
        last = compile(expression, FILENAME, "eval", flags=flags, dont_inherit=True)
    body = compile(tree, FILENAME, "exec", flags=flags, dont_inherit=True)
    return body, last


def is_coroutine_code(code: CodeType | None) -> bool:
    return code is not None and bool(code.co_flags & inspect.CO_COROUTINE)


def _final_callee(tree: ast.Module) -> str | None:
    """``wa`` for input whose final expression is a call of a plain name (``wa()``)."""
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
        func = last.value.func
        if isinstance(func, ast.Name):
            return func.id
    return None


class Source:
    """Typed code, compiled by the rule above, runnable in a thread or on the loop.

    ``result_printed``: the final expression was a call of a command that prints its result
    itself (``wa()`` prints a table and returns the positions): a console shows it once, not
    also as ``Out [n]: {...}``. The value is the result all the same (``_``, the API)."""

    def __init__(self, text: str, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.shell: str | None = None
        self.result_printed = False
        stripped = text.strip()
        if stripped.startswith("!"):
            self.shell = stripped[1:]
            self.body, self.last = None, None
            self.is_async = False
            return
        tree = _parse(text)  # once: the callee is read before the tree is compiled
        self._callee = _final_callee(tree)
        self.body, self.last = _compile_tree(tree, future_flags(namespace))
        self.is_async = is_coroutine_code(self.body) or is_coroutine_code(self.last)

    def _final_value(self) -> Any:
        """Evaluate the final expression, noting whether its callee prints the result."""
        if self._callee is not None:
            callee = self.namespace.get(self._callee)
            self.result_printed = bool(getattr(callee, PRINTS_ITS_RESULT, False))
        return eval(self.last, self.namespace)  # type: ignore[arg-type]

    def run_in_thread(self) -> tuple[bool, Any]:
        if self.shell is not None or self.body is None:
            shell_escape(self.shell or "")
            return False, None
        exec(self.body, self.namespace)
        if self.last is None:
            return False, None
        return True, self._final_value()

    async def run_on_loop(self) -> tuple[bool, Any]:
        """Input with a top-level ``await`` (a blocking call in it blocks the loop, like any
        async code)."""
        outcome = eval(self.body, self.namespace)  # type: ignore[arg-type]
        if inspect.isawaitable(outcome):
            await outcome
        if self.last is None:
            return False, None
        result = self._final_value()
        if is_coroutine_code(self.last):
            result = await result
        return True, result


def shell_escape(command: str) -> None:
    """``!cmd``: run in a subprocess without the server's stdin; print its output."""
    completed = subprocess.run(
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    print(completed.stdout, end="")


# ---------------------------------------------------------------------- errors


def error_text(error: BaseException) -> str:
    """``ZeroDivisionError: division by zero`` (a SyntaxError with its line), on one line."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        return f"{type(error).__name__}: {error.msg} (line {error.lineno})"
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def user_traceback(error: BaseException) -> str:
    """The traceback from the typed code on (the runner's own frames dropped)."""
    tb: TracebackType | None = error.__traceback__
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    if tb is None and isinstance(error, SyntaxError):  # raised by the compiler, not by code
        return "".join(traceback.format_exception_only(type(error), error))
    return "".join(traceback.format_exception(type(error), error, tb or first))


# ---------------------------------------------------------------------- builtins


def refuse_input(prompt: object = "") -> str:
    """``input()`` in a command: refused with a reason (the keyboard belongs to a prompt)."""
    raise RuntimeError(
        "input() is not available in a blissng command: the server has no terminal to read "
        "and a console's keystrokes belong to its prompt; pass the value as an argument"
    )


def refuse_breakpoint(*args: Any, **kwargs: Any) -> None:
    """``breakpoint()``/``pdb`` in a command: refused with a reason."""
    raise RuntimeError(
        "breakpoint()/pdb is not available in a blissng command (it would read the "
        "server's terminal); use last_error() after an exception, or debug in a script"
    )


class CommandHelp:
    """``help(obj)`` prints the documentation; ``help()`` (interactive) is refused."""

    def __repr__(self) -> str:
        return "Type help(object) for help about object."

    def __call__(self, *args: Any) -> None:
        if not args:
            print("interactive help() is not available in a console: use help(object)")
            return
        renderer = pydoc.plaintext  # type: ignore[attr-defined]
        print(pydoc.render_doc(args[0], renderer=renderer), end="")
