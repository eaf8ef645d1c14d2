"""Does a network trained on simulations transfer? Train on one simulated setting, score another and real images.

``lexactum transfer-check`` and notebooks call :func:`transfer_check`; the real labelled images are read by
:mod:`.real`, the table and histograms written by :mod:`.report`.
"""

from lexactum.transfer.run import TransferSettings, transfer_check

__all__ = ["TransferSettings", "transfer_check"]
