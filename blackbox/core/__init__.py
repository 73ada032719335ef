"""The pure data path: images and datasets in, goal, perturbation, objective, metrics and pictures out.

Nothing here knows about attacks, studies or settings files; every layer above builds on it."""
