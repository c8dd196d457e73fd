"""Validation: the tolerance rule (`tolerances`), checks against oracles (`checks`), their `report`."""
