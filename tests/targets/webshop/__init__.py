"""Handlers with known costs, served by real frameworks (uvicorn + Starlette, plain asyncio,
Django's server, gunicorn): each request sleeps or awaits SLEEP_MS and computes SPIN_MS, so a test
knows what trace and watch must report."""
