import time

ITEMS = {i: {"id": i, "name": "item-%d" % i, "cents": 100 * i} for i in range(1, 50)}


def find(item_id):
    time.sleep(0.003)  # a database round trip
    item = ITEMS.get(item_id)
    if item is None:
        raise KeyError(item_id)
    return dict(item)
