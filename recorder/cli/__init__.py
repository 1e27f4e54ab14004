"""The ``recorder`` command: click commands that parse options, call one library function and print.

Must not hold logic.
"""
