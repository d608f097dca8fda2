"""The retention window: the one removal path (:mod:`.removal`) and the sweeper (:mod:`.sweeper`)."""
