def with_tax(cents, rate=0.2):
    return round(cents * (1 + rate))


def discount(cents, code):
    if code == "HALF":
        return cents // 2
    return cents
