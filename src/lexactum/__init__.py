"""LEXACTUM: find strong gravitational lenses in survey cutouts with convolutional neural networks.

The package is a library first (``lexactum.data``, ``lexactum.models``, ``lexactum.training``,
``lexactum.evaluation``, ``lexactum.simulate``) and a thin command line second (``lexactum.cli``).
Importing the top-level package is cheap: heavy libraries load only in the modules that need them.
"""

__version__ = "0.1.0"
