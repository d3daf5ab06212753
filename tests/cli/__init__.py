"""Tests of ``m2s_nnunet.cli``, one module per subcommand module (a package, so that ``test_cv`` here and
``tests/test_cv.py`` can share a name)."""
