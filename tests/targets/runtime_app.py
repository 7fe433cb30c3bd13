"""Target for the runtime views (thread -n/-b, top, memory): features chosen by arguments.

    burn      thread "burner" spends its CPU in burn_hot (7 units) and burn_cool (3 units)
    idle      thread "idler" sleeps in a loop; thread "waiter" waits on an Event
    deadlock  threads "deadlock-a" and "deadlock-b" take RLocks LOCK_A/LOCK_B in opposite orders, and
              "plain-a"/"plain-b" plain Locks PLAIN_A/PLAIN_B (no owner recorded)
    leak      thread "leaker" appends 50 LeakRecord objects to the list LEAK every 20 ms
    inprocess start the agent in this process (no attach needed), as tests/targets/cmd_target.py does

Prints "ready" once everything runs (and the deadlock has happened); exits when stdin closes.
"""

import sys
import threading
import time

LOCK_A = threading.RLock()
LOCK_B = threading.RLock()
PLAIN_A = threading.Lock()
PLAIN_B = threading.Lock()
LEAK = []
STOP = threading.Event()


def work(units):
    total = 0
    for i in range(units * 1000):
        total += i * i % 7
    return total


def burn_hot():
    return work(7)


def burn_cool():
    return work(3)


def burner():
    while not STOP.is_set():
        burn_hot()
        burn_cool()


def idler():
    while not STOP.is_set():
        time.sleep(0.05)


def waiter():
    STOP.wait()


class LeakRecord:
    def __init__(self, n):
        self.n = n
        self.payload = [n] * 8


def leaker():
    n = 0
    while not STOP.wait(0.02):
        for _ in range(50):
            LEAK.append(LeakRecord(n))
            n += 1


def take_a_then_b(barrier):
    with LOCK_A:
        barrier.wait()
        with LOCK_B:
            pass


def take_b_then_a(barrier):
    with LOCK_B:
        barrier.wait()
        LOCK_A.acquire()
        LOCK_A.release()


def take_plain(first, second, barrier):
    first.acquire()
    barrier.wait()
    second.acquire()


def start(target, name, *args):
    thread = threading.Thread(target=target, name=name, args=args, daemon=True)
    thread.start()
    return thread


def main(features):
    if "burn" in features:
        start(burner, "burner")
    if "idle" in features:
        start(idler, "idler")
        start(waiter, "waiter")
    if "leak" in features:
        start(leaker, "leaker [list]")  # brackets: printed as they are, never read as markup
    if "deadlock" in features:
        barrier = threading.Barrier(2)
        start(take_a_then_b, "deadlock-a", barrier)
        start(take_b_then_a, "deadlock-b", barrier)
        plain = threading.Barrier(2)
        start(take_plain, "plain-a", PLAIN_A, PLAIN_B, plain)
        start(take_plain, "plain-b", PLAIN_B, PLAIN_A, plain)
        time.sleep(0.2)  # both are past the barrier and stuck on their second lock
    if "inprocess" in features:
        import inprocess_agent

        inprocess_agent.start()
    print("ready", flush=True)
    sys.stdin.read()
    STOP.set()


if __name__ == "__main__":
    main(set(sys.argv[1:]))
