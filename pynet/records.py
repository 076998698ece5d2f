"""Helpers for the stored records (plain dataclasses serialised as JSON dicts)."""

from __future__ import annotations

from dataclasses import fields


def known_fields(cls, d: dict) -> dict:
    """Drop keys a newer pynet may have stored, so an older one can still read the record."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
