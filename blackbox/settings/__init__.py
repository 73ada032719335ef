"""Settings read at the edge: checks on Hydra configs and the pre-flight check (the zoo loader is
:func:`targets.load`)."""
