"""Stage 2: shingles become MinHash signatures, and signatures meet in the LSH band table.

``minhash`` is pure (signatures, banding, Jaccard and containment estimates);
``band_table`` is the Redis side: index parameters, insert-and-read, lookup and removal.
"""
