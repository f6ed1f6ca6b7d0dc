"""The sample project is run by test_plugin.py in a pytest of its own, never collected here."""

collect_ignore = ["sample"]
