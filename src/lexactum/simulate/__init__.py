"""Simulated datasets in the challenge format: a physical lens simulator (lenstronomy) and toy datasets.

``simulate_dataset(out, survey, n, ...)`` writes a dataset that the data pipeline and the seed read like
the real one; :mod:`.scene` draws and renders one field, :mod:`.presets` holds the survey physics,
:mod:`.catalog` the catalog quantities and their comparison with the real training keys.
"""

from lexactum.simulate.writer import simulate_dataset

__all__ = ["simulate_dataset"]
