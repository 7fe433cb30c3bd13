"""``peeka tui PID``: a live dashboard over one attached process (Textual; a client-only dependency).

Layout: ``app.py`` (the app: header, status line, view switching, clean quit), ``header.py`` (the
process facts always shown), ``view.py`` (what every view builds on), and one module per view under
``views/``. A view is added by writing one module with a ``View`` class and one entry in
``app.VIEWS`` (its number key). Every view talks to the target through the app's one
``peeka.session.Session``: requests run in worker threads, stream events arrive as messages.
"""
