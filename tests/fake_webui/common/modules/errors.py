"""``modules/errors.py``: the WebUI reports errors (console) and goes on; the fake records them."""

# ruff: noqa: BLE001 - like the WebUI, any exception is reported and processing goes on

from __future__ import annotations

import sys
import traceback

from modules import _fake

exception_records: list = []


def record_exception():
    _, e, tb = sys.exc_info()
    if e is not None:
        exception_records.append((e, traceback.extract_tb(tb)))


def report(message: str, *, exc_info: bool = False) -> None:
    """Print an error message to stderr, with the current exception's traceback if exc_info."""
    record_exception()
    text = message
    if exc_info:
        text += "\n" + traceback.format_exc()
    _fake.reported.append(text)
    print("***", text, file=sys.stderr)


def print_error_explanation(message):
    record_exception()
    _fake.reported.append(message)
    print(message, file=sys.stderr)


def display(e: Exception, task, *, full_traceback=False):
    record_exception()
    text = f"{task or 'error'}: {type(e).__name__}: {e}"
    _fake.reported.append(text)
    print(text, file=sys.stderr)


already_displayed: dict = {}


def display_once(e: Exception, task):
    if task in already_displayed:
        return
    display(e, task)
    already_displayed[task] = 1


def run(code, task):
    try:
        code()
    except Exception as e:
        display(e, task)
