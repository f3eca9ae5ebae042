"""Hostile-input suite: bad input must give exit 1 and one ``Error:`` line, and change nothing.

A package (this file) so that its ``conftest`` does not clash with ``tests/conftest.py``.
"""
