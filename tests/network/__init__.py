"""Tests of ``m2s_nnunet.network``, one module per source module (a package, so that names such as
``test_encoder`` cannot clash with tests elsewhere)."""
