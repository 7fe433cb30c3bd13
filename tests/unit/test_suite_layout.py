"""The suite's own layout: what would stop pytest from collecting it in a clean clone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.parallel

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_names() -> None:
    # tests/ has no packages (rootdir-relative imports): two test files of one name, in two folders,
    # stop the whole collection with "import file mismatch".
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
