"""Stage 1, pure: a submitted page becomes lines, tokens and shingles.

``extract`` (HTML -> text) -> ``normalize`` (NFKC, case, simplified Chinese, via the
``charmap`` tables) -> ``page`` (lines, line shapes, repeated blocks) -> ``boilerplate``
(which lines are chrome, given what is known of the source) -> ``tokens`` (tokens and
shingle hashes of what is left). Nothing here talks to Redis.
"""
