"""`python -m camwatch`: the same as the `camwatch` command."""

from camwatch.cli import main

main()
