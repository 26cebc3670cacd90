"""One module per CLI command. Each defines ``add_arguments(parser)`` and ``run(args) -> int``."""
