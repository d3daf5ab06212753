"""Cross-validation studies at cluster scale: ``m2s-nnunet cv`` (SLURM through submitit, or locally)."""
