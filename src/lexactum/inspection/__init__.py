"""Candidate inspection: ``lexactum inspect`` (a self-contained report folder to look at and grade candidates)
and ``lexactum explain`` (saliency pictures of chosen objects).

``inputs`` reads what was scored (a run folder, a predict or an evaluate output) and the dataset behind it,
``galleries`` chooses the cards, ``pictures`` draws thumbnails, ``saliency`` the attribution maps (captum),
``report`` writes the folder the page in ``static/`` renders, ``explain`` the per-object pictures.
"""
