"""newsdedup: near-duplicate news detection.

The core engine lives here and never imports Flask; ``service`` (HTTP) and
``workers`` (queue consumers) are thin entry points over it.
"""

__version__ = "0.1.0"
