"""The supervisor MCU's MicroPython code (RP2040-class board).

Every module here runs unchanged on MicroPython and on CPython (where the simulator runs it with
`simulators.mcu_machine` standing in for `machine`): no typing, dataclasses or enum at run time,
no `from __future__`, and time is an integer of milliseconds passed in, never read inside. Only
`board.py` and `main.py` touch `machine`. On the board the package lives at /lib/firmware/mcu
beside /lib/protocol, and main.py at the root runs it (docs/sections/recorder-mcu.md).
"""
