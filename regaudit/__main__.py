"""`python -m regaudit` is the `regaudit` command."""

from regaudit.cli import main

main()
