"""`python -m promptdag`: the same as the `promptdag` command."""

from promptdag.cli import main

main()
