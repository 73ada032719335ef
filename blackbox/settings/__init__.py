"""Settings read at the edge: checks on Hydra configs, the pre-flight check and the zoo loader."""
