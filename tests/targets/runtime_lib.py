"""Functions and a class for `peeka source`; the tests copy this file next to the target and edit the copy."""


def price(quantity, unit=3):
    # Whole cents; the tests change this line on disk after the target loaded it.
    total = quantity * unit
    return total


class Basket:
    """A class whose methods `source` shows."""

    def __init__(self):
        self.items = []

    def add(self, name, quantity=1):
        self.items.append((name, quantity))
        return len(self.items)

    def total(self):
        return sum(price(q) for _, q in self.items)


def untouched(x):
    return x + 1

import os  # noqa: E402 (here, so that the lines above stay where the tests expect them)


def pid_of():
    # A call on a module this file imports compiles differently from one on any other name (3.11+);
    # the form feed before `import os` is a page break, not a line (str.splitlines makes it one).
    return os.getpid()


def tagged(cls):
    return cls


@tagged
class Tagged:
    """A decorated class: its definition starts at the decorator (as __firstlineno__ says on 3.13+)."""

    def sep(self):
        return os.sep
