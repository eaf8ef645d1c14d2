"""The two branches of the Lens Finding Challenge 1.0 as plain data: bands, file names, folders.

Source: Metcalf et al. 2019, A&A 625, A119, and the released data (see docs/challenge-data.md).
Physical presets for simulation (noise, PSF) live in :mod:`lexactum.simulate.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SurveyFormat:
    """How one survey's objects are stored on disk."""

    name: str
    bands: tuple[str, ...]
    """Band names in channel order."""
    file_patterns: tuple[str, ...]
    """File name of each band (channel order), formatted with ``id``."""
    band_folders: tuple[str, ...]
    """Folder of each band under ``Public/`` (channel order)."""
    test_catalog: str
    """Truth catalog of the released test set (layout 2)."""
    test_folder_prefix: str
    """Sub-folders of the test set are ``<prefix>.<k>``."""
    pixel_scale: float
    """Arcseconds per pixel."""
    image_size: int = 101
    mask_value: float | None = None
    """Pixel value that marks masked pixels (set to 0 before normalising), if the survey has one."""

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def file_names(self, object_id: int) -> tuple[str, ...]:
        return tuple(p.format(id=object_id) for p in self.file_patterns)


SPACE = SurveyFormat(
    name="space",
    bands=("VIS",),
    file_patterns=("imageEUC_VIS-{id}.fits",),
    band_folders=("Band1",),
    test_catalog="euclidB_image_catalog.csv",
    test_folder_prefix="Data_EuclidBig",
    pixel_scale=0.1,
)

GROUND = SurveyFormat(
    name="ground",
    bands=("R", "I", "G", "U"),
    file_patterns=(
        "imageSDSS_R-{id}.fits",
        "imageSDSS_I-{id}.fits",
        "imageSDSS_G-{id}.fits",
        "imageSDSS_U-{id}.fits",
    ),
    band_folders=("Band1", "Band2", "Band3", "Band4"),
    test_catalog="kidsB_image_catalog.csv",
    test_folder_prefix="Data_KiDS_Big",
    pixel_scale=0.2,
    mask_value=100.0,
)

SURVEYS: dict[str, SurveyFormat] = {s.name: s for s in (SPACE, GROUND)}
TRAINING_CATALOG = "classifications.csv"


def get_survey(name: str) -> SurveyFormat:
    """The survey called ``name`` ('space' or 'ground'); a clear error otherwise."""
    from lexactum.errors import LexactumError

    try:
        return SURVEYS[str(name).lower()]
    except KeyError:
        raise LexactumError(f"unknown survey {name!r}: choose one of {', '.join(SURVEYS)}") from None


def survey_for_bands(n_bands: int) -> SurveyFormat:
    """The survey whose images have ``n_bands`` channels."""
    from lexactum.errors import LexactumError

    for survey in SURVEYS.values():
        if survey.n_bands == n_bands:
            return survey
    raise LexactumError(f"no survey has {n_bands} bands (space has 1, ground has 4)")
