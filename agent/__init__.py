"""Peeka's agent: runs inside the target process.

Standard library only, valid
on Python 3.9 to 3.14. Inside a target it is loaded from a path under a private module name
(see ``boot.py``); every import inside the package is relative for that reason.
"""

__version__ = "0.1.0"
