"""Formats and rules shared by every part of Liuhen.

Pure code: no I/O, no clocks, no threads. The modules the supervisor MCU needs
(`canonical`, `mcu_link`) run unchanged on MicroPython, so they import nothing
beyond what MicroPython offers.
"""
