"""The Pythons the package claims are the ones its tox environments test."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tox_tests_every_python_setup_cfg_claims() -> None:
    """tox.ini's envlist has one pyXY per 'Programming Language :: Python :: X.Y' classifier."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    classifiers = setup["metadata"]["classifiers"]
    claimed = set(re.findall(r"Python :: 3\.(\d+)$", classifiers, re.MULTILINE))
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    match = re.search(r"py3\{([\d,]+)\}", tox["tox"]["envlist"])
    assert match, tox["tox"]["envlist"]
    assert set(match.group(1).split(",")) == claimed
