_store = {f"key-{i}": i * i for i in range(100)}


def get(key, default=None):
    return _store.get(key, default)
