"""Tests of ``m2s_nnunet.summary``, one module per source module (a package, so that names such as
``test_report`` can repeat in ``tests/evaluation``)."""
