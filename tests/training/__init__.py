"""Tests of ``m2s_nnunet.training``, one module per source module (a package, so that names such as
``test_loss`` cannot clash with tests elsewhere)."""
