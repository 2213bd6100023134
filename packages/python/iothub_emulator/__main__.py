"""`python -m iothub_emulator`: the `iothub-emulator` command."""

from ._cli import main

main()
