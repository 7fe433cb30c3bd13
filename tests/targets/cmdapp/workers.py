import _thread
import threading
import time

_stop = threading.Event()
_threads = []


def worker_loop(number, stop):
    label = f"job-{number}"
    processed = 0
    while not stop.wait(0.01):
        processed += 1
    return label


RAW_NATIVE_ID = []  # what the _thread thread says its native id is (ground truth for `thread`)


def raw_loop(stop):
    # A thread started behind threading's back: it has frames but no Thread object.
    RAW_NATIVE_ID.append(_thread.get_native_id())
    while not stop.is_set():
        time.sleep(0.01)


def start(count):
    for number in range(count):
        thread = threading.Thread(target=worker_loop, args=(number, _stop), name=f"cmdapp-worker-{number}")
        thread.daemon = True
        thread.start()
        _threads.append(thread)
    _thread.start_new_thread(raw_loop, (_stop,))


def stop():
    _stop.set()
    for thread in _threads:
        thread.join(2)
