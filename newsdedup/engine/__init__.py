"""The worker-side pipeline: queued articles through every stage, a batch at a time.

``jobs`` holds what one article carries between stages, ``analysis`` turns pages into
features (with the boilerplate learned per source), and ``engine`` runs the stages in order.
"""
