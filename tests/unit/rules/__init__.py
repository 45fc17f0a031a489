"""Tests of camwatch.rules, one file per module; support.py holds their shared helpers.

A package (unlike the rest of tests/unit) so that its files can share support.py, as tests/e2e do.
"""
