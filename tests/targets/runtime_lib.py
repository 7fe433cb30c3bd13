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
