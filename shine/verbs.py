"""The common part of every ``register(subparsers)`` that adds a ``shine`` verb: the sub-parser and its handler.

A verb's handler documents it once, and that docstring is what ``shine -h`` and ``shine VERB -h`` show (as click
takes a command's help from its function): the first paragraph is the one-line ``help`` of the verb list, the
rest the ``description``. Each package still declares its own options.

>>> def _hello(args):
...     '''say hello
...
...     Print a greeting and
...     exit 0.
...     '''
>>> verb_texts(_hello)
('say hello', 'Print a greeting and exit 0.')
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["add_verb", "verb_texts"]


def verb_texts(run: Callable[..., Any]) -> tuple[str | None, str | None]:
    """``(help, description)`` of a handler: its docstring's first paragraph and the rest, each on one line
    (whitespace collapsed, as argparse prints them anyway); None for a part that is missing."""
    doc = inspect.getdoc(run)
    if not doc:
        return None, None
    paragraphs = [" ".join(part.split()) for part in doc.split("\n\n")]
    return paragraphs[0], " ".join(paragraphs[1:]) or None


def add_verb(subparsers: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
             **kwargs: Any) -> argparse.ArgumentParser:
    """Add sub-command ``name`` whose parsed arguments go to ``run`` (``args.func(args)`` in :mod:`shine.cli`,
    returning the exit status); its help and description come from ``run``'s docstring (:func:`verb_texts`)
    unless ``kwargs`` give them. Returns the sub-command's parser, for its options."""
    help_text, description = verb_texts(run)
    kwargs.setdefault("help", help_text)
    kwargs.setdefault("description", description)
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(func=run)
    return parser
