"""Stage 3: verified duplicates become clusters with stable ids.

``policy`` decides (pure); ``linking`` turns that decision into one compare-and-set
transaction over the current cluster state.
"""
