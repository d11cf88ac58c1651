"""The work behind each script at the repository root: ``run(args)`` for its parsed command line."""
