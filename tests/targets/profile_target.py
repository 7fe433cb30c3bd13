"""A target for continuous profiles: a worker thread whose exported calls burn CPU, and a thread
burning CPU outside any exported call.

    python profile_target.py

Thread ``requests`` calls ``handle`` (watched or traced by the test) over and over; ``handle``
spends its time in ``crunch`` (pure Python arithmetic, ~20 ms a call) and then sleeps 5 ms.
Thread ``background`` spends its time in ``churn`` (~20 ms a call, then 20 ms of sleep), never below ``handle``: its samples must carry
no link to a span. The ground truth is the code: which functions burn the CPU, and on which thread.
"""

import os
import threading
import time


def crunch(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def handle(i):
    value = crunch(60_000)
    time.sleep(0.005)
    return value + i


def churn(n):
    total = 0
    for i in range(n):
        total ^= i * 31
    return total


def requests():
    i = 0
    while True:
        handle(i)
        i += 1


def background():
    while True:
        churn(300_000)
        time.sleep(0.02)


threading.Thread(target=requests, name="requests", daemon=True).start()
threading.Thread(target=background, name="background", daemon=True).start()
print("ready %d" % os.getpid(), flush=True)
while True:
    time.sleep(1)
