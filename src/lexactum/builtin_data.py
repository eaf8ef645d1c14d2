"""The built-in data: small simulated sets that ``lexactum demo`` and ``Space.py``/``Ground.py`` without
``--dataset`` use, simulated on first use so that a fresh clone needs no download.
"""

from __future__ import annotations

from pathlib import Path

#: Where the built-in set of each survey lives (relative to the working directory).
DEMO_DATA = "data/demo/{survey}"
#: Objects in a built-in set: a few minutes of simulation and CPU training on 2 cores.
DEMO_IMAGES = 3000
#: The built-in sets leave out the faintest lenses (lensed flux under 300 sigma, about a quarter of the real
#: population, which lens_flow scores at AUC ~0.64 after minutes of CPU training): the built-in data then
#: shows a clear signal in a few minutes. ``lexactum simulate`` keeps the full calibrated population.
DEMO_MIN_LENSED_FLUX = 300.0


def ensure_simulated(path, survey: str, n: int, seed: int = 0) -> None:
    """Simulate ``n`` objects of ``survey`` into ``path`` unless a dataset is already there."""
    from lexactum.runs import check_output_folder

    path = Path(path)
    if path.is_dir() and any(path.glob("*.csv")):
        return
    check_output_folder(path, "built-in data folder")  # named as the user knows it, not as simulate's --out
    from lexactum.simulate.writer import simulate_dataset

    print(f"No dataset at {path}: simulating {n} {survey} images there (first use only; lenses brighter "
          f"than {DEMO_MIN_LENSED_FLUX:g} sigma in lensed flux) ...", flush=True)
    simulate_dataset(path, survey=survey, n=n, layout="test", seed=seed, min_lensed_flux=DEMO_MIN_LENSED_FLUX)
