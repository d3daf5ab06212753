"""Tests of ``m2s_nnunet.conversion``, one module per source module (a package, so that names such as
``test_labels`` and ``test_report`` can repeat in ``tests/evaluation`` and ``tests/summary``)."""
